"""An exponential moving average of the weights, kept by the Keras optimizer, swapped in to evaluate.

Keras optimizers keep the average themselves (``use_ema=True``, ``ema_momentum``): after every
update, ``average = momentum * average + (1 - momentum) * weight`` (the first step copies the
weight). The average lives in the optimizer's variables, so checkpoints keep it and a resumed run
goes on averaging exactly. :func:`averaged_weights` puts it into the model for a while (evaluation,
the best-weights copy) and puts the trained weights back after, as
``keras.callbacks.SwapEMAWeights`` does for ``model.fit``: in place, on every replica.

Keras updates the average of every weight at every step. With a hashed n-gram table of a million
rows that is a pass over hundreds of MB per step, more than the (lazy) training step itself costs.
``ema_every = k`` updates the average every k-th step instead, with momentum ``ema_momentum ** k``:
the same window of past steps (about ``1 / (1 - ema_momentum)``), sampled every k steps, for 1/k of
the cost (:class:`PeriodicAverage`).
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf


def optimizer_options(ema_momentum: float | None) -> dict:
    """Keyword arguments of a Keras optimizer that keeps (or does not keep) the average."""
    return {"use_ema": True, "ema_momentum": ema_momentum} if ema_momentum else {}


class PeriodicAverage:
    """Optimizer mixin: the moving average is updated every ``ema_every``-th step only.

    At steps 0, k, 2k, ... (``optimizer.iterations`` before the step's increment) the average
    becomes ``m * average + (1 - m) * weight`` with ``m = ema_momentum ** k`` (step 0 copies the
    weights, as Keras does). ``ema_every = 1`` is Keras's own update, unchanged. Set the attribute
    before the training step is first traced: it is a Python constant of the traced step.
    """

    ema_every = 1

    def _update_model_variables_moving_average(self, trainable_variables):
        every = int(self.ema_every)
        if not self.use_ema or every <= 1:
            return super()._update_model_variables_moving_average(trainable_variables)

        def update():
            for var, average in zip(trainable_variables, self._model_variables_moving_average):
                if average is None:
                    continue
                var = var.value if isinstance(var, keras.Variable) else var
                momentum = tf.cast(tf.not_equal(self.iterations, 0), var.dtype) * (self.ema_momentum ** every)
                average.assign(momentum * average + (1 - momentum) * var)
            return tf.constant(True)

        tf.cond(tf.equal(self.iterations % every, 0), update, lambda: tf.constant(False))


def swap_average(optimizer) -> None:
    """Exchange the values of the optimizer's trained variables and their averages."""
    strategy = optimizer._distribution_strategy
    for var, average in zip(optimizer._trainable_variables, optimizer._model_variables_moving_average):
        var = var.value if isinstance(var, keras.Variable) else var
        average = average.value if isinstance(average, keras.Variable) else average
        strategy.extended.update(var, _swap, args=(average,))


def _swap(a, b):
    """Exact, unlike Keras's a + b - b: a swap back gives the very same weights, so a run resumes exactly."""
    kept = tf.identity(a)
    a.assign(b)
    b.assign(kept)


@contextlib.contextmanager
def averaged_weights(optimizer):
    """Within the block the model holds the averaged weights (when the optimizer keeps them)."""
    if not getattr(optimizer, "use_ema", False):
        yield
        return
    swap_average(optimizer)
    try:
        yield
    finally:
        swap_average(optimizer)
