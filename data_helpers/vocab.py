"""Vocabulary, label map and the text encoder (tokens -> padded ids) they make together.

What training saves in ``output_path`` (JSON and plain text, never pickle):

- ``vocab.json``: tokens, labels, tokenizer settings, data settings and a fingerprint of all
  of them; ``vocab.txt`` (one token per line, line number = id) and ``labels.txt`` beside it.

The fingerprint covers everything that decides which ids a text gets: tokenizer settings,
sequence_length, min_count, vocab_size and the content of train_data/class_names. A run or a
Predictor whose settings give another fingerprint never reuses the saved vocab silently.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from data_helpers.io_utils import atomic_write_json, atomic_write_text, read_json
from data_helpers.tokenizer import Tokenizer

PAD, UNK = "<PAD>", "<UNK>"
PAD_ID, UNK_ID = 0, 1
FORMAT = "textcls-vocab/1"


class StaleVocabError(RuntimeError):
    """Saved vocab/model was made with other tokenizer or data settings than asked for."""


def build_vocab(token_stream, min_count: int = 1, max_size: int = 20000) -> list[str]:
    """Tokens by falling count (ties by token), `<PAD>` = 0 and `<UNK>` = 1 first."""
    counts = collections.Counter(token_stream)
    counts.pop(PAD, None)
    counts.pop(UNK, None)
    ranked = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    return [PAD, UNK] + ranked[: max_size - 2]


def _digest(tokens: list[str]) -> str:
    return hashlib.sha256("\n".join(tokens).encode("utf-8")).hexdigest()


def fingerprint(settings: dict) -> str:
    blob = json.dumps(settings, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class VocabArtifacts:
    """Everything that turns text into model inputs and outputs back into labels."""

    tokens: list[str]
    labels: list[str]
    tokenizer: dict  # Tokenizer.get_config()
    sequence_length: int  # tokens read per text (long_text chunks: every window's, see config_tokens_read)
    binary: bool  # one sigmoid output (num_classes = 1) instead of a softmax
    settings: dict = field(default_factory=dict)  # data settings that went into the fingerprint
    multi_label: bool = False  # one sigmoid output per label; a text has any number of labels
    label_sep: str | None = None  # multi-label: what joins the labels of one line (and of the export's `label`)

    @property
    def fingerprint(self) -> str:
        extra = {"multi_label": True, "label_sep": self.label_sep} if self.multi_label else {}
        return fingerprint(
            {"tokenizer": self.tokenizer, "sequence_length": self.sequence_length, "binary": self.binary, **self.settings, **extra}
        )

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "tokenizer": self.tokenizer,
            "sequence_length": self.sequence_length,
            "binary": self.binary,
            "multi_label": self.multi_label,
            "label_sep": self.label_sep,
            "settings": self.settings,
            "labels": self.labels,
            "tokens_sha256": _digest(self.tokens),
            "tokens": self.tokens,
        }

    def save(self, folder: str) -> None:
        """vocab.txt and labels.txt first, vocab.json (which names the fingerprint) last."""
        atomic_write_text(os.path.join(folder, "vocab.txt"), "\n".join(self.tokens) + "\n")
        atomic_write_text(os.path.join(folder, "labels.txt"), "\n".join(self.labels) + "\n")
        atomic_write_json(os.path.join(folder, "vocab.json"), self.to_json())

    @classmethod
    def load(cls, folder: str) -> "VocabArtifacts":
        data = read_json(os.path.join(folder, "vocab.json"))
        if data.get("format") != FORMAT:
            raise StaleVocabError(f"{folder}/vocab.json: unknown format {data.get('format')!r}")
        art = cls(
            tokens=data["tokens"],
            labels=data["labels"],
            tokenizer=data["tokenizer"],
            sequence_length=data["sequence_length"],
            binary=data["binary"],
            settings=data["settings"],
            multi_label=data.get("multi_label", False),
            label_sep=data.get("label_sep"),
        )
        if art.fingerprint != data["fingerprint"] or _digest(art.tokens) != data.get("tokens_sha256"):
            raise StaleVocabError(f"{folder}/vocab.json: fingerprint does not match its content (edited by hand?)")
        return art


class TextEncoder(tf.Module):
    """Text -> ids [batch, sequence_length] (int32, 0-padded), in a TensorFlow graph.

    Args:
        tokenizer: the :class:`Tokenizer`.
        vocab_file: ``vocab.txt``, one token per line, line number = id. It is carried
            into a SavedModel as an asset.
        sequence_length: texts are truncated to, and padded up to, this many tokens.

    Example:
        >>> enc = TextEncoder(Tokenizer("char"), "outputs/textcnn/vocab.txt", 64)
        >>> enc.encode(["很好吃"]).shape
        (1, 64)
    """

    def __init__(self, tokenizer: Tokenizer, vocab_file: str, sequence_length: int):
        super().__init__(name="text_encoder")
        self.tokenizer = tokenizer
        self.sequence_length = int(sequence_length)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                vocab_file,
                tf.string,
                tf.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64,
                tf.lookup.TextFileIndex.LINE_NUMBER,
            ),
            default_value=UNK_ID,
        )

    def ids(self, strings: tf.Tensor, full_width: bool = True) -> tf.Tensor:
        """Stage-2 tokens of already segmented strings [batch] -> ids [batch, width].

        width is sequence_length, or with ``full_width=False`` the longest text's length
        (at least 1): the models ignore padding, so serving pads no further than needed
        and a short sentence costs a short sequence (an LSTM pays per step).
        """
        return self.ids_from_tokens(self.tokenizer.clip(self.tokenizer.split(strings), self.sequence_length), full_width)

    def ids_from_tokens(self, tokens: tf.RaggedTensor, full_width: bool = True) -> tf.Tensor:
        """Ragged stage-2 tokens [batch, None] (at most sequence_length a row) -> ids, as :meth:`ids`."""
        ids = tf.ragged.map_flat_values(self.table.lookup, tokens)
        # A literal "<PAD>" in the text must not read as padding.
        ids = tf.ragged.map_flat_values(lambda v: tf.where(v == PAD_ID, tf.constant(UNK_ID, tf.int64), v), ids)
        if full_width:
            dense = ids.to_tensor(default_value=PAD_ID, shape=[None, self.sequence_length])
        else:
            width = tf.maximum(tf.cast(tf.reduce_max(ids.row_lengths()), tf.int32), 1)
            dense = ids.to_tensor(default_value=PAD_ID, shape=[None, None])
            dense = tf.pad(dense, [[0, 0], [0, width - tf.shape(dense)[1]]])
        return tf.cast(dense, tf.int32)

    def encode(self, texts: list[str], batch_size: int = 8192) -> np.ndarray:
        """Both tokenizer stages for a list of texts -> numpy int32 [len(texts), sequence_length]."""
        out = [np.zeros((0, self.sequence_length), np.int32)]
        for i in range(0, len(texts), batch_size):
            chunk = self.tokenizer.segment(texts[i : i + batch_size])
            out.append(self.ids(tf.constant(chunk, tf.string)).numpy())
        return np.concatenate(out)


def count_tokens(tokenizer: Tokenizer, texts: list[str], batch_size: int = 8192):
    """Every stage-2 token of every text (as str), for building the vocabulary."""
    for i in range(0, len(texts), batch_size):
        chunk = tokenizer.segment(texts[i : i + batch_size])
        flat = tokenizer.split(tf.constant(chunk, tf.string)).flat_values.numpy()
        yield from (t.decode("utf-8") for t in flat)
