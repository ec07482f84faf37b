"""adversarial_epsilon: FGM's perturbation (a pure function) and the training step that uses it."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from data_helpers.config import ConfigError, load_config, validate
from tests.conftest import assert_export_scores_as_trained, quiet, tiny_config
from trainers.adversarial import fgm_perturbation

finite = st.floats(-10.0, 10.0, allow_nan=False, width=32)


@settings(max_examples=80, deadline=None)
@given(st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 5)).flatmap(
    lambda s: st.tuples(arrays(np.float32, s, elements=finite), arrays(np.int32, s[:2], elements=st.integers(0, 3)))),
    st.floats(0.01, 5.0))
def test_the_perturbation_is_the_gradient_on_real_tokens_scaled_to_epsilon(grad_ids, epsilon):
    grad, ids = grad_ids
    r = fgm_perturbation(tf.constant(grad), tf.constant(ids), epsilon).numpy()
    assert r.shape == grad.shape and np.isfinite(r).all()
    assert (r[ids == 0] == 0).all()  # padding stays where it is
    masked = grad * (ids != 0)[:, :, None]
    for g, p in zip(masked, r):
        norm = np.linalg.norm(g.astype(np.float64))
        if norm < 1e-6:
            continue  # nothing to follow (or a norm float32 cannot hold): no move, or any of norm epsilon
        assert np.linalg.norm(p) == pytest.approx(epsilon, rel=1e-4)
        np.testing.assert_allclose(p, epsilon * g / norm, rtol=1e-3, atol=1e-6)  # along the gradient


def _step(epsilon):
    import keras

    from models.layers import MaskedGlobalAveragePooling1D
    from trainers.loop import TrainStep
    from trainers.losses import per_example_loss
    from trainers.optimizers import pre_reduced

    keras.utils.set_random_seed(5)
    ids = keras.Input((None,), dtype="int32")
    e = keras.layers.Embedding(30, 8, name="embedding")(ids)
    h = MaskedGlobalAveragePooling1D()(keras.layers.Dense(8, activation="tanh")(e), mask=keras.ops.not_equal(ids, 0))
    model = keras.Model(ids, keras.layers.Dense(3, activation="softmax")(h))
    optimizer = pre_reduced(keras.optimizers.Adam)(learning_rate=0.05)
    optimizer.build(model.trainable_variables)
    loss_fn = lambda t, p: per_example_loss(t, p, kind="softmax", num_labels=3)  # noqa: E731
    return model, TrainStep(tf.distribute.get_strategy(), model, optimizer, loss_fn, "softmax", 6, 5.0,
                            adversarial_epsilon=epsilon)


def test_the_adversarial_loss_rises_by_epsilon_times_the_gradient_norm():
    """To first order a move of norm epsilon along the gradient raises each text's loss by
    epsilon x the gradient's norm, the most any such move can; the step adds that loss."""
    x = tf.constant([[3, 4, 5, 0], [7, 8, 0, 0], [9, 10, 11, 12], [1, 2, 0, 0], [13, 0, 0, 0], [20, 21, 22, 0]], tf.int32)
    y = tf.constant([0, 1, 2, 0, 1, 2], tf.int32)
    model, step = _step(1e-3)
    _, clean, adversarial = step._adversarial_losses(x, y)
    e = step._embed(x)
    with tf.GradientTape() as tape:
        tape.watch(e)
        total = tf.reduce_sum(step.loss_fn(y, step._from_embeddings([x, e])))
    g = tape.gradient(total, e) * tf.cast(tf.not_equal(x, 0), tf.float32)[:, :, None]
    rise = 1e-3 * tf.sqrt(tf.reduce_sum(tf.square(g), axis=[1, 2]))
    np.testing.assert_allclose((adversarial - clean).numpy(), rise.numpy(), rtol=0.05)
    assert (rise.numpy() > 0).all()
    np.testing.assert_allclose(clean.numpy(), step.loss_fn(y, model(x)).numpy(), rtol=1e-5)  # the clean loss is the model's

    before = [v.numpy() for v in model.trainable_variables]
    loss_sum, _, n = step(iter(tf.data.Dataset.from_tensors((x, y)).repeat()))
    assert n == 6 and loss_sum == pytest.approx(float(tf.reduce_sum(clean + adversarial)), rel=1e-4)
    assert all(not np.allclose(a, b.numpy()) for a, b in zip(before, model.trainable_variables))


def test_adversarial_training_trains_and_exports(tmp_path, corpus):
    from trainers.trainer import Trainer

    path = tiny_config(tmp_path, corpus, "bilstm", adversarial_epsilon=0.5, ngram_buckets=97)
    logs = []
    report = Trainer(load_config(path, log=quiet), log=logs.append, verbose=0).train()
    assert any("adversarial training" in m and "moved 0.5" in m for m in logs)
    assert report["accuracy"] >= 0.9, report["accuracy"]
    assert_export_scores_as_trained(tmp_path / "pb" / "1", corpus, report)


@pytest.mark.parametrize("extra, message", [
    ({"adversarial_epsilon": -1}, "key 'adversarial_epsilon' must be >= 0"),
    ({"adversarial_epsilon": 1, "rdrop_alpha": 1}, "key 'adversarial_epsilon' cannot be combined with rdrop_alpha"),
    ({"adversarial_epsilon": 1, "long_text": "chunks"}, "key 'adversarial_epsilon' is not supported with long_text chunks"),
])
def test_bad_adversarial_settings_are_refused(extra, message):
    with pytest.raises(ConfigError, match=message):
        validate({"model_name": "textcnn", "train_data": "x", "eval_data": "y", **extra})
