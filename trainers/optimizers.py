"""Adam and AdamW that update only the embedding rows a batch used ("lazy" Adam).

Keras 3's Adam turns the sparse gradient of an embedding table (``tf.IndexedSlices``)
into a dense one and then updates every row, its two moment slots and (AdamW) its
weight decay, at every step. For a 100,000-row hashed n-gram table that is most of a
training step's time. These optimizers keep such gradients sparse: the moments,
the decay and the update touch only the rows in the batch, as TensorFlow 1's
``LazyAdamOptimizer`` and TensorFlow Addons' ``LazyAdam`` did. Rows a batch did not
use keep their moments until they are used again. Dense gradients take Keras's own
update, unchanged.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from trainers.weight_average import PeriodicAverage


def _dedupe(grad):
    """IndexedSlices with each row once (repeated ids summed), so norms and moments are exact."""
    if not isinstance(grad, tf.IndexedSlices):
        return grad
    rows, where = tf.unique(grad.indices)
    values = tf.math.unsorted_segment_sum(grad.values, where, tf.shape(rows)[0])
    return tf.IndexedSlices(values, rows, grad.dense_shape)


class _LazyRows:
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.amsgrad:
            raise ValueError(f"{type(self).__name__} does not support amsgrad")

    def _backend_apply_gradients(self, grads, trainable_variables):
        grads = [_dedupe(g) for g in grads]
        # Tracing-time record of the variables whose decay the sparse step applies itself.
        self._sparse_keys = {
            self._var_key(v) for g, v in zip(grads, trainable_variables) if isinstance(g, tf.IndexedSlices)
        }
        return super()._backend_apply_gradients(grads, trainable_variables)

    def _clip_gradients(self, grads):
        if self.global_clipnorm and self.global_clipnorm > 0 and any(isinstance(g, tf.IndexedSlices) for g in grads):
            # tf.clip_by_global_norm scales IndexedSlices without densifying them.
            return tf.clip_by_global_norm(grads, self.global_clipnorm)[0]
        return super()._clip_gradients(grads)

    def _use_weight_decay(self, variable):
        if self._var_key(variable) in getattr(self, "_sparse_keys", ()):
            return False
        return super()._use_weight_decay(variable)

    def update_step(self, gradient, variable, learning_rate):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        if isinstance(variable, keras.Variable):
            variable = variable.value
        dtype = variable.dtype
        lr = tf.cast(learning_rate, dtype)
        rows = gradient.indices
        values = tf.cast(gradient.values, dtype)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        alpha = lr * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
        index = self._get_variable_index(variable)
        m = self._momentums[index].value
        v = self._velocities[index].value

        if self.weight_decay and self._decays(variable):
            # AdamW's decoupled decay, on the used rows only, before the Adam step (as Keras orders them).
            decay = tf.gather(variable, rows) * (tf.cast(self.weight_decay, dtype) * lr)
            variable.scatter_sub(tf.IndexedSlices(decay, rows))
        m_rows = beta_1 * tf.gather(m, rows) + (1 - beta_1) * values
        v_rows = beta_2 * tf.gather(v, rows) + (1 - beta_2) * tf.square(values)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        variable.scatter_sub(tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon), rows))

    def _decays(self, variable):
        """Keras's own rule (exclude_from_weight_decay), without the sparse-variable exception."""
        return super()._use_weight_decay(variable)


@keras.saving.register_keras_serializable(package="textcls")
class LazyAdam(_LazyRows, keras.optimizers.Adam):
    """`keras.optimizers.Adam` whose sparse (embedding) gradients update only the rows used.

    Args: those of `keras.optimizers.Adam` (amsgrad is not supported).

    Example:

    ```python
    model.compile(optimizer=LazyAdam(learning_rate=1e-3, global_clipnorm=5.0), loss=...)
    ```
    """


@keras.saving.register_keras_serializable(package="textcls")
class LazyAdamW(_LazyRows, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` whose sparse (embedding) gradients update, and decay, only the rows used.

    Args: those of `keras.optimizers.AdamW` (amsgrad is not supported).

    Example:

    ```python
    model.compile(optimizer=LazyAdamW(learning_rate=2e-3, weight_decay=0.004), loss=...)
    ```
    """


class _PreReducedGradients:
    """Takes gradients already summed over replicas (trainers.loop sums, merges repeated rows and
    clips them first), so it does not all-reduce them again: a second all-reduce of an embedding's
    IndexedSlices would concatenate the replicas' rows into duplicates."""

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)


_PRE_REDUCED: dict = {}


def pre_reduced(cls: type) -> type:
    """``cls`` (a Keras optimizer class) taking gradients that are already summed over replicas,
    whose weight average (``use_ema``) may be updated every ``ema_every``-th step only."""
    if cls not in _PRE_REDUCED:
        _PRE_REDUCED[cls] = type(cls.__name__, (_PreReducedGradients, PeriodicAverage, cls), {"__module__": __name__})
    return _PRE_REDUCED[cls]
