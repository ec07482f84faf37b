"""Post-LayerNorm Transformer encoder block."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="textcls")
class TransformerEncoderBlock(keras.layers.Layer):
    """Post-LN Transformer encoder block (Vaswani et al., 2017).

    With `x` of shape `[batch, seq, dim]`:

        a = MultiHeadAttention(num_heads, key_dim=dim // num_heads)(
                x, x, attention_mask=padding_mask[:, None, :])
        x = LayerNorm(x + Dropout(a))
        f = Dense(dim)(Dense(intermediate_dim, "relu")(x))
        x = LayerNorm(x + Dropout(f))

    Padded positions are masked out as attention *keys*, so the outputs at the
    real positions do not depend on the padding (neither on how much of it
    there is nor on the embeddings stored there). When `padding_mask` is
    given, the outputs at padded positions are set to zero (so an all-padded
    row gives zeros, never NaN). A Keras mask attached to `inputs` is honoured
    by the inner `MultiHeadAttention` and passed through to the output, but
    only an explicit `padding_mask` zeroes the padded outputs.

    Args:
        num_heads: int. Number of attention heads; must divide the hidden
            size `dim` of the inputs.
        intermediate_dim: int. Hidden size of the feed-forward network.
        dropout: float. Dropout rate applied to the attention output and to
            the feed-forward output before each residual connection.
            Defaults to `0.0`.
        layer_norm_epsilon: float. Epsilon of both layer normalizations.
            Defaults to `1e-6`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`,
            e.g. `name` and `dtype`.

    Call arguments:
        inputs: float tensor of shape `[batch, seq, dim]`; `seq` may be
            dynamic.
        padding_mask: optional `[batch, seq]` boolean or 0/1 tensor,
            `True` = real token.
        training: bool, whether dropout is active.
        return_attention_scores: bool. If `True`, return `(outputs, scores)`
            with the self-attention weights `scores` of shape
            `[batch, num_heads, seq, seq]` (query by key; each row sums to 1
            over the real keys, padded keys get 0).

    Example:

    ```python
    token_ids = keras.Input(shape=(None,), dtype="int32")
    padding_mask = keras.ops.not_equal(token_ids, 0)
    x = keras.layers.Embedding(5000, 64)(token_ids)
    x = TransformerEncoderBlock(num_heads=4, intermediate_dim=128)(
        x, padding_mask=padding_mask
    )
    ```
    """

    def __init__(
        self,
        num_heads,
        intermediate_dim,
        dropout=0.0,
        layer_norm_epsilon=1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.supports_masking = True

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        if hidden_dim is None:
            raise ValueError(
                "TransformerEncoderBlock needs a known hidden size (last "
                f"dimension of the inputs). Received: input_shape={input_shape}"
            )
        if hidden_dim % self.num_heads != 0:
            raise ValueError(
                "The hidden size of the inputs must be divisible by "
                f"num_heads. Received: num_heads={self.num_heads}, hidden "
                f"size (dim)={hidden_dim}"
            )
        key_dim = hidden_dim // self.num_heads
        input_shape = tuple(input_shape)
        intermediate_shape = input_shape[:-1] + (self.intermediate_dim,)

        self._self_attention_layer = keras.layers.MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=key_dim,
            dtype=self.dtype_policy,
            name="self_attention",
        )
        self._self_attention_layer.build(input_shape, input_shape)
        self._self_attention_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="self_attention_dropout"
        )
        self._self_attention_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon,
            dtype=self.dtype_policy,
            name="self_attention_layer_norm",
        )
        self._self_attention_layer_norm.build(input_shape)

        self._feedforward_intermediate_dense = keras.layers.Dense(
            self.intermediate_dim,
            activation="relu",
            dtype=self.dtype_policy,
            name="feedforward_intermediate_dense",
        )
        self._feedforward_intermediate_dense.build(input_shape)
        self._feedforward_output_dense = keras.layers.Dense(
            hidden_dim, dtype=self.dtype_policy, name="feedforward_output_dense"
        )
        self._feedforward_output_dense.build(intermediate_shape)
        self._feedforward_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="feedforward_dropout"
        )
        self._feedforward_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon,
            dtype=self.dtype_policy,
            name="feedforward_layer_norm",
        )
        self._feedforward_layer_norm.build(input_shape)

    def call(self, inputs, padding_mask=None, training=None, return_attention_scores=False):
        attention_mask = None
        if padding_mask is not None:
            padding_mask = ops.convert_to_tensor(padding_mask)
            if keras.backend.standardize_dtype(padding_mask.dtype) != "bool":
                padding_mask = ops.not_equal(padding_mask, 0)
            # [batch, 1, seq]: every query may attend to the real keys only.
            attention_mask = ops.expand_dims(padding_mask, 1)

        x = inputs
        scores = None
        if return_attention_scores:
            attended, scores = self._self_attention_layer(
                x, x, attention_mask=attention_mask, training=training, return_attention_scores=True
            )
        else:
            attended = self._self_attention_layer(
                x, x, attention_mask=attention_mask, training=training
            )
        attended = self._self_attention_dropout(attended, training=training)
        x = self._self_attention_layer_norm(x + attended)

        hidden = self._feedforward_intermediate_dense(x)
        hidden = self._feedforward_output_dense(hidden)
        hidden = self._feedforward_dropout(hidden, training=training)
        x = self._feedforward_layer_norm(x + hidden)

        if padding_mask is not None:
            x = ops.where(ops.expand_dims(padding_mask, -1), x, ops.zeros_like(x))
        if return_attention_scores:
            return x, scores
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, inputs, padding_mask=None, training=None, return_attention_scores=False):
        outputs = keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)
        if return_attention_scores:
            batch, seq = inputs.shape[0], inputs.shape[1]
            return outputs, keras.KerasTensor((batch, self.num_heads, seq, seq), dtype=self.compute_dtype)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
