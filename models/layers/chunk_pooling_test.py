import numpy as np
import pytest
from keras import ops

from models.layers.chunk_pooling import ChunkPooling

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(6, 4)).astype("float32")  # 2 texts x 3 windows
MASK = np.array([[True, True, False], [True, False, False]])


@pytest.mark.parametrize("mode,reduce_fn", [("mean", np.mean), ("max", np.max)])
def test_pools_the_counted_windows_of_each_text(mode, reduce_fn):
    out = ops.convert_to_numpy(ChunkPooling(mode)(LOGITS, MASK))
    per_text = LOGITS.reshape(2, 3, 4)
    want = np.stack([reduce_fn(per_text[0, :2], axis=0), reduce_fn(per_text[1, :1], axis=0)])
    np.testing.assert_allclose(out, want, atol=1e-6)


def test_an_uncounted_window_changes_nothing():
    changed = LOGITS.copy()
    changed[2] = 1e9  # window 2 of text 0 is not counted
    for mode in ("mean", "max"):
        layer = ChunkPooling(mode)
        np.testing.assert_allclose(ops.convert_to_numpy(layer(changed, MASK)), ops.convert_to_numpy(layer(LOGITS, MASK)))


def test_docstring_example():
    out = ChunkPooling("mean")(ops.array([[1.0], [3.0], [2.0], [9.0]]), ops.array([[True, True], [True, False]]))
    np.testing.assert_allclose(ops.convert_to_numpy(out), [[2.0], [2.0]])


def test_rejects_an_unknown_mode_and_round_trips_its_config():
    with pytest.raises(ValueError, match="mode"):
        ChunkPooling("median")
    assert ChunkPooling.from_config(ChunkPooling("max").get_config()).mode == "max"
