"""BiLSTM: stacked bidirectional LSTMs (hidden_sizes), padding masked, max-pooled (or last states) to a dense layer."""

from __future__ import annotations

import keras

from models.common import classifier_head, dropout_rate, embed, ids_input, padding_mask, pool_positions
from models.layers import FusedBidirectionalLSTM


def bilstm_stack(x, mask, cfg, last_returns_sequences: bool):
    """The stacked BiLSTM both LSTM models share; padded steps are skipped via the mask.

    Each layer is the same function as ``Bidirectional(LSTM(units))`` with a mask, on
    TensorFlow's fused LSTM kernel (see FusedBidirectionalLSTM): several times faster on a CPU.
    """
    x = keras.layers.Dropout(dropout_rate(cfg), name="embedding_dropout")(x)
    n = len(cfg.hidden_sizes)
    for i, units in enumerate(cfg.hidden_sizes):
        seq = last_returns_sequences or i < n - 1
        x = FusedBidirectionalLSTM(units, return_sequences=seq, name=f"bilstm_{i}")(x, mask=mask)
    return x


def build(cfg, vocab_size: int, num_outputs: int) -> keras.Model:
    """BiLSTM from a config (keys embedding_size, hidden_sizes, pooling, keep_prob, l2_reg_lambda).

    pooling ``max`` (the default) takes the maximum of the top layer's outputs over the text's
    positions (BiLSTM-max), ``mean`` their mean, ``max_mean`` both concatenated; ``last`` takes
    the final states of both directions, which forget the start of long texts.
    """
    ids = ids_input()
    mask = padding_mask(ids)
    pooling = cfg.pooling or "max"
    h = bilstm_stack(embed(ids, cfg, vocab_size), mask, cfg, last_returns_sequences=pooling != "last")
    x = h if pooling == "last" else pool_positions(h, mask, pooling)
    return keras.Model(ids, classifier_head(x, cfg, num_outputs), name="bilstm")
