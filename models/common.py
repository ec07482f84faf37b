"""Pieces every model shares: the id input, the padding mask, the embedding and the output head."""

from __future__ import annotations

import keras
from keras import ops

from models.layers import HashedNgramEmbedding, MaskedGlobalAveragePooling1D, MaskedGlobalMaxPooling1D


def ids_input() -> keras.KerasTensor:
    """Token ids [batch, seq]; any sequence length, 0 = padding."""
    return keras.Input(shape=(None,), dtype="int32", name="ids")


def padding_mask(ids):
    """True at real tokens."""
    return ops.not_equal(ids, 0)


def embed(ids, cfg, vocab_size: int):
    """Token embedding (named ``embedding`` so pretrained vectors can be loaded into it).

    With ``ngram_buckets`` > 0, the hashed embeddings of the n-grams (2..``ngram_max``)
    that start at each token are added to it.
    """
    x = keras.layers.Embedding(vocab_size, cfg.embedding_size, name="embedding")(ids)
    if cfg.ngram_buckets:
        ngrams = HashedNgramEmbedding(
            cfg.ngram_buckets, cfg.embedding_size, max_n=cfg.ngram_max, name="ngram_embedding"
        )(ids)
        x = keras.layers.Add(name="token_and_ngrams")([x, ngrams])
    return x


def dropout_rate(cfg) -> float:
    return 1.0 - cfg.keep_prob


def output_activation(cfg, num_outputs: int) -> str:
    """Sigmoids for one output (binary) or a multi_label config, softmax otherwise."""
    return "sigmoid" if num_outputs == 1 or getattr(cfg, "multi_label", False) else "softmax"


def _output_layer_args(cfg, num_outputs: int) -> dict:
    reg = keras.regularizers.L2(cfg.l2_reg_lambda) if cfg.l2_reg_lambda > 0 else None
    chunks = getattr(cfg, "long_text", "truncate") == "chunks"  # the window model: its logits are pooled first
    return dict(activation=None if chunks else output_activation(cfg, num_outputs), kernel_regularizer=reg,
                bias_regularizer=reg, dtype="float32", name="logits" if chunks else "probabilities")


def classifier_head(x, cfg, num_outputs: int):
    """Dropout, then a dense layer with :func:`output_activation` (long_text ``chunks``: the
    logits, which :func:`models.chunked` pools over a text's windows before the activation).

    The output layer's kernel and bias carry the L2 penalty ``l2_reg_lambda``.
    """
    x = keras.layers.Dropout(dropout_rate(cfg), name="head_dropout")(x)
    return keras.layers.Dense(num_outputs, **_output_layer_args(cfg, num_outputs))(x)


def label_wise_head(x, cfg, num_outputs: int):
    """:func:`classifier_head` for one vector per label, ``x`` [batch, num_outputs, dim]: dropout,
    then label ``c``'s output from ``x[:, c]`` alone (its own kernel row and bias)."""
    x = keras.layers.Dropout(dropout_rate(cfg), name="head_dropout")(x)
    return keras.layers.EinsumDense(
        "bcd,cd->bc", output_shape=(num_outputs,), bias_axes="c", **_output_layer_args(cfg, num_outputs)
    )(x)


def pool_positions(x, mask, how: str):
    """``[batch, seq, dim]`` -> ``[batch, dim]`` (``max`` or ``mean`` over the real positions) or
    ``[batch, 2 x dim]`` (``max_mean``: both, concatenated)."""
    if how == "max":
        return MaskedGlobalMaxPooling1D(name="max_pool")(x, mask=mask)
    if how == "mean":
        return MaskedGlobalAveragePooling1D(name="mean_pool")(x, mask=mask)
    if how == "max_mean":
        return keras.layers.Concatenate(name="max_mean_pool")([
            MaskedGlobalMaxPooling1D(name="max_pool")(x, mask=mask),
            MaskedGlobalAveragePooling1D(name="mean_pool")(x, mask=mask),
        ])
    raise ValueError(f"pooling {how!r}: expected max, mean or max_mean")
