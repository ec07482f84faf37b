import numpy as np
import pytest
import keras
from keras import ops

from models.layers.positional_encoding import SinusoidalPositionEncoding


def numpy_encoding(seq_length, dim, max_wavelength=10000):
    encoding = np.zeros((seq_length, dim))
    for pos in range(seq_length):
        for k in range(dim):
            i2 = k - k % 2  # 2i
            angle = pos / max_wavelength ** (i2 / dim)
            encoding[pos, k] = np.sin(angle) if k % 2 == 0 else np.cos(angle)
    return encoding


def test_shape_and_broadcast_over_batch():
    inputs = np.random.default_rng(0).normal(size=(3, 7, 6)).astype("float32")
    outputs = ops.convert_to_numpy(SinusoidalPositionEncoding()(inputs))
    assert outputs.shape == (3, 7, 6)
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[0], outputs[2])


@pytest.mark.parametrize("dim", [6, 5])
def test_values_match_numpy(dim):
    outputs = SinusoidalPositionEncoding()(np.zeros((1, 9, dim), "float32"))
    np.testing.assert_allclose(
        ops.convert_to_numpy(outputs)[0], numpy_encoding(9, dim), atol=1e-5
    )


def test_known_values_and_max_wavelength():
    outputs = ops.convert_to_numpy(
        SinusoidalPositionEncoding(max_wavelength=100)(np.zeros((1, 3, 4)))
    )[0]
    # Position 0: sin(0) = 0 on even channels, cos(0) = 1 on odd channels.
    np.testing.assert_allclose(outputs[0], [0.0, 1.0, 0.0, 1.0], atol=1e-6)
    # Position 2, channels 2/3: frequency 1 / 100 ** (2 / 4) = 0.1.
    np.testing.assert_allclose(
        outputs[2], [np.sin(2), np.cos(2), np.sin(0.2), np.cos(0.2)], atol=1e-6
    )


def test_padding_invariance():
    layer = SinusoidalPositionEncoding()
    short = ops.convert_to_numpy(layer(np.zeros((2, 4, 8), "float32")))
    long = ops.convert_to_numpy(layer(np.ones((2, 11, 8), "float32")))
    np.testing.assert_allclose(long[:, :4], short, atol=1e-5)


def test_dynamic_sequence_length_in_functional_model():
    inputs = keras.Input(shape=(None, 6))
    outputs = SinusoidalPositionEncoding()(inputs)
    assert tuple(outputs.shape) == (None, None, 6)
    model = keras.Model(inputs, outputs)
    for seq_length in (3, 8):
        result = model.predict(np.zeros((2, seq_length, 6)), verbose=0)
        np.testing.assert_allclose(
            result[1], numpy_encoding(seq_length, 6), atol=1e-5
        )


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.function graph test"
)
def test_dynamic_shape_inside_tf_function():
    import tensorflow as tf

    layer = SinusoidalPositionEncoding()
    fn = tf.function(
        layer, input_signature=[tf.TensorSpec([None, None, 4], tf.float32)]
    )
    result = fn(tf.zeros((1, 5, 4))).numpy()
    np.testing.assert_allclose(result[0], numpy_encoding(5, 4), atol=1e-5)


def test_mask_passes_through_and_output_shape():
    layer = SinusoidalPositionEncoding()
    mask = np.array([[True, False]])
    assert layer.compute_mask(np.zeros((1, 2, 4)), mask) is mask
    assert layer.compute_output_shape((None, None, 4)) == (None, None, 4)


def test_get_config_round_trip():
    layer = SinusoidalPositionEncoding(max_wavelength=500, name="pe")
    config = layer.get_config()
    assert config["max_wavelength"] == 500
    restored = SinusoidalPositionEncoding.from_config(config)
    assert restored.get_config() == config
    inputs = np.zeros((1, 4, 6), "float32")
    np.testing.assert_allclose(
        ops.convert_to_numpy(restored(inputs)),
        ops.convert_to_numpy(layer(inputs)),
    )
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert isinstance(restored, SinusoidalPositionEncoding)
    assert restored.max_wavelength == 500
