"""Sinusoidal (fixed, non-trainable) position encoding."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="textcls")
class SinusoidalPositionEncoding(keras.layers.Layer):
    """Sinusoidal position encoding (Vaswani et al., 2017).

    Returns, for an input of shape `[batch, seq, dim]`, a tensor of the same
    shape holding the fixed encoding

        PE[pos, 2i]     = sin(pos / max_wavelength ** (2i / dim))
        PE[pos, 2i + 1] = cos(pos / max_wavelength ** (2i / dim))

    broadcast over the batch axis. Only the *shape* of `inputs` is used, so the
    sequence length may be dynamic (`[batch, None, dim]`). The layer has no
    weights. The result is usually added to token embeddings; a Keras mask
    attached to `inputs` is passed through unchanged.

    Args:
        max_wavelength: int. The largest wavelength of the sinusoids (the base
            of the geometric progression of frequencies). Defaults to `10000`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`,
            e.g. `name` and `dtype`.

    Example:

    ```python
    token_embeddings = keras.layers.Embedding(5000, 128)(token_ids)
    positions = SinusoidalPositionEncoding()(token_embeddings)
    outputs = token_embeddings + positions
    ```
    """

    def __init__(self, max_wavelength=10000, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = max_wavelength
        self.supports_masking = True
        self.built = True

    def call(self, inputs):
        shape = ops.shape(inputs)
        seq_length = shape[-2]
        hidden_dim = shape[-1]
        # Compute the angles in float32 even under mixed precision: positions
        # and frequencies lose too much precision in float16.
        positions = ops.cast(ops.arange(seq_length), "float32")
        channels = ops.arange(hidden_dim)
        parity = ops.mod(channels, 2)
        # 2i for both channel 2i (sin) and channel 2i + 1 (cos).
        even_index = ops.cast(channels - parity, "float32")
        exponent = even_index / ops.cast(hidden_dim, "float32")
        inverse_frequency = ops.power(
            ops.cast(self.max_wavelength, "float32"), -exponent
        )
        angles = ops.expand_dims(positions, -1) * ops.expand_dims(
            inverse_frequency, 0
        )
        encoding = ops.where(
            ops.equal(parity, 0), ops.sin(angles), ops.cos(angles)
        )
        encoding = ops.cast(encoding, self.compute_dtype)
        return ops.broadcast_to(encoding, shape)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"max_wavelength": self.max_wavelength})
        return config
