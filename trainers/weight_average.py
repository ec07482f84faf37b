"""An exponential moving average of the weights, kept by the Keras optimizer, swapped in to evaluate.

Keras optimizers keep the average themselves (``use_ema=True``, ``ema_momentum``): after every
update, ``average = momentum * average + (1 - momentum) * weight`` (the first step copies the
weight). The average lives in the optimizer's variables, so checkpoints keep it and a resumed run
goes on averaging exactly. :func:`averaged_weights` puts it into the model for a while (evaluation,
the best-weights copy) and puts the trained weights back after, as
``keras.callbacks.SwapEMAWeights`` does for ``model.fit``: in place, on every replica.
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf


def optimizer_options(ema_momentum: float | None) -> dict:
    """Keyword arguments of a Keras optimizer that keeps (or does not keep) the average."""
    return {"use_ema": True, "ema_momentum": ema_momentum} if ema_momentum else {}


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
