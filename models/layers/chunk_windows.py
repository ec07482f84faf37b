"""Cuts each row of token ids into windows, for models that read long texts in chunks."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="textcls")
class ChunkWindows(keras.layers.Layer):
    """Windows of `window` tokens every `stride` tokens, at most `max_chunks` per row.

    Takes token ids `[batch, length]` (0 = padding, real tokens first) and
    returns `(windows, chunk_mask)`: `windows` of shape
    `[batch * n, window]`, row `b * n + k` holding tokens
    `k * stride ... k * stride + window - 1` of row `b` (0-padded), and
    `chunk_mask` of shape `[batch, n]`, `True` where window `k` of row `b`
    holds a token that window `k - 1` does not (window 0 always counts, so
    an empty text has one empty window). `n` is the number of windows the
    widest row needs, at most `max_chunks`; tokens past
    `window + (max_chunks - 1) * stride` are not read.

    Args:
        window: tokens per window (the model's `sequence_length`).
        stride: tokens from one window's start to the next's, in
            `[1, window]`; less than `window` makes windows overlap.
        max_chunks: windows per row at most.
        **kwargs: keyword arguments passed to `keras.layers.Layer`, e.g.
            `name`.

    Call arguments:
        ids: int token ids `[batch, length]`.

    Example:

    ```python
    ids = ops.array([[5, 6, 7, 8, 9], [5, 6, 0, 0, 0]], "int32")
    windows, chunk_mask = ChunkWindows(window=2, stride=2, max_chunks=4)(ids)
    # windows: [[5, 6], [7, 8], [9, 0], [5, 6], [0, 0], [0, 0]]
    # chunk_mask: [[True, True, True], [True, False, False]]
    ```
    """

    def __init__(self, window, stride, max_chunks, **kwargs):
        super().__init__(**kwargs)
        if not 1 <= stride <= window:
            raise ValueError(f"stride must be in [1, window={window}]; got {stride}")
        if max_chunks < 1:
            raise ValueError(f"max_chunks must be >= 1; got {max_chunks}")
        self.window = int(window)
        self.stride = int(stride)
        self.max_chunks = int(max_chunks)
        self.built = True

    def call(self, ids):
        length = ops.shape(ids)[1]
        # windows the widest row needs: 1 + ceil((length - window) / stride), capped
        n = 1 + ops.maximum(0, (length - self.window + self.stride - 1) // self.stride)
        n = ops.minimum(n, self.max_chunks)
        span = (n - 1) * self.stride + self.window
        ids = ops.pad(ids, [[0, 0], [0, ops.maximum(0, span - length)]])
        starts = ops.arange(n) * self.stride
        positions = ops.expand_dims(starts, 1) + ops.expand_dims(ops.arange(self.window), 0)
        windows = ops.take(ids, positions, axis=1)  # [batch, n, window]
        real = ops.sum(ops.cast(ops.not_equal(ids, 0), "int32"), axis=1, keepdims=True)
        # Window k adds tokens past window k - 1's end, (k - 1) * stride + window.
        new = ops.expand_dims(starts, 0) - self.stride + self.window < real
        chunk_mask = ops.logical_or(ops.expand_dims(ops.equal(starts, 0), 0), new)
        return ops.reshape(windows, (-1, self.window)), chunk_mask

    def compute_output_spec(self, ids):
        return (
            keras.KerasTensor((None, self.window), dtype=ids.dtype),
            keras.KerasTensor((ids.shape[0], None), dtype="bool"),
        )

    def get_config(self):
        return {
            **super().get_config(),
            "window": self.window,
            "stride": self.stride,
            "max_chunks": self.max_chunks,
        }
