"""Models: one file each, every one a Keras 3 functional model from token ids to probabilities."""

from __future__ import annotations

import importlib

MODELS = {
    "textcnn": "models.textcnn",
    "bilstm": "models.bilstm",
    "bilstm_atten": "models.bilstm_atten",
    "transformer": "models.transformer",
    "fasttext": "models.fasttext",
}


def build_model(cfg, vocab_size: int, num_outputs: int):
    """The model ``cfg.model_name`` names; ``num_outputs`` 1 = sigmoid (binary), N > 1 = softmax (N sigmoids when multi_label)."""
    return importlib.import_module(MODELS[cfg.model_name]).build(cfg, vocab_size, num_outputs)
