"""Pools the outputs of a text's windows into the text's output."""

import keras
from keras import ops

from models.layers.masked_pooling import MaskedGlobalAveragePooling1D
from models.layers.masked_pooling import MaskedGlobalMaxPooling1D


@keras.saving.register_keras_serializable(package="textcls")
class ChunkPooling(keras.layers.Layer):
    """Mean or max over each text's windows, ignoring windows it does not fill.

    Takes per-window outputs `[batch * n, dim]` (row `b * n + k` is window
    `k` of text `b`, as `ChunkWindows` makes them) and `chunk_mask`
    `[batch, n]`, and returns `[batch, dim]`: the mean, or the per-channel
    max, over the windows where `chunk_mask` is `True`. Meant for logits:
    pooling them before the softmax or sigmoid keeps a confident window's
    vote (`max`) or averages the evidence of all windows (`mean`).

    Args:
        mode: `"mean"` or `"max"`.
        **kwargs: keyword arguments passed to `keras.layers.Layer`, e.g.
            `name` and `dtype`.

    Call arguments:
        inputs: per-window outputs `[batch * n, dim]`.
        chunk_mask: bool `[batch, n]`, `True` at the windows that count.

    Example:

    ```python
    logits = ops.array([[1.0], [3.0], [2.0], [9.0]])
    chunk_mask = ops.array([[True, True], [True, False]])
    ChunkPooling("mean")(logits, chunk_mask)  # [[2.0], [2.0]]
    ```
    """

    def __init__(self, mode="mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("mean", "max"):
            raise ValueError(f"mode must be 'mean' or 'max'; got {mode!r}")
        self.mode = mode
        pool = MaskedGlobalAveragePooling1D if mode == "mean" else MaskedGlobalMaxPooling1D
        self._pool = pool(dtype=self.dtype_policy)
        self.built = True

    def call(self, inputs, chunk_mask):
        per_text = ops.reshape(inputs, (ops.shape(chunk_mask)[0], ops.shape(chunk_mask)[1], -1))
        return self._pool(per_text, mask=chunk_mask)

    def compute_output_shape(self, inputs_shape, chunk_mask_shape):
        return (chunk_mask_shape[0], inputs_shape[-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
