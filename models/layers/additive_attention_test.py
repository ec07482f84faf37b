import numpy as np
import keras
from keras import ops

from models.layers.additive_attention import AdditiveAttentionPooling

RNG = np.random.default_rng(0)
INPUTS = RNG.normal(size=(3, 5, 4)).astype("float32")
MASK = np.array(
    [
        [True, True, True, False, False],
        [True, True, True, True, True],
        [False, False, False, False, False],
    ]
)


def numpy_attention(inputs, mask, w):
    outputs, alphas = [], []
    for row, row_mask in zip(inputs, mask):
        alpha = np.zeros(len(row))
        if row_mask.any():
            scores = np.tanh(row[row_mask]) @ w
            weights = np.exp(scores - scores.max())
            alpha[row_mask] = weights / weights.sum()
        outputs.append(np.tanh(alpha @ row if row_mask.any() else 0 * row[0]))
        alphas.append(alpha)
    return np.stack(outputs), np.stack(alphas)


def test_weights_and_shapes():
    layer = AdditiveAttentionPooling()
    outputs, alpha = layer(INPUTS, mask=MASK, return_attention_scores=True)
    assert tuple(outputs.shape) == (3, 4)
    assert tuple(alpha.shape) == (3, 5)
    assert len(layer.trainable_weights) == 1
    assert tuple(layer.attention_vector.shape) == (4,)
    assert tuple(layer(INPUTS).shape) == (3, 4)
    assert layer.compute_output_shape((None, None, 4)) == (None, 4)


def test_matches_numpy_reference():
    layer = AdditiveAttentionPooling()
    outputs, alpha = layer(INPUTS, mask=MASK, return_attention_scores=True)
    w = ops.convert_to_numpy(layer.attention_vector)
    expected_outputs, expected_alpha = numpy_attention(INPUTS, MASK, w)
    np.testing.assert_allclose(ops.convert_to_numpy(alpha), expected_alpha, atol=1e-6)
    np.testing.assert_allclose(
        ops.convert_to_numpy(outputs), expected_outputs, atol=1e-6
    )
    # Without a mask every position is real.
    outputs, alpha = layer(INPUTS, return_attention_scores=True)
    full = np.ones((3, 5), bool)
    expected_outputs, expected_alpha = numpy_attention(INPUTS, full, w)
    np.testing.assert_allclose(ops.convert_to_numpy(alpha), expected_alpha, atol=1e-6)
    np.testing.assert_allclose(
        ops.convert_to_numpy(outputs), expected_outputs, atol=1e-6
    )


def test_attention_weights_sum_to_one_over_real_positions():
    _, alpha = AdditiveAttentionPooling()(
        INPUTS, mask=MASK.astype("float32"), return_attention_scores=True
    )
    alpha = ops.convert_to_numpy(alpha)
    np.testing.assert_array_equal(alpha[~MASK], 0.0)
    np.testing.assert_allclose(alpha.sum(axis=1), [1.0, 1.0, 0.0], atol=1e-6)


def test_padding_invariance():
    layer = AdditiveAttentionPooling()
    short, short_alpha = layer(INPUTS, mask=MASK, return_attention_scores=True)
    padded_inputs = np.concatenate(
        [INPUTS, np.full((3, 6, 4), 1e4, "float32")], axis=1
    )
    padded_mask = np.concatenate([MASK, np.zeros((3, 6), bool)], axis=1)
    long, long_alpha = layer(
        padded_inputs, mask=padded_mask, return_attention_scores=True
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(long), ops.convert_to_numpy(short), atol=1e-5
    )
    long_alpha = ops.convert_to_numpy(long_alpha)
    np.testing.assert_allclose(
        long_alpha[:, :5], ops.convert_to_numpy(short_alpha), atol=1e-5
    )
    np.testing.assert_array_equal(long_alpha[:, 5:], 0.0)


def test_all_masked_row_gives_zeros_and_finite_gradients():
    layer = AdditiveAttentionPooling()
    outputs, alpha = layer(
        INPUTS, mask=np.zeros((3, 5), bool), return_attention_scores=True
    )
    np.testing.assert_array_equal(ops.convert_to_numpy(outputs), 0.0)
    np.testing.assert_array_equal(ops.convert_to_numpy(alpha), 0.0)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        x = tf.constant(INPUTS)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(layer(x, mask=MASK))
        grads = tape.gradient(y, [x, layer.attention_vector.value])
        for grad in grads:
            assert np.all(np.isfinite(grad.numpy()))
        np.testing.assert_array_equal(grads[0].numpy()[~MASK], 0.0)


def test_keras_mask_and_functional_model_with_scores():
    token_ids = np.array([[3, 1, 0, 0], [0, 0, 0, 0]])
    inputs = keras.Input(shape=(None,), dtype="int32")
    embedded = keras.layers.Embedding(5, 4, mask_zero=True)(inputs)
    outputs, alpha = AdditiveAttentionPooling()(
        embedded, return_attention_scores=True
    )
    assert tuple(outputs.shape) == (None, 4)
    assert tuple(alpha.shape) == (None, None)
    model = keras.Model(inputs, [outputs, alpha])
    outputs, alpha = model.predict(token_ids, verbose=0)
    np.testing.assert_allclose(alpha.sum(axis=1), [1.0, 0.0], atol=1e-6)
    np.testing.assert_array_equal(alpha[token_ids == 0], 0.0)
    np.testing.assert_array_equal(outputs[1], 0.0)


def test_get_config_round_trip():
    layer = AdditiveAttentionPooling(name="att")
    config = layer.get_config()
    restored = AdditiveAttentionPooling.from_config(config)
    assert restored.get_config() == config
    layer_outputs = layer(INPUTS, mask=MASK)
    restored(INPUTS, mask=MASK)
    restored.set_weights(layer.get_weights())
    np.testing.assert_allclose(
        ops.convert_to_numpy(restored(INPUTS, mask=MASK)),
        ops.convert_to_numpy(layer_outputs),
    )
