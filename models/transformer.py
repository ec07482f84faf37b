"""Transformer encoder classifier: token embedding + sinusoidal positions, num_blocks encoder
blocks (padding keys masked), mean pooling over non-padding positions, dense."""

from __future__ import annotations

import math

import keras

from models.common import classifier_head, dropout_rate, embed, ids_input, padding_mask
from models.layers import MaskedGlobalAveragePooling1D, SinusoidalPositionEncoding, TransformerEncoderBlock


def build(cfg, vocab_size: int, num_outputs: int) -> keras.Model:
    """Transformer from a config (keys embedding_size, num_heads, num_blocks, filters, ln_epsilon, keep_prob)."""
    ids = ids_input()
    mask = padding_mask(ids)
    x = embed(ids, cfg, vocab_size)
    x = keras.layers.Rescaling(math.sqrt(cfg.embedding_size), name="embedding_scale")(x)
    x = keras.layers.Add(name="add_positions")([x, SinusoidalPositionEncoding(name="positions")(x)])
    x = keras.layers.Dropout(dropout_rate(cfg), name="embedding_dropout")(x)
    for i in range(cfg.num_blocks):
        x = TransformerEncoderBlock(
            num_heads=cfg.num_heads,
            intermediate_dim=cfg.filters,
            dropout=dropout_rate(cfg),
            layer_norm_epsilon=cfg.ln_epsilon,
            name=f"encoder_{i}",
        )(x, padding_mask=mask)
    x = MaskedGlobalAveragePooling1D(name="mean_pool")(x, mask=mask)
    return keras.Model(ids, classifier_head(x, cfg, num_outputs), name="transformer")
