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
    """The model ``cfg.model_name`` names; ``num_outputs`` 1 = sigmoid (binary), N > 1 = softmax (N sigmoids when multi_label).
    long_text ``chunks``: that model reads each window of a text, :func:`chunked`."""
    model = importlib.import_module(MODELS[cfg.model_name]).build(cfg, vocab_size, num_outputs)
    return chunked(model, cfg, num_outputs) if cfg.long_text == "chunks" else model


def chunked(window_model, cfg, num_outputs: int):
    """Token ids [batch, length] -> probabilities: ``window_model`` (ids -> logits) runs on
    every window of sequence_length tokens (``chunk_stride`` apart, at most ``max_chunks``) and
    the windows' logits are pooled (``chunk_pooling``) before the softmax or sigmoid."""
    import keras

    from models.common import ids_input, output_activation
    from models.layers import ChunkPooling, ChunkWindows

    ids = ids_input()
    windows, chunk_mask = ChunkWindows(cfg.sequence_length, cfg.chunk_stride or cfg.sequence_length, cfg.max_chunks,
                                       name="chunk_windows")(ids)
    logits = ChunkPooling(cfg.chunk_pooling, name="chunk_pooling")(window_model(windows), chunk_mask)
    probs = keras.layers.Activation(output_activation(cfg, num_outputs), dtype="float32", name="probabilities")(logits)
    return keras.Model(ids, probs, name=f"{window_model.name}_chunks")


def split_at_embeddings(model):
    """``(embed, from_embeddings)``: two models sharing ``model``'s weights, token ids [batch, seq]
    -> the embeddings the model reads (the token embedding, plus the n-gram embeddings when
    ngram_buckets > 0) and ``[ids, embeddings]`` -> its output (the ids give the padding mask).
    For a model of :func:`build_model` without long_text ``chunks``; what integrated gradients
    and adversarial training work on."""
    import keras

    names = {layer.name for layer in model.layers}
    emb = model.get_layer("token_and_ngrams" if "token_and_ngrams" in names else "embedding").output
    ids = model.input
    return keras.Model(ids, emb, name="embed"), keras.Model([ids, emb], model.output, name="from_embeddings")


def window_model(model):
    """The model that reads one window: ``model`` itself unless it is :func:`chunked`."""
    if model.name.endswith("_chunks"):
        return model.get_layer(model.name[: -len("_chunks")])
    return model
