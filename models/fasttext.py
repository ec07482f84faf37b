"""fastText-style classifier (Joulin et al. 2016): the mean of the token and hashed n-gram
embeddings over the text, hidden ReLU layers, dense.

With ``ngram_buckets`` > 0 (bigrams, or bigrams and trigrams with ``ngram_max`` 3) it is a
bag of n-grams: the cheapest model here to train and to serve, and strong on short texts
such as news headlines.
"""

from __future__ import annotations

import keras

from models.common import classifier_head, dropout_rate, embed, ids_input, padding_mask, pool_positions


def build(cfg, vocab_size: int, num_outputs: int) -> keras.Model:
    """fastText from a config (keys embedding_size, ngram_buckets, ngram_max, hidden_sizes, keep_prob,
    pooling: ``mean`` by default, as fastText; ``max_mean`` adds the max, as SWEM-concat)."""
    ids = ids_input()
    mask = padding_mask(ids)
    x = pool_positions(embed(ids, cfg, vocab_size), mask, cfg.pooling or "mean")
    for i, units in enumerate(cfg.hidden_sizes):
        x = keras.layers.Dropout(dropout_rate(cfg), name=f"dropout_{i}")(x)
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
    return keras.Model(ids, classifier_head(x, cfg, num_outputs), name="fasttext")
