"""Adversarial training on the embeddings (FGM; Miyato, Dai and Goodfellow, 2017): the
perturbation, a pure function of the loss's gradient with respect to the embeddings."""

from __future__ import annotations

import tensorflow as tf


def fgm_perturbation(grad, ids, epsilon: float):
    """The embeddings' adversarial perturbation: ``grad`` [batch, seq, dim] on the real tokens
    (``ids`` != 0) scaled, per text, to L2 norm ``epsilon`` over the text; 0 on padding and for
    a text whose gradient is 0.

    Args:
        grad: the gradient of the loss with respect to the embeddings, [batch, seq, dim].
        ids: the token ids [batch, seq] those embeddings came from, 0 = padding.
        epsilon: the perturbation's norm per text.

    Returns:
        A tensor shaped as ``grad``: the first-order direction that raises each text's loss most
        among all moves of norm ``epsilon`` of its real tokens' embeddings.
    """
    real = tf.cast(tf.not_equal(ids, 0), grad.dtype)[:, :, None]
    g = grad * real
    norm = tf.sqrt(tf.reduce_sum(tf.square(g), axis=[1, 2], keepdims=True))
    return tf.math.divide_no_nan(epsilon * g, norm)
