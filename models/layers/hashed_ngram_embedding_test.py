import numpy as np
import pytest
import keras
from keras import ops

from models.layers.hashed_ngram_embedding import HashedNgramEmbedding

IDS = np.array([[5, 9, 7, 0, 0, 0], [1, 2, 3, 4, 5, 6], [3, 0, 0, 0, 0, 0]], "int32")


def reference_buckets(ids, num_buckets, max_n, multiplier=2_147_483_629):
    """The documented hash, in plain Python integers."""
    out = np.zeros((max_n - 1, *ids.shape), np.int64)
    for n in range(2, max_n + 1):
        for b, row in enumerate(ids.tolist()):
            padded = row + [0] * n
            for i in range(len(row)):
                h = n
                for k in range(n):
                    h = (h * multiplier + padded[i + k]) % num_buckets
                out[n - 2, b, i] = h
    return out


@pytest.mark.parametrize("max_n", [2, 3])
def test_buckets_match_the_documented_hash(max_n):
    layer = HashedNgramEmbedding(1009, 4, max_n=max_n)
    got = ops.convert_to_numpy(layer.bucket_ids(IDS))
    np.testing.assert_array_equal(got, reference_buckets(IDS, 1009, max_n))


def test_output_is_the_sum_of_the_ngram_rows():
    layer = HashedNgramEmbedding(1009, 4, max_n=3)
    out = ops.convert_to_numpy(layer(IDS))
    table = ops.convert_to_numpy(layer.embeddings)
    buckets = reference_buckets(IDS, 1009, 3)
    np.testing.assert_allclose(out, table[buckets[0]] + table[buckets[1]], atol=1e-6)
    assert out.shape == (3, 6, 4)


def test_extra_padding_leaves_real_positions_unchanged():
    layer = HashedNgramEmbedding(1009, 4, max_n=3)
    short = ops.convert_to_numpy(layer(IDS))
    long = ops.convert_to_numpy(layer(np.pad(IDS, ((0, 0), (0, 5)))))
    real = IDS != 0
    np.testing.assert_allclose(short[real], long[:, :6][real], atol=0)


def test_order_matters_and_a_one_token_text_works():
    layer = HashedNgramEmbedding(100_003, 2)
    ab, ba = ops.convert_to_numpy(layer.bucket_ids(np.array([[7, 8], [8, 7]], "int32")))[0]
    assert ab[0] != ba[0]
    assert layer(np.array([[4]], "int32")).shape == (1, 1, 2)


def test_distinct_bigrams_rarely_collide():
    rng = np.random.default_rng(0)
    pairs = {tuple(p) for p in rng.integers(2, 5000, size=(5000, 2)).tolist()}
    ids = np.array(sorted(pairs), "int32")
    buckets = ops.convert_to_numpy(HashedNgramEmbedding(200_003, 2).bucket_ids(ids))[0, :, 0]
    # Uniform hashing of ~5,000 keys into 200,003 rows collides ~60 times.
    assert len(pairs) - len(set(buckets.tolist())) < 150


def test_only_the_used_rows_get_gradients():
    import tensorflow as tf

    layer = HashedNgramEmbedding(1009, 3)
    with tf.GradientTape() as tape:
        loss = ops.sum(layer(IDS[:1, :3]))
    grad = tf.convert_to_tensor(tape.gradient(loss, layer.embeddings.value))
    touched = np.flatnonzero(np.abs(grad.numpy()).sum(axis=1))
    assert sorted(touched.tolist()) == sorted(set(reference_buckets(IDS[:1, :3], 1009, 2).ravel().tolist()))


def test_config_round_trip_and_saving(tmp_path):
    layer = HashedNgramEmbedding(101, 4, max_n=3, name="ng")
    clone = HashedNgramEmbedding.from_config(layer.get_config())
    assert (clone.num_buckets, clone.output_dim, clone.max_n) == (101, 4, 3)
    ids = keras.Input((None,), dtype="int32")
    model = keras.Model(ids, layer(ids))
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again(IDS), model(IDS), atol=0)


@pytest.mark.parametrize("kwargs", [{"num_buckets": 0, "output_dim": 4}, {"num_buckets": 10, "output_dim": 4, "max_n": 1}])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        HashedNgramEmbedding(**kwargs)
