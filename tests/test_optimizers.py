"""LazyAdam / LazyAdamW: sparse gradients update only the rows used, and otherwise equal Keras's Adam."""

from __future__ import annotations

import numpy as np
import pytest
import keras
import tensorflow as tf

from trainers.optimizers import LazyAdam, LazyAdamW

PAIRS = [
    (lambda **kw: LazyAdam(**kw), lambda **kw: keras.optimizers.Adam(**kw)),
    (lambda **kw: LazyAdamW(weight_decay=0.1, **kw), lambda **kw: keras.optimizers.AdamW(weight_decay=0.1, **kw)),
]


def run(optimizer, batches, table, bias, dense=False):
    """A tiny embedding model: loss = sum(w[ids] * c) + bias term; returns the final weights.

    ``dense``: hand the optimizer a dense gradient. Keras's Adam given the IndexedSlices of
    repeated ids squares each slice before summing them, which is not Adam's second moment.
    """
    emb = keras.Variable(table.copy(), name="embeddings")
    b = keras.Variable(bias.copy(), name="bias")
    optimizer.build([emb, b])
    for ids, coef in batches:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.gather(emb.value, ids) * coef) + tf.reduce_sum(b.value**2)
        grads = tape.gradient(loss, [emb.value, b.value])
        assert isinstance(grads[0], tf.IndexedSlices)
        if dense:
            grads = [tf.convert_to_tensor(g) for g in grads]
        optimizer.apply(grads, [emb, b])
    return emb.numpy(), b.numpy()


RNG = np.random.default_rng(0)
TABLE = RNG.normal(size=(6, 3)).astype("float32")
BIAS = RNG.normal(size=(3,)).astype("float32")


@pytest.mark.parametrize("lazy,dense", PAIRS, ids=["adam", "adamw"])
@pytest.mark.parametrize("clip", [None, 0.5])
def test_equals_keras_when_every_row_is_used(lazy, dense, clip):
    # Every batch uses every row (some twice), so lazy and dense updates must agree.
    batches = [(np.array([0, 1, 2, 3, 4, 5, 2, 2]), RNG.normal(size=(8, 3)).astype("float32")) for _ in range(4)]
    a = run(lazy(learning_rate=0.05, global_clipnorm=clip), batches, TABLE, BIAS)
    b = run(dense(learning_rate=0.05, global_clipnorm=clip), batches, TABLE, BIAS, dense=True)
    np.testing.assert_allclose(a[0], b[0], atol=1e-5)  # float32, different op order
    np.testing.assert_allclose(a[1], b[1], atol=1e-6)


@pytest.mark.parametrize("lazy,dense", PAIRS, ids=["adam", "adamw"])
def test_unused_rows_stay_put(lazy, dense):
    coef = np.ones((2, 3), "float32")
    batches = [(np.array([0, 1]), coef), (np.array([1, 2]), coef)]
    emb, _ = run(lazy(learning_rate=0.05), batches, TABLE, BIAS)
    np.testing.assert_array_equal(emb[3:], TABLE[3:])  # never used: untouched (no decay either)
    assert not np.allclose(emb[:3], TABLE[:3])
    dense_emb, _ = run(dense(learning_rate=0.05), batches, TABLE, BIAS, dense=True)
    # Keras's Adam moves row 0 again in step 2 (its momentum), the lazy one does not.
    first, _ = run(lazy(learning_rate=0.05), batches[:1], TABLE, BIAS)
    np.testing.assert_allclose(emb[0], first[0], atol=1e-7)
    assert not np.allclose(dense_emb[0], first[0])


def test_amsgrad_is_refused():
    with pytest.raises(ValueError, match="amsgrad"):
        LazyAdam(amsgrad=True)
