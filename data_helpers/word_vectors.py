"""Pretrained word vectors (word2vec text format) for the embedding layer."""

from __future__ import annotations

import numpy as np

from data_helpers.reader import DataError


def load_word_vectors(path: str, tokens: list[str], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the vocabulary found in a word2vec text file, and their vectors.

    The file is ``word v1 ... v_dim`` per line, optionally after a ``count dim`` header.
    Only in-vocabulary words are kept, so a large file costs little memory.

    Returns:
        (row ids int64 [n], vectors float32 [n, dim]).
    """
    index = {t: i for i, t in enumerate(tokens)}
    rows, vecs = [], []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            parts = raw.rstrip().split(b" ")
            if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                if int(parts[1]) != dim:
                    raise DataError(f"{path}:1: vectors have {int(parts[1])} dimensions but embedding_size is {dim}")
                continue
            if len(parts) < 2:
                continue
            try:
                word = parts[0].decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{path}:{lineno}: word is not UTF-8") from None
            if len(parts) - 1 != dim:
                raise DataError(f"{path}:{lineno}: {len(parts) - 1} numbers, expected {dim} (embedding_size)")
            i = index.get(word)
            if i is None or i < 2:
                continue
            try:
                vecs.append(np.array([float(x) for x in parts[1:]], np.float32))
            except ValueError:
                raise DataError(f"{path}:{lineno}: not a number among the vector's values") from None
            rows.append(i)
    if not vecs:
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
    return np.array(rows, np.int64), np.stack(vecs)
