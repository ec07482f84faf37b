"""Embeddings of the token n-grams that start at each position, hashed into a fixed table."""

import keras
from keras import ops

# A large prime below 2**31: with num_buckets < 2**31 every product stays inside int64.
_MULTIPLIER = 2_147_483_629


@keras.saving.register_keras_serializable(package="textcls")
class HashedNgramEmbedding(keras.layers.Layer):
    """Sum of the embeddings of the n-grams (n = 2..max_n) that start at each token.

    Each n-gram of token ids is hashed into one of `num_buckets` rows of a
    single table (the fastText "hashing trick", so no n-gram vocabulary is
    built or saved). Positions past the end of the text count as id 0, so the
    n-grams of the last tokens mark the end of the text and are the same
    however much padding follows: the output at real positions does not
    depend on padding. Adding this to a token embedding gives character
    models the bigrams and trigrams that make character n-gram TF-IDF strong.

    The hash is plain integer arithmetic in the graph (`(h * P + id) mod
    num_buckets`), so an exported model needs nothing else at serving time.

    Args:
        num_buckets: int. Rows of the n-gram table; more rows, fewer collisions.
        output_dim: int. Embedding width.
        max_n: int. Longest n-gram; 2 = bigrams, 3 = bigrams and trigrams.
        embeddings_initializer: initializer of the table.
        **kwargs: keyword arguments passed to `keras.layers.Layer`.

    Example:

    ```python
    ids = ops.array([[5, 9, 7, 0, 0]], "int32")
    ngrams = HashedNgramEmbedding(num_buckets=1000, output_dim=8)(ids)  # [1, 5, 8]
    x = keras.layers.Embedding(100, 8)(ids) + ngrams
    ```
    """

    def __init__(self, num_buckets, output_dim, max_n=2, embeddings_initializer="uniform", **kwargs):
        super().__init__(**kwargs)
        if not 1 <= num_buckets < 2**31:
            raise ValueError(f"num_buckets must be in [1, 2**31), got {num_buckets}")
        if max_n < 2:
            raise ValueError(f"max_n must be >= 2, got {max_n}")
        self.num_buckets = int(num_buckets)
        self.output_dim = int(output_dim)
        self.max_n = int(max_n)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            shape=(self.num_buckets, self.output_dim),
            initializer=self.embeddings_initializer,
            name="embeddings",
        )

    def bucket_ids(self, ids):
        """`[batch, seq]` ids -> `[max_n - 1, batch, seq]` int64 bucket of each n-gram."""
        ids = ops.cast(ids, "int64")
        seq_len = ops.shape(ids)[1]
        buckets = []
        for n in range(2, self.max_n + 1):
            # Seeding with n keeps a bigram and a trigram of the same ids apart.
            h = ops.full_like(ids, n)
            for k in range(n):
                shifted = ops.pad(ids, [[0, 0], [0, k]])[:, k : k + seq_len] if k else ids
                h = ops.mod(h * _MULTIPLIER + shifted, self.num_buckets)
            buckets.append(h)
        return ops.stack(buckets)

    def call(self, ids):
        buckets = self.bucket_ids(ids)
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            # A gather on the variable itself (ResourceGather) reads only the rows used;
            # `ops.take` would first read, and copy, the whole table at every step.
            rows = tf.gather(self.embeddings.value, buckets)
        else:
            rows = ops.take(self.embeddings, buckets, axis=0)
        return ops.sum(rows, axis=0)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_buckets": self.num_buckets,
                "output_dim": self.output_dim,
                "max_n": self.max_n,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
            }
        )
        return config
