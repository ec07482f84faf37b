"""Global pooling over time that ignores padded positions."""

import keras
from keras import ops


def _as_bool_mask(mask):
    """Returns a `[batch, seq]` boolean mask (accepts bool or 0/1 tensors)."""
    mask = ops.convert_to_tensor(mask)
    if keras.backend.standardize_dtype(mask.dtype) != "bool":
        mask = ops.not_equal(mask, 0)
    return mask


class _MaskedPooling1D(keras.layers.Layer):
    """What both pooling layers share: no weights, mask in, no mask out, `[batch, dim]` out."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.built = True

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return super().get_config()


@keras.saving.register_keras_serializable(package="textcls")
class MaskedGlobalMaxPooling1D(_MaskedPooling1D):
    """Max over time that ignores padded positions.

    Takes `inputs` of shape `[batch, seq, dim]` and an optional padding `mask`
    of shape `[batch, seq]` (boolean or 0/1, `True` = real token) and returns
    the channel-wise maximum over the real positions, shape `[batch, dim]`.
    A row whose mask is all `False` gives zeros. With `mask=None` this is a
    plain global max pooling. A Keras mask attached to `inputs` (e.g. from
    `Embedding(mask_zero=True)`) is picked up automatically; the output
    carries no mask.

    Args:
        **kwargs: keyword arguments passed to `keras.layers.Layer`, e.g.
            `name` and `dtype`.

    Example:

    ```python
    hidden = keras.random.normal((2, 5, 8))
    mask = ops.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], "bool")
    pooled = MaskedGlobalMaxPooling1D()(hidden, mask=mask)  # [2, 8]
    ```
    """

    def call(self, inputs, mask=None):
        if mask is None:
            return ops.max(inputs, axis=1)
        mask = _as_bool_mask(mask)
        masked = ops.where(
            ops.expand_dims(mask, -1),
            inputs,
            ops.cast(float("-inf"), inputs.dtype),
        )
        pooled = ops.max(masked, axis=1)
        has_tokens = ops.any(mask, axis=1, keepdims=True)
        return ops.where(has_tokens, pooled, ops.zeros_like(pooled))


@keras.saving.register_keras_serializable(package="textcls")
class MaskedGlobalAveragePooling1D(_MaskedPooling1D):
    """Mean over time that ignores padded positions.

    Takes `inputs` of shape `[batch, seq, dim]` and an optional padding `mask`
    of shape `[batch, seq]` (boolean or 0/1, `True` = real token) and returns
    the mean over the real positions, shape `[batch, dim]`. A row whose mask
    is all `False` gives zeros. With `mask=None` this is a plain global
    average pooling. A Keras mask attached to `inputs` is picked up
    automatically; the output carries no mask.

    Args:
        **kwargs: keyword arguments passed to `keras.layers.Layer`, e.g.
            `name` and `dtype`.

    Example:

    ```python
    hidden = keras.random.normal((2, 5, 8))
    mask = ops.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], "bool")
    pooled = MaskedGlobalAveragePooling1D()(hidden, mask=mask)  # [2, 8]
    ```
    """

    def call(self, inputs, mask=None):
        if mask is None:
            return ops.mean(inputs, axis=1)
        mask = _as_bool_mask(mask)
        # `where`, not a multiplication, so that non-finite values at padded
        # positions cannot leak into the sum.
        masked = ops.where(
            ops.expand_dims(mask, -1), inputs, ops.zeros_like(inputs)
        )
        total = ops.sum(masked, axis=1)
        count = ops.sum(ops.cast(mask, inputs.dtype), axis=1, keepdims=True)
        return total / ops.maximum(count, ops.ones_like(count))

