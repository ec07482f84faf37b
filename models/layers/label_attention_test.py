import numpy as np
import keras
import pytest
import tensorflow as tf
from keras import ops

from models.layers.label_attention import LabelAttentionPooling

RNG = np.random.default_rng(0)
VALUES = RNG.normal(size=(3, 5, 4)).astype("float32")
KEYS = RNG.normal(size=(3, 5, 6)).astype("float32")
MASK = np.array(
    [
        [True, True, True, False, False],
        [True, True, True, True, True],
        [False, False, False, False, False],
    ]
)


def numpy_label_attention(values, keys, mask, kernel):
    outputs, alphas = [], []
    for row, key_row, row_mask in zip(values, keys, mask):
        alpha = np.zeros((kernel.shape[1], len(row)))
        if row_mask.any():
            scores = (np.tanh(key_row[row_mask]) @ kernel).T  # [c, real]
            weights = np.exp(scores - scores.max(axis=1, keepdims=True))
            alpha[:, row_mask] = weights / weights.sum(axis=1, keepdims=True)
        outputs.append(np.tanh(alpha @ row))
        alphas.append(alpha)
    return np.stack(outputs), np.stack(alphas)


def test_weights_and_shapes():
    layer = LabelAttentionPooling(3)
    outputs, alpha = layer(
        VALUES, keys=KEYS, mask=MASK, return_attention_scores=True
    )
    assert tuple(outputs.shape) == (3, 3, 4)
    assert tuple(alpha.shape) == (3, 3, 5)
    assert tuple(layer.attention_kernel.shape) == (6, 3)
    assert len(layer.trainable_weights) == 1
    assert layer.compute_output_shape((None, None, 4), (None, None, 6)) == (
        None,
        3,
        4,
    )


def test_matches_numpy_reference_with_and_without_keys():
    layer = LabelAttentionPooling(2)
    outputs, alpha = layer(
        VALUES, keys=KEYS, mask=MASK, return_attention_scores=True
    )
    expected, expected_alpha = numpy_label_attention(
        VALUES, KEYS, MASK, ops.convert_to_numpy(layer.attention_kernel)
    )
    np.testing.assert_allclose(ops.convert_to_numpy(outputs), expected, atol=1e-5)
    np.testing.assert_allclose(
        ops.convert_to_numpy(alpha), expected_alpha, atol=1e-6
    )
    # No keys: scored on the values themselves.
    self_scored = LabelAttentionPooling(2)
    outputs = self_scored(VALUES, mask=MASK)
    expected, _ = numpy_label_attention(
        VALUES, VALUES, MASK, ops.convert_to_numpy(self_scored.attention_kernel)
    )
    np.testing.assert_allclose(ops.convert_to_numpy(outputs), expected, atol=1e-5)


def test_each_label_sums_to_one_over_real_positions_and_padding_changes_nothing():
    layer = LabelAttentionPooling(3)
    outputs, alpha = layer(
        VALUES, keys=KEYS, mask=MASK, return_attention_scores=True
    )
    alpha = ops.convert_to_numpy(alpha)
    np.testing.assert_allclose(alpha[:2].sum(axis=-1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(alpha[0][:, ~MASK[0]], 0.0)
    np.testing.assert_array_equal(alpha[2], 0.0)  # nothing real: no weight
    np.testing.assert_array_equal(ops.convert_to_numpy(outputs)[2], 0.0)
    # Longer padding with junk in it gives the same output.
    pad_values = np.concatenate([VALUES, RNG.normal(size=(3, 4, 4))], axis=1)
    pad_keys = np.concatenate([KEYS, RNG.normal(size=(3, 4, 6))], axis=1)
    pad_mask = np.concatenate([MASK, np.zeros((3, 4), bool)], axis=1)
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(pad_values, keys=pad_keys, mask=pad_mask)),
        ops.convert_to_numpy(outputs),
        atol=1e-6,
    )


def test_all_masked_row_has_finite_gradients():
    layer = LabelAttentionPooling(2)
    values, keys = tf.constant(VALUES), tf.constant(KEYS)
    with tf.GradientTape() as tape:
        tape.watch([values, keys])
        y = tf.reduce_sum(layer(values, keys=keys, mask=MASK))
    grads = tape.gradient(y, [values, keys, layer.attention_kernel.value])
    for grad in grads:
        assert np.all(np.isfinite(grad.numpy()))
    np.testing.assert_array_equal(grads[0].numpy()[~MASK], 0.0)
    np.testing.assert_array_equal(grads[1].numpy()[~MASK], 0.0)


def test_functional_model_with_a_label_wise_dense():
    ids = keras.Input(shape=(None,), dtype="int32")
    embedded = keras.layers.Embedding(7, 6)(ids)
    hidden = keras.layers.Dense(4)(embedded)
    pooled, alpha = LabelAttentionPooling(3)(
        hidden, keys=embedded, mask=ops.not_equal(ids, 0),
        return_attention_scores=True,
    )
    logits = keras.layers.EinsumDense(
        "bcd,cd->bc", output_shape=(3,), bias_axes="c"
    )(pooled)
    assert tuple(logits.shape) == (None, 3)
    assert tuple(alpha.shape) == (None, 3, None)
    model = keras.Model(ids, [logits, alpha])
    logits, alpha = model.predict(np.array([[3, 1, 0], [0, 0, 0]]), verbose=0)
    assert logits.shape == (2, 3) and np.all(np.isfinite(logits))
    np.testing.assert_allclose(alpha.sum(axis=-1), [[1] * 3, [0] * 3], atol=1e-6)


def test_get_config_round_trip():
    layer = LabelAttentionPooling(3, name="att")
    config = layer.get_config()
    assert config["num_labels"] == 3
    restored = LabelAttentionPooling.from_config(config)
    assert restored.get_config() == config
    outputs = layer(VALUES, keys=KEYS, mask=MASK)
    restored(VALUES, keys=KEYS, mask=MASK)
    restored.set_weights(layer.get_weights())
    np.testing.assert_allclose(
        ops.convert_to_numpy(restored(VALUES, keys=KEYS, mask=MASK)),
        ops.convert_to_numpy(outputs),
    )


def test_rejects_no_labels():
    with pytest.raises(ValueError, match="num_labels"):
        LabelAttentionPooling(0)
