"""One training step under any tf.distribute strategy: ``strategy.run`` in a ``tf.function``.

The same step serves one CPU, one GPU, several GPUs (MirroredStrategy) and several machines
(MultiWorkerMirroredStrategy); Keras 3's ``model.fit`` does not run under the last one
(keras-team/keras#20585).

Per replica: the per-example loss summed and divided by the *global* batch size
(``tf.nn.compute_average_loss``), plus the regularization losses divided by the number of
replicas; gradients are summed over replicas, repeated embedding rows merged, clipped to
``max_grad_norm`` by their global norm, then applied by an optimizer that does not sum them again
(:func:`trainers.optimizers.pre_reduced`). Summing before clipping is what makes N replicas
compute exactly the update one replica computes on the whole batch (Keras's optimizers clip each
replica's gradient before summing).
"""

from __future__ import annotations

import tensorflow as tf

from data_helpers.pipeline import share_bounds
from models import split_at_embeddings
from trainers.adversarial import fgm_perturbation
from trainers.losses import consistency_kl, predictions
from trainers.optimizers import _dedupe


class TrainStep:
    """Callable: ``step(iterator)`` takes the next global batch, trains on it and returns
    (summed loss, correct predictions, examples) over every replica, as numbers.

    Args:
        strategy: the tf.distribute strategy the model and optimizer were built under.
        model: a Keras model from token ids to probabilities.
        optimizer: a Keras optimizer of a :func:`trainers.optimizers.pre_reduced` class, built for
            ``model.trainable_variables``, without clipping of its own.
        loss_fn: ``loss_fn(y, probs)`` -> the loss of each example ([batch]); see
            :func:`trainers.losses.per_example_loss`.
        kind: the head, ``softmax``, ``binary`` or ``multi_label`` (multi-label "correct" is
            the share of labels right at 0.5, as Keras's BinaryAccuracy counts it).
        global_batch_size: examples per step over all replicas (the config's ``batch_size``).
        max_grad_norm: clip gradients to this global norm (None: no clipping).
        rdrop_alpha: R-Drop (Liang et al. 2021) when > 0: every example runs through the model
            twice in one doubled batch, with different dropout; its loss is the mean of the two
            losses plus ``rdrop_alpha`` x the symmetric KL divergence between the two predictions.
        adversarial_epsilon: adversarial training (FGM, Miyato et al. 2017) when > 0: the loss
            adds the loss of the same batch with each text's embeddings moved by
            ``adversarial_epsilon`` (L2 norm over the text's real tokens) in the direction that
            raises its loss most to first order (the gradient, normalised per text).
    """

    def __init__(self, strategy, model, optimizer, loss_fn, kind, global_batch_size, max_grad_norm, rdrop_alpha=0.0,
                 adversarial_epsilon=0.0):
        self.strategy, self.model, self.optimizer = strategy, model, optimizer
        self.loss_fn, self.kind, self.rdrop_alpha = loss_fn, kind, float(rdrop_alpha)
        self.adversarial_epsilon = float(adversarial_epsilon)
        if self.adversarial_epsilon > 0:
            self._embed, self._from_embeddings = split_at_embeddings(model)
        self.global_batch_size, self.max_grad_norm = global_batch_size, max_grad_norm
        try:
            self.local_replicas = len(strategy.extended.worker_devices)
        except RuntimeError:  # the default strategy: one device
            self.local_replicas = 1
        self._fn = tf.function(self._step)

    def _replica_step(self, x, y):
        replicas = self.strategy.num_replicas_in_sync
        with tf.GradientTape() as tape:
            if self.adversarial_epsilon > 0:
                probs, losses, adversarial = self._adversarial_losses(x, y)
                losses = losses + adversarial
            elif self.rdrop_alpha > 0:
                both = self.model(tf.concat([x, x], axis=0), training=True)
                probs, again = tf.split(both, 2, axis=0)
                losses = 0.5 * (self.loss_fn(y, probs) + self.loss_fn(y, again))
                losses += self.rdrop_alpha * consistency_kl(probs, again, self.kind)
            else:
                probs = self.model(x, training=True)
                losses = self.loss_fn(y, probs)
            loss = tf.nn.compute_average_loss(losses, global_batch_size=self.global_batch_size)
            if self.model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
        variables = self.model.trainable_variables
        grads = tape.gradient(loss, variables)
        if replicas > 1:
            grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
        grads = [_dedupe(g) for g in grads]
        if self.max_grad_norm:
            grads, _ = tf.clip_by_global_norm(grads, self.max_grad_norm)
        self.optimizer.apply_gradients(zip(grads, variables))
        pred = predictions(probs, self.kind)
        if self.kind == "multi_label":
            correct = tf.reduce_sum(tf.reduce_mean(tf.cast(tf.equal(pred, y > 0.5), tf.float32), axis=-1))
        else:
            correct = tf.reduce_sum(tf.cast(tf.equal(pred, tf.cast(y, tf.int32)), tf.float32))
        return tf.reduce_sum(losses), correct, tf.cast(tf.shape(y)[0], tf.float32)

    def _adversarial_losses(self, x, y):
        """Probabilities, losses and adversarial losses of a batch (FGM on the embeddings)."""
        e = self._embed(x, training=True)
        with tf.GradientTape() as inner:
            inner.watch(e)
            probs = self._from_embeddings([x, e], training=True)
            losses = self.loss_fn(y, probs)
            total = tf.reduce_sum(losses)
        r = fgm_perturbation(tf.stop_gradient(inner.gradient(total, e)), x, self.adversarial_epsilon)
        adversarial = self.loss_fn(y, self._from_embeddings([x, e + r], training=True))
        return probs, losses, adversarial

    def _part(self, x, y, i):
        """Local replica ``i``'s rows of this worker's share (several GPUs on one worker)."""
        start, end = share_bounds(tf.shape(y)[0], i, self.local_replicas)
        return x[start:end], y[start:end]

    def _step(self, iterator):
        x, y = next(iterator)  # this worker's rows of the global batch
        if self.local_replicas > 1:
            parts = self.strategy.experimental_distribute_values_from_function(
                lambda ctx: self._part(x, y, ctx.replica_id_in_sync_group % self.local_replicas)
            )
            out = self.strategy.run(lambda xy: self._replica_step(*xy), args=(parts,))
        else:
            out = self.strategy.run(self._replica_step, args=(x, y))
        return [self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in out]

    def __call__(self, iterator) -> tuple[float, float, float]:
        loss_sum, correct, n = self._fn(iterator)
        return float(loss_sum), float(correct), float(n)
