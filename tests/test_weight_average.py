"""ema_momentum: the optimizer's moving average of the weights is what is evaluated, kept and exported."""

import numpy as np
import pytest
import tensorflow as tf

from data_helpers.config import load_config
from tests.conftest import quiet, tiny_config


def tiny_model_and_optimizer(seed, momentum, every=1):
    """An embedding (sparse gradients: the lazy path) and a dense layer, with an averaging LazyAdamW."""
    import keras

    from trainers.optimizers import LazyAdamW, pre_reduced
    from trainers.weight_average import optimizer_options

    keras.utils.set_random_seed(seed)
    ids = keras.Input((3,), dtype="int32")
    out = keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Embedding(10, 4)(ids)))
    model = keras.Model(ids, out)
    optimizer = pre_reduced(LazyAdamW)(learning_rate=0.1, **optimizer_options(momentum))
    optimizer.ema_every = every
    optimizer.build(model.trainable_variables)
    return model, optimizer


def train_steps(model, optimizer, seed, steps, apply=None):
    """Yields (step, weights after it) for ``steps`` steps on random ids."""
    apply = apply or (lambda g: optimizer.apply_gradients(zip(g, model.trainable_variables)))
    rng = np.random.default_rng(seed)
    for step in range(steps):
        x = tf.constant(rng.integers(0, 10, (4, 3)), tf.int32)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(model(x)))
        apply(tape.gradient(loss, model.trainable_variables))
        yield step, [v.numpy().copy() for v in model.trainable_variables]


def test_the_average_is_swapped_in_and_the_weights_come_back_exactly(tmp_path):
    from trainers.optimizers import LazyAdamW, pre_reduced
    from trainers.weight_average import averaged_weights, optimizer_options

    momentum = 0.6
    model, optimizer = tiny_model_and_optimizer(0, momentum)
    expected = None
    for _, now in train_steps(model, optimizer, 0, 5):
        expected = now if expected is None else [momentum * a + (1 - momentum) * w for a, w in zip(expected, now)]

    trained = [v.numpy().copy() for v in model.trainable_variables]
    with averaged_weights(optimizer):
        for v, a, w in zip(model.trainable_variables, expected, trained):
            np.testing.assert_allclose(v.numpy(), a, rtol=1e-5, atol=1e-6)
            assert not np.allclose(v.numpy(), w)
    for v, w in zip(model.trainable_variables, trained):
        np.testing.assert_array_equal(v.numpy(), w)  # exactly: a resumed run goes on from the same weights

    # Checkpoints carry the average (it is one of the optimizer's variables): a resumed run averages on.
    ckpt = tf.train.Checkpoint(optimizer=optimizer)
    saved = ckpt.write(str(tmp_path / "ckpt"))
    averages = [a.numpy().copy() for a in optimizer._model_variables_moving_average]
    for a in optimizer._model_variables_moving_average:
        a.assign(tf.zeros_like(a))
    ckpt.read(saved).assert_consumed()
    for a, kept in zip(optimizer._model_variables_moving_average, averages):
        np.testing.assert_array_equal(a.numpy(), kept)

    assert optimizer_options(None) == {}
    plain = pre_reduced(LazyAdamW)(learning_rate=0.1)
    with averaged_weights(plain):  # no average kept: nothing to swap
        pass


@pytest.mark.parametrize("every", [2, 3])
def test_the_average_every_k_steps_samples_the_weights_with_momentum_to_the_k(every):
    """ema_every: steps 0, k, 2k, ... update the average with ema_momentum ** k; the others leave it
    (in a tf.function, as the training step runs it)."""
    from trainers.weight_average import averaged_weights

    momentum = 0.8
    model, optimizer = tiny_model_and_optimizer(1, momentum, every)
    traced = tf.function(lambda g: optimizer.apply_gradients(zip(g, model.trainable_variables)))
    expected = None
    for step, now in train_steps(model, optimizer, 1, 7, apply=traced):
        if step % every == 0:
            m = momentum ** every
            expected = now if expected is None else [m * a + (1 - m) * w for a, w in zip(expected, now)]
    with averaged_weights(optimizer):
        for v, a in zip(model.trainable_variables, expected):
            np.testing.assert_allclose(v.numpy(), a, rtol=1e-5, atol=1e-6)


def test_bad_ema_momentum_is_refused():
    from data_helpers.config import ConfigError, validate

    with pytest.raises(ConfigError, match="key 'ema_momentum'.*must be in \\(0, 1\\)"):
        validate({"model_name": "textcnn", "train_data": "t", "eval_data": "e", "ema_momentum": 1.0})
    with pytest.raises(ConfigError, match="key 'ema_every'.*must be >= 1"):
        validate({"model_name": "textcnn", "train_data": "t", "eval_data": "e", "ema_momentum": 0.9, "ema_every": 0})


def test_the_export_carries_the_average(planted, tmp_path):
    """A momentum so close to 1 that the average stays near the first step's weights: the model that
    learns the task alone scores far lower with it, so evaluation and export do use the average."""
    from predictors import Predictor
    from trainers.trainer import Trainer

    def run(name, **extra):
        logs = []
        path = tiny_config(tmp_path / name, planted, "fasttext", epochs=3, learning_rate=0.02, keep_prob=1.0,
                           eval_every=1000, checkpoint_every=1000, **extra)
        report = Trainer(load_config(path, log=quiet), log=logs.append, verbose=0).train()
        lines = (planted / "eval.txt").read_text(encoding="utf-8").splitlines()
        texts, labels = [ln.split("\t")[0] for ln in lines], [ln.split("\t")[1] for ln in lines]
        served = np.mean([p == y for p, y in zip(Predictor(path).predict(texts), labels)])
        assert served == pytest.approx(report["accuracy"], abs=1e-9)  # the export is what was evaluated
        return report["accuracy"], logs

    learned, _ = run("plain")
    averaged, logs = run("ema", ema_momentum=0.999)
    assert any("moving average (ema_momentum 0.999)" in line for line in logs)
    assert learned > 0.9 and averaged < learned - 0.3, (learned, averaged)
    sampled, logs = run("ema_every", ema_momentum=0.999, ema_every=4)  # the same window, sampled
    assert any("moving average (ema_momentum 0.999, every 4 steps)" in line for line in logs)
    assert sampled < learned - 0.3, (learned, sampled)
