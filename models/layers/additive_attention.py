"""Attention pooling of Zhou et al. (2016), Attention-Based BiLSTM."""

import keras
from keras import ops


def as_bool_mask(mask):
    """A boolean `[batch, seq]` mask from a boolean or 0/1 one."""
    mask = ops.convert_to_tensor(mask)
    if keras.backend.standardize_dtype(mask.dtype) != "bool":
        mask = ops.not_equal(mask, 0)
    return mask


def masked_softmax(scores, mask):
    """Softmax over the last axis restricted to the positions where `mask`
    (broadcastable to `scores`) is `True`; 0 elsewhere, and 0 everywhere on a
    row with no real position. Every intermediate stays finite (also for
    all-padded rows) so gradients cannot become NaN through `where`."""
    mask = ops.broadcast_to(mask, ops.shape(scores))
    max_score = ops.max(
        ops.where(mask, scores, ops.cast(float("-inf"), scores.dtype)),
        axis=-1,
        keepdims=True,
    )
    has_tokens = ops.any(mask, axis=-1, keepdims=True)
    max_score = ops.stop_gradient(
        ops.where(has_tokens, max_score, ops.zeros_like(max_score))
    )
    shifted = ops.where(mask, scores - max_score, ops.zeros_like(scores))
    weights = ops.where(mask, ops.exp(shifted), ops.zeros_like(scores))
    total = ops.sum(weights, axis=-1, keepdims=True)
    return weights / ops.where(total > 0, total, ops.ones_like(total))


@keras.saving.register_keras_serializable(package="textcls")
class AdditiveAttentionPooling(keras.layers.Layer):
    """Attention pooling over time (Zhou et al., 2016, Att-BLSTM).

    For hidden states `H` of shape `[batch, seq, dim]`:

        M     = tanh(H)
        score = M . w                      # w: trainable vector of size dim
        alpha = softmax(score) over the non-padded positions only
        r     = sum_t alpha_t * H_t
        out   = tanh(r)                    # [batch, dim]

    Padded positions (mask `False`) get exactly zero weight, so the output is
    invariant to extra padding. A row whose mask is all `False` gives zero
    weights and a zero output (never NaN). A Keras mask attached to `inputs`
    (e.g. from `Embedding(mask_zero=True)` through a masking-aware RNN) is
    picked up automatically; the output carries no mask.

    Args:
        **kwargs: keyword arguments passed to `keras.layers.Layer`, e.g.
            `name` and `dtype`.

    Call arguments:
        inputs: float tensor of shape `[batch, seq, dim]`; `seq` may be
            dynamic.
        mask: optional `[batch, seq]` boolean or 0/1 tensor, `True` = real
            token. `None` means every position is real.
        return_attention_scores: bool. If `True`, return
            `(output, alpha)` with `alpha` of shape `[batch, seq]`.

    Example:

    ```python
    hidden = keras.layers.Bidirectional(
        keras.layers.LSTM(64, return_sequences=True)
    )(embeddings)
    sentence = AdditiveAttentionPooling()(hidden, mask=padding_mask)
    sentence, alpha = AdditiveAttentionPooling()(
        hidden, mask=padding_mask, return_attention_scores=True
    )
    ```
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        if hidden_dim is None:
            raise ValueError(
                "AdditiveAttentionPooling needs a known last dimension. "
                f"Received: input_shape={input_shape}"
            )
        self.attention_vector = self.add_weight(
            name="attention_vector",
            shape=(hidden_dim,),
            initializer="glorot_uniform",
            trainable=True,
        )

    def call(self, inputs, mask=None, return_attention_scores=False):
        scores = ops.matmul(ops.tanh(inputs), self.attention_vector)  # [b, s]
        if mask is None:
            alpha = ops.softmax(scores, axis=-1)
            values = inputs
        else:
            mask = as_bool_mask(mask)
            alpha = masked_softmax(scores, mask)
            values = ops.where(
                ops.expand_dims(mask, -1), inputs, ops.zeros_like(inputs)
            )
        pooled = ops.sum(ops.expand_dims(alpha, -1) * values, axis=1)
        outputs = ops.tanh(pooled)
        if return_attention_scores:
            return outputs, alpha
        return outputs

    def compute_mask(self, inputs, mask=None, return_attention_scores=False):
        if return_attention_scores:
            return None, None
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def compute_output_spec(
        self, inputs, mask=None, return_attention_scores=False
    ):
        outputs = keras.KerasTensor(
            (inputs.shape[0], inputs.shape[-1]), dtype=self.compute_dtype
        )
        if return_attention_scores:
            alpha = keras.KerasTensor(
                (inputs.shape[0], inputs.shape[1]), dtype=self.compute_dtype
            )
            return outputs, alpha
        return outputs

    def get_config(self):
        return super().get_config()
