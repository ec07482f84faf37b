"""TextCNN (Kim 2014): parallel convolutions over filter_sizes, max-over-time pooling, dropout, dense."""

from __future__ import annotations

import keras
from keras import ops

from models.common import classifier_head, embed, ids_input, padding_mask
from models.layers import MaskedGlobalMaxPooling1D


def build(cfg, vocab_size: int, num_outputs: int) -> keras.Model:
    """TextCNN from a config (keys embedding_size, num_filters, filter_sizes, keep_prob, l2_reg_lambda).

    Each convolution window starts at a token and may run into padding, whose embeddings
    are zeroed; windows that start on padding are left out of the max. So extra padding
    after a text never changes its output, and texts shorter than a filter still count.
    """
    ids = ids_input()
    mask = padding_mask(ids)
    x = embed(ids, cfg, vocab_size)
    x = x * ops.expand_dims(ops.cast(mask, x.dtype), -1)
    pooled = []
    for k in cfg.filter_sizes:
        h = keras.layers.ZeroPadding1D((0, k - 1), name=f"pad_{k}")(x)
        h = keras.layers.Conv1D(cfg.num_filters, k, activation="relu", name=f"conv_{k}")(h)
        pooled.append(MaskedGlobalMaxPooling1D(name=f"max_pool_{k}")(h, mask=mask))
    x = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="concat")(pooled)
    return keras.Model(ids, classifier_head(x, cfg, num_outputs), name="textcnn")
