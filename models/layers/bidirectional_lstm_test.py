import numpy as np
import pytest
import tensorflow as tf

import keras
from models.layers.bidirectional_lstm import FusedBidirectionalLSTM


def ragged_batch(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4, 7, 5)).astype("float32")
    lengths = np.array([7, 3, 1, 0])
    mask = np.arange(7)[None, :] < lengths[:, None]
    return x, mask


@pytest.mark.parametrize("return_sequences", [False, True])
def test_matches_keras_bidirectional_lstm_with_the_same_weights(return_sequences):
    x, mask = ragged_batch()
    fused = FusedBidirectionalLSTM(6, return_sequences=return_sequences)
    reference = keras.layers.Bidirectional(keras.layers.LSTM(6, return_sequences=return_sequences))
    reference(x, mask=mask)
    fused(x, mask=mask)
    fused.set_weights(reference.get_weights())
    got = fused(x, mask=mask).numpy()
    want = reference(x, mask=mask).numpy()
    if return_sequences:  # Keras leaves padded outputs unspecified-but-masked; compare real ones
        got, want = got[mask], want[mask]
    else:  # Keras gives a fully padded row its initial (zero) state too
        assert np.allclose(got[3], 0)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_extra_padding_changes_nothing_and_padded_outputs_are_zero():
    x, mask = ragged_batch(1)
    layer = FusedBidirectionalLSTM(4, return_sequences=True)
    a = layer(x, mask=mask).numpy()
    b = layer(np.pad(x, ((0, 0), (0, 5), (0, 0))), mask=np.pad(mask, ((0, 0), (0, 5)))).numpy()
    np.testing.assert_allclose(a, b[:, :7], atol=1e-6)
    assert np.all(b[:, 7:] == 0) and np.all(a[~mask] == 0)


@pytest.mark.parametrize("return_sequences", [False, True])
def test_gradients_match_keras_bidirectional_lstm(return_sequences):
    """Training follows the same gradients as Keras' own layer (long and ragged sequences)."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 60, 5)).astype("float32")
    mask = np.arange(60)[None, :] < np.array([60, 33, 2])[:, None]
    fused = FusedBidirectionalLSTM(6, return_sequences=return_sequences)
    reference = keras.layers.Bidirectional(keras.layers.LSTM(6, return_sequences=return_sequences))
    reference(x, mask=mask)
    fused(x, mask=mask)
    fused.set_weights(reference.get_weights())
    weights = np.tile(mask[:, :, None], (1, 1, 12)) if return_sequences else np.ones((3, 12))
    with tf.GradientTape(persistent=True) as tape:
        got = tf.reduce_sum(fused(x, mask=mask) ** 2 * weights)
        want = tf.reduce_sum(reference(x, mask=mask) ** 2 * weights)
    for g, w in zip(tape.gradient(got, fused.trainable_weights), tape.gradient(want, reference.trainable_weights)):
        np.testing.assert_allclose(g.numpy(), w.numpy(), atol=1e-4, rtol=1e-3)


def test_gradients_flow_and_are_finite():
    x, mask = ragged_batch(2)
    layer = FusedBidirectionalLSTM(3)
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(layer(x, mask=mask) ** 2)
    grads = tape.gradient(y, layer.trainable_weights)
    assert len(grads) == 6 and all(np.isfinite(g.numpy()).all() for g in grads)
    assert any(np.abs(g.numpy()).sum() > 0 for g in grads)


def test_forget_gate_bias_starts_at_one_like_keras():
    layer = FusedBidirectionalLSTM(2)
    layer.build((None, None, 3))
    assert layer.weights[2].numpy().tolist() == [0, 0, 1, 1, 0, 0, 0, 0]


def test_config_round_trip_and_model_save_load(tmp_path):
    layer = FusedBidirectionalLSTM(5, return_sequences=True, name="bi")
    assert FusedBidirectionalLSTM.from_config(layer.get_config()).get_config() == layer.get_config()
    ids = keras.Input((None,), dtype="int32")
    h = keras.layers.Embedding(20, 4)(ids)
    out = FusedBidirectionalLSTM(3)(h, mask=keras.ops.not_equal(ids, 0))
    model = keras.Model(ids, out)
    data = np.array([[3, 4, 5, 0], [6, 0, 0, 0]], "int32")
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again(data).numpy(), model(data).numpy(), atol=1e-6)
