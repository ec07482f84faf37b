"""BiLSTM with attention (Zhou et al. 2016): additive attention over the BiLSTM outputs,
softmax over non-padding positions only, weighted sum, dense."""

from __future__ import annotations

import keras

from models.bilstm import bilstm_stack
from models.common import classifier_head, embed, ids_input, padding_mask
from models.layers import AdditiveAttentionPooling


def build(cfg, vocab_size: int, num_outputs: int) -> keras.Model:
    """BiLSTM-attention from a config (keys embedding_size, hidden_sizes, keep_prob, l2_reg_lambda)."""
    ids = ids_input()
    mask = padding_mask(ids)
    h = bilstm_stack(embed(ids, cfg, vocab_size), mask, cfg, last_returns_sequences=True)
    x = AdditiveAttentionPooling(name="attention")(h, mask=mask)
    return keras.Model(ids, classifier_head(x, cfg, num_outputs), name="bilstm_atten")
