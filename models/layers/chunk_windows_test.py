import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import ops

from models.layers.chunk_windows import ChunkWindows


def numpy_windows(ids, window, stride, max_chunks):
    """The reference: every row's windows and which add tokens, by loops."""
    length = ids.shape[1]
    n = min(max_chunks, 1 + max(0, -(-(length - window) // stride)))
    padded = np.pad(ids, [(0, 0), (0, max(0, (n - 1) * stride + window - length))])
    windows, mask = [], []
    for row in padded:
        real = int((row != 0).sum())
        for k in range(n):
            windows.append(row[k * stride : k * stride + window])
        mask.append([k == 0 or (k - 1) * stride + window < real for k in range(n)])
    return np.array(windows), np.array(mask)


def test_docstring_example():
    ids = ops.array([[5, 6, 7, 8, 9], [5, 6, 0, 0, 0]], "int32")
    windows, chunk_mask = ChunkWindows(window=2, stride=2, max_chunks=4)(ids)
    assert ops.convert_to_numpy(windows).tolist() == [[5, 6], [7, 8], [9, 0], [5, 6], [0, 0], [0, 0]]
    assert ops.convert_to_numpy(chunk_mask).tolist() == [[True, True, True], [True, False, False]]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=4), st.integers(1, 12), st.data())
def test_matches_the_reference(lengths, window, data):
    stride = data.draw(st.integers(1, window))
    max_chunks = data.draw(st.integers(1, 6))
    width = max(max(lengths), 1)
    ids = np.zeros((len(lengths), width), np.int32)
    for i, n in enumerate(lengths):
        ids[i, :n] = np.arange(1, n + 1)
    windows, mask = ChunkWindows(window, stride, max_chunks)(ids)
    want_windows, want_mask = numpy_windows(ids, window, stride, max_chunks)
    np.testing.assert_array_equal(ops.convert_to_numpy(windows), want_windows)
    np.testing.assert_array_equal(ops.convert_to_numpy(mask), want_mask)
    # Every token within the read span is in some counted window; the read span is bounded.
    read = window + (max_chunks - 1) * stride
    w = ops.convert_to_numpy(windows).reshape(len(lengths), -1, window)
    for i, n in enumerate(lengths):
        seen = set(w[i][np.asarray(ops.convert_to_numpy(mask))[i]].ravel()) - {0}
        assert seen == set(range(1, min(n, read) + 1))


def test_works_in_a_traced_function_with_unknown_shapes():
    import tensorflow as tf

    layer = ChunkWindows(3, 2, 3)
    traced = tf.function(layer, input_signature=[tf.TensorSpec([None, None], tf.int32)])
    windows, mask = traced(tf.constant([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]))
    assert windows.shape == (3, 3) and mask.numpy().tolist() == [[True, True, True]]


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="stride"):
        ChunkWindows(4, 5, 2)
    with pytest.raises(ValueError, match="max_chunks"):
        ChunkWindows(4, 2, 0)


def test_get_config_round_trip():
    layer = ChunkWindows(8, 4, 3, name="w")
    again = ChunkWindows.from_config(layer.get_config())
    assert (again.window, again.stride, again.max_chunks, again.name) == (8, 4, 3, "w")
