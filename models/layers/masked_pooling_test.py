import numpy as np
import pytest
import keras
from keras import ops

from models.layers.masked_pooling import MaskedGlobalAveragePooling1D
from models.layers.masked_pooling import MaskedGlobalMaxPooling1D

LAYERS = {
    MaskedGlobalMaxPooling1D: np.max,
    MaskedGlobalAveragePooling1D: np.mean,
}
parametrize_layers = pytest.mark.parametrize(
    "layer_cls,reduce_fn", list(LAYERS.items()), ids=["max", "average"]
)

RNG = np.random.default_rng(0)
INPUTS = RNG.normal(size=(3, 5, 4)).astype("float32")
MASK = np.array(
    [
        [True, True, True, False, False],
        [True, True, True, True, True],
        [False, False, False, False, False],
    ]
)


def numpy_pool(inputs, mask, reduce_fn):
    rows = []
    for row, row_mask in zip(inputs, mask):
        real = row[row_mask]
        rows.append(reduce_fn(real, axis=0) if len(real) else np.zeros(4))
    return np.stack(rows)


@parametrize_layers
def test_matches_numpy_with_mask(layer_cls, reduce_fn):
    outputs = ops.convert_to_numpy(layer_cls()(INPUTS, mask=MASK))
    assert outputs.shape == (3, 4)
    np.testing.assert_allclose(
        outputs, numpy_pool(INPUTS, MASK, reduce_fn), atol=1e-6
    )


@parametrize_layers
def test_no_mask_is_plain_pooling(layer_cls, reduce_fn):
    outputs = ops.convert_to_numpy(layer_cls()(INPUTS))
    np.testing.assert_allclose(outputs, reduce_fn(INPUTS, axis=1), atol=1e-6)


@parametrize_layers
def test_accepts_01_masks(layer_cls, reduce_fn):
    layer = layer_cls()
    expected = ops.convert_to_numpy(layer(INPUTS, mask=MASK))
    for mask in (MASK.astype("int32"), MASK.astype("float32")):
        np.testing.assert_allclose(
            ops.convert_to_numpy(layer(INPUTS, mask=mask)), expected
        )


@parametrize_layers
def test_padding_invariance(layer_cls, reduce_fn):
    layer = layer_cls()
    short = ops.convert_to_numpy(layer(INPUTS, mask=MASK))
    # Extra padded positions holding large values must be ignored.
    padded_inputs = np.concatenate(
        [INPUTS, np.full((3, 6, 4), 1e6, "float32")], axis=1
    )
    padded_mask = np.concatenate([MASK, np.zeros((3, 6), bool)], axis=1)
    long = ops.convert_to_numpy(layer(padded_inputs, mask=padded_mask))
    np.testing.assert_allclose(long, short, atol=1e-5)


@parametrize_layers
def test_all_masked_rows_give_zeros_and_finite_gradients(layer_cls, reduce_fn):
    layer = layer_cls()
    inputs = -np.abs(INPUTS)  # max of the real values would be negative
    mask = np.zeros((3, 5), bool)
    outputs = ops.convert_to_numpy(layer(inputs, mask=mask))
    np.testing.assert_array_equal(outputs, np.zeros((3, 4)))
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        x = tf.constant(inputs)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(layer(x, mask=MASK))
        gradient = tape.gradient(y, x).numpy()
        assert np.all(np.isfinite(gradient))
        np.testing.assert_array_equal(gradient[~MASK], 0.0)


@parametrize_layers
def test_picks_up_keras_mask_and_drops_it(layer_cls, reduce_fn):
    token_ids = np.array([[3, 1, 0, 0], [0, 0, 0, 0]])
    inputs = keras.Input(shape=(None,), dtype="int32")
    embedded = keras.layers.Embedding(5, 4, mask_zero=True)(inputs)
    pooled = layer_cls()(embedded)
    model = keras.Model(inputs, [embedded, pooled])
    assert tuple(pooled.shape) == (None, 4)
    embeddings, outputs = model.predict(token_ids, verbose=0)
    expected = numpy_pool(embeddings, token_ids != 0, reduce_fn)
    np.testing.assert_allclose(outputs, expected, atol=1e-6)


@parametrize_layers
def test_output_shape_and_config_round_trip(layer_cls, reduce_fn):
    layer = layer_cls(name="pool")
    assert layer.compute_output_shape((None, None, 7)) == (None, 7)
    assert layer.compute_mask(INPUTS, MASK) is None
    config = layer.get_config()
    restored = layer_cls.from_config(config)
    assert restored.get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert isinstance(restored, layer_cls)
