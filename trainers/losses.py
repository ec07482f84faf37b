"""Training losses: cross-entropy or focal, for softmax, binary and multi-label heads, with
class weights for rare classes. Pure functions of tensors (and of label counts), no state.

Keras's own ``class_weight`` (``model.fit``) takes the argmax of a multi-hot target, so it
weighs multi-label data wrongly; here every loss is weighed explicitly:
- single-label (softmax or binary): each example's loss times the weight of its class;
- multi-label: the positive term of each label times that label's weight (a ``pos_weight``),
  the negative terms unweighted.
"""

from __future__ import annotations

import keras
import tensorflow as tf

KINDS = ("softmax", "binary", "multi_label")
_EPSILON = 1e-7  # Keras's backend epsilon: what its cross-entropies clip probabilities to


def head_kind(binary: bool, multi_label: bool) -> str:
    return "multi_label" if multi_label else "binary" if binary else "softmax"


def per_example_loss(y, probs, *, kind: str, num_labels: int, label_smoothing: float = 0.0, loss: str = "cross_entropy",
                     gamma: float = 2.0, weights=None):
    """The loss of each example ([batch]).

    Args:
        y: label ids [batch] (softmax, binary) or multi-hot targets [batch, num_labels] (multi_label).
        probs: the model's probabilities: softmax [batch, num_labels], sigmoid [batch, 1]
            (binary) or sigmoids [batch, num_labels] (multi_label).
        kind: ``softmax``, ``binary`` or ``multi_label``.
        num_labels: the number of labels (2 for binary).
        label_smoothing: as Keras's losses apply it.
        loss: ``cross_entropy`` or ``focal`` (Keras's categorical / binary focal cross-entropy,
            alpha 1, focusing parameter ``gamma``).
        weights: None or float [num_labels] from :func:`data_helpers.class_weights.class_weights`.

    Multi-label losses are the mean over labels, as Keras's ``binary_crossentropy``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    focal = loss == "focal"
    if kind == "multi_label":
        target = tf.cast(y, probs.dtype)
        if weights is None:
            if focal:
                return keras.losses.binary_focal_crossentropy(target, probs, gamma=gamma, label_smoothing=label_smoothing)
            return keras.losses.binary_crossentropy(target, probs, label_smoothing=label_smoothing)
        t = target * (1.0 - label_smoothing) + 0.5 * label_smoothing
        p = tf.clip_by_value(probs, _EPSILON, 1.0 - _EPSILON)
        w = tf.cast(tf.reshape(weights, [1, -1]), probs.dtype)
        elem = -(w * t * tf.math.log(p) + (1.0 - t) * tf.math.log(1.0 - p))
        if focal:
            elem *= tf.pow(1.0 - (t * p + (1.0 - t) * (1.0 - p)), gamma)
        return tf.reduce_mean(elem, axis=-1)
    ids = tf.cast(tf.reshape(y, [-1]), tf.int32)
    if kind == "binary":
        target = tf.cast(tf.reshape(ids, [-1, 1]), probs.dtype)
        if focal:
            out = keras.losses.binary_focal_crossentropy(target, probs, gamma=gamma, label_smoothing=label_smoothing)
        else:
            out = keras.losses.binary_crossentropy(target, probs, label_smoothing=label_smoothing)
    else:
        target = tf.one_hot(ids, num_labels, dtype=probs.dtype)
        if focal:
            out = keras.losses.categorical_focal_crossentropy(target, probs, alpha=1.0, gamma=gamma, label_smoothing=label_smoothing)
        else:
            out = keras.losses.categorical_crossentropy(target, probs, label_smoothing=label_smoothing)
    if weights is not None:
        out *= tf.gather(tf.cast(weights, out.dtype), ids)
    return out


def consistency_kl(p, q, kind: str):
    """R-Drop's penalty (Liang et al. 2021) of each example ([batch]): the symmetric KL divergence
    ``(KL(p || q) + KL(q || p)) / 2`` between two predictions of the same text.

    Args:
        p, q: two probability outputs of the same shape: softmax [batch, num_labels], or sigmoids
            [batch, 1] (binary) or [batch, num_labels] (multi_label), each sigmoid a Bernoulli
            distribution (multi-label: the mean over labels, as the cross-entropy).
        kind: ``softmax``, ``binary`` or ``multi_label``.

    It is 0 where p equals q, positive otherwise, symmetric in p and q, and finite for
    probabilities of 0 or 1 (they are clipped to Keras's epsilon as its cross-entropies do).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    p = tf.clip_by_value(p, _EPSILON, 1.0 - _EPSILON)
    q = tf.clip_by_value(q, _EPSILON, 1.0 - _EPSILON)
    elem = 0.5 * (p - q) * (tf.math.log(p) - tf.math.log(q))
    if kind == "softmax":
        return tf.reduce_sum(elem, axis=-1)
    elem += 0.5 * (q - p) * (tf.math.log(1.0 - p) - tf.math.log(1.0 - q))  # the Bernoulli's other outcome
    return tf.reduce_sum(elem, axis=-1) if kind == "binary" else tf.reduce_mean(elem, axis=-1)


def predictions(probs, kind: str, thresholds=0.5):
    """What the training step counts as correct: label ids [batch] (softmax, binary) or
    booleans [batch, num_labels] (multi_label)."""
    if kind == "softmax":
        return tf.argmax(probs, axis=-1, output_type=tf.int32)
    if kind == "binary":
        return tf.cast(tf.reshape(probs, [-1]) > 0.5, tf.int32)
    return probs >= thresholds
