"""One tokenizer for training, evaluation, export and prediction.

Tokenizing happens in two stages so that an exported SavedModel can do it with stock
TensorFlow ops (TensorFlow Serving loads it as it is):

1. :meth:`Tokenizer.segment` (Python, only for ``word``): jieba cuts the text into words
   joined by spaces. For ``char`` and ``whitespace`` it returns the text unchanged.
2. :meth:`Tokenizer.split` (TensorFlow graph, every mode): repair invalid UTF-8, cut to
   ``max_chars`` characters, lower-case, fold every kind of whitespace into one space,
   for ``char`` put each CJK character / symbol in its own token while keeping runs of
   Latin letters and digits whole, split on spaces, drop stop words.

Training runs both stages over the corpus; the export contains stage 2, so a client of a
``word`` model sends jieba-segmented text (the Predictor and ``serve.py`` do it for you).
"""

from __future__ import annotations

import os
import re

import tensorflow as tf

from data_helpers.io_utils import file_digest
from data_helpers.long_text import LONG_TEXT, config_tokens_read, cut_chars, head_tail_split

MODES = ("char", "word", "whitespace")
# A run of Latin letters/digits is one token; anything else that is not a space is a token.
_CHAR_TOKEN = r"([a-z0-9]+|\S)"
_CHAR_TOKEN_CASED = r"([A-Za-z0-9]+|\S)"
_SPACES = r"[\s\p{Z}\p{Cc}]+"
# jieba cuts only inside runs of these characters (its re_han_default); every other character
# comes out of jieba.cut as a token of its own. And every jieba word is a dictionary word (the
# longest in jieba's dictionary has 16 Chinese characters) or a short HMM-found word.
_JIEBA_BLOCK = r"\x{4E00}-\x{9FD5}a-zA-Z0-9+#&._%\-"
_HAN = r"\x{4E00}-\x{9FD5}"
JIEBA_LONGEST_WORD = 16


def keep_mask(row_lengths: tf.Tensor, n: int, long_text: str = "truncate", head_share: float = 0.25) -> tf.RaggedTensor:
    """Which of each row's tokens are read, ragged bool [batch, None]: at most ``n`` a row, the
    first ``n`` (``truncate``), or the first ``int(n * head_share)`` and the last ``n - that``
    (``head_tail``)."""
    pos = tf.ragged.range(row_lengths)
    if long_text != "head_tail":
        return pos < n
    head, tail = head_tail_split(n, head_share)
    length = tf.gather(row_lengths, pos.value_rowids())
    flat = (pos.flat_values < head) | (pos.flat_values >= length - tail)
    return pos.with_flat_values(flat)


def longest_han_run(words) -> int:
    """The longest run of Chinese characters in any of ``words``."""
    runs = (len(r) for w in words for r in re.findall("[\u4E00-\u9FD5]+", w))
    return max(runs, default=0)


def read_word_list(path: str | None) -> list[str]:
    """Stop words: one per line, blank lines and surrounding spaces ignored."""
    if not path:
        return []
    with open(path, encoding="utf-8-sig") as f:
        return [w for w in (line.strip() for line in f) if w]


class Tokenizer(tf.Module):
    """Turns raw text into tokens, the same way everywhere.

    Args:
        mode: ``char``, ``word`` (jieba) or ``whitespace`` (already segmented).
        lowercase: lower-case before splitting.
        stop_words: tokens to drop (compared after lower-casing).
        user_dict: path of a jieba user dictionary (``word`` only).
        max_chars: texts are cut to this many characters first, so a 1 MB text costs
            no more than a short one.
        long_text: what a text longer than what is read keeps (:func:`cut_chars` for the
            characters, :meth:`clip` for the tokens): ``truncate`` its beginning, ``head_tail``
            its beginning and its end.
        head_share: ``head_tail``: the share of the tokens (and characters) taken from the
            beginning; the rest come from the end.

    Example:
        >>> tok = Tokenizer("char")
        >>> tok.tokenize("iPhone12很好用")
        ['iphone12', '很', '好', '用']
    """

    def __init__(self, mode="char", lowercase=True, stop_words=(), user_dict=None, max_chars=4096, user_dict_sha256=None,
                 long_text="truncate", head_share=0.25):
        super().__init__(name="tokenizer")
        if mode not in MODES:
            raise ValueError(f"tokenizer mode must be one of {', '.join(MODES)}; got {mode!r}")
        if long_text not in LONG_TEXT:
            raise ValueError(f"long_text must be one of {', '.join(LONG_TEXT)}; got {long_text!r}")
        self.long_text = long_text
        self.head_share = float(head_share)
        self.mode = mode
        self.lowercase = bool(lowercase)
        self.max_chars = int(max_chars)
        self.user_dict = user_dict
        self.user_dict_sha256 = user_dict_sha256 or file_digest(user_dict)
        words = sorted({(w.lower() if self.lowercase else w) for w in stop_words if w.strip()})
        self.stop_words = words
        self._stop_table = None
        if words:
            self._stop_table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(tf.constant(words), tf.ones(len(words), tf.int64)),
                default_value=0,
            )
        self._jieba = None

    # ---- stage 1: Python ---------------------------------------------------------
    def _jieba_tokenizer(self):
        if self._jieba is None:
            import logging

            import jieba

            jieba.setLogLevel(logging.WARNING)
            tk = jieba.Tokenizer()
            if self.user_dict:
                tk.load_userdict(self.user_dict)
            tk.initialize()
            self._jieba = tk
        return self._jieba

    def segment(self, texts: list[str]) -> list[str]:
        """Stage 1. ``word``: jieba words joined by spaces; other modes: unchanged."""
        if self.mode != "word":
            return list(texts)
        cut = self._jieba_tokenizer().cut
        return [" ".join(cut(self.cut_chars(t)[0])) for t in texts]

    def segment_with_offsets(self, texts: list[str]) -> list[tuple[str, list[int]]]:
        """:meth:`segment`, with where each character of the result came from: for each text,
        ``(segmented, where)``, ``where[i]`` the index in the text of ``segmented[i]`` (-1 for
        a space put between two jieba words)."""
        if self.mode != "word":
            return [(t, list(range(len(t)))) for t in texts]
        cut = self._jieba_tokenizer().cut
        out = []
        for t in texts:
            kept, head, skipped = self.cut_chars(t)
            words, where, pos = list(cut(kept)), [], 0  # jieba's words tile the kept text in order
            for i, w in enumerate(words):
                if i:
                    where.append(-1)
                where.extend(p if p < head else (p + skipped - 1 if p > head else -1) for p in range(pos, pos + len(w)))
                pos += len(w)
            out.append((" ".join(words), where))
        return out

    def cut_chars(self, text: str) -> tuple[str, int, int]:
        """Stage 1's cut to ``max_chars`` (:func:`cut_chars`), as stage 2 cuts in the graph."""
        return cut_chars(text, self.max_chars, self.long_text, self.head_share)

    def clip(self, tokens: tf.RaggedTensor, n: int, *others: tf.RaggedTensor):
        """The tokens of each row that are read, at most ``n`` (``long_text``); ``others``
        (spans shaped like ``tokens``) are clipped alike and returned after them."""
        if self.long_text == "truncate":
            out = [t[:, :n] for t in (tokens, *others)]
        else:
            keep = keep_mask(tokens.row_lengths(), n, self.long_text, self.head_share)
            out = [tf.ragged.boolean_mask(t, keep) for t in (tokens, *others)]
        return out[0] if not others else tuple(out)

    # ---- stage 2: TensorFlow graph -------------------------------------------------
    def split(self, strings: tf.Tensor) -> tf.RaggedTensor:
        """Stage 2: a string tensor [batch] -> ragged tokens [batch, None]."""
        tokens = self._tokens(self._cut(strings), self.lowercase)
        keep = self._keep(tokens)
        return tokens if keep is None else tf.ragged.boolean_mask(tokens, keep)

    def split_with_spans(self, strings: tf.Tensor):
        """Stage 2 with where each token came from: (tokens, starts, ends), ragged [batch, None]
        alike; token i of a text is its characters ``starts[i]:ends[i]`` (in characters, of the
        string given: the raw text for ``char``, the segmented text otherwise). A text whose
        lower-casing changes its length (a rare letter such as "İ") gets spans of -1."""
        x, head, skipped = self._cut_with_shift(strings)
        tokens = self._tokens(x, self.lowercase)
        y = tf.strings.lower(x, encoding="utf-8") if self.lowercase else x
        # Every non-space character belongs to exactly one token, in order: a token's span runs
        # from the position of its first non-space character to that of its last. Lower-casing
        # maps a character to one character except in rare letters: there, the row gets -1s.
        same = tf.equal(tf.strings.length(y, unit="UTF8_CHAR"), tf.strings.length(x, unit="UTF8_CHAR"))
        chars = tf.strings.unicode_split(y, "UTF-8")
        positions = tf.ragged.range(chars.row_lengths(), dtype=tf.int64)
        solid = tf.ragged.boolean_mask(positions, tf.logical_not(tf.strings.regex_full_match(chars, _SPACES)))
        lengths = tf.strings.length(tokens, unit="UTF8_CHAR")
        flat_len = tf.cast(lengths.flat_values, tf.int64)
        row_of = lengths.value_rowids()
        before = tf.cumsum(flat_len, exclusive=True)
        before -= tf.gather(tf.concat([before, [0]], 0), tf.gather(lengths.row_splits, row_of))
        base = tf.gather(solid.row_splits, row_of)
        ok = (before + flat_len <= tf.gather(solid.row_lengths(), row_of)) & (flat_len > 0) & tf.gather(same, row_of)
        first = tf.gather(solid.flat_values, tf.where(ok, base + before, 0))
        last = tf.gather(solid.flat_values, tf.where(ok, base + before + flat_len - 1, 0))
        # head_tail: a character after the space that joins head and tail sits `skipped - 1` later in the text
        head, skipped = tf.gather(tf.cast(head, tf.int64), row_of), tf.gather(tf.cast(skipped, tf.int64), row_of)
        first = tf.where(first > head, first + skipped - 1, first)
        last = tf.where(last > head, last + skipped - 1, last)
        starts = lengths.with_flat_values(tf.where(ok, first, -1))
        ends = lengths.with_flat_values(tf.where(ok, last + 1, -1))
        keep = self._keep(tokens)
        if keep is not None:
            tokens, starts, ends = (tf.ragged.boolean_mask(t, keep) for t in (tokens, starts, ends))
        return tokens, starts, ends

    def _cut(self, strings: tf.Tensor) -> tf.Tensor:
        return self._cut_with_shift(strings)[0]

    def _cut_with_shift(self, strings: tf.Tensor):
        """(the characters read, as :func:`cut_chars`; the head's length; the characters skipped)."""
        x = tf.strings.unicode_transcode(strings, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
        n = tf.strings.length(x, unit="UTF8_CHAR")
        if self.long_text != "head_tail":
            return tf.strings.substr(x, 0, self.max_chars, unit="UTF8_CHAR"), tf.minimum(n, self.max_chars), tf.zeros_like(n)
        head, tail = head_tail_split(self.max_chars, self.head_share)
        long = n > self.max_chars
        cut = tf.strings.join([tf.strings.substr(x, 0, head, unit="UTF8_CHAR"), " ",
                               tf.strings.substr(x, tf.maximum(n - tail, 0), tf.fill(tf.shape(n), tail), unit="UTF8_CHAR")])
        return tf.where(long, cut, x), tf.where(long, head, n), tf.where(long, n - head - tail, 0)

    def _tokens(self, x: tf.Tensor, lowercase: bool) -> tf.RaggedTensor:
        if lowercase:
            x = tf.strings.lower(x, encoding="utf-8")
        x = tf.strings.regex_replace(x, _SPACES, " ")
        if self.mode == "char":
            x = tf.strings.regex_replace(x, _CHAR_TOKEN if lowercase else _CHAR_TOKEN_CASED, r" \1 ")
        return tf.strings.split(x)

    def _keep(self, tokens: tf.RaggedTensor):
        """Which tokens are not stop words (None: no stop words)."""
        if self._stop_table is None:
            return None
        return tf.ragged.map_flat_values(self._stop_table.lookup, tokens) == 0

    def unsegmented(self, strings: tf.Tensor, longest_word: int = JIEBA_LONGEST_WORD) -> tf.Tensor:
        """For ``word`` models: bool [batch], True where a text cannot be jieba's output joined by
        spaces. A token that is longer than one character and holds a character jieba always
        emits alone (punctuation, emoji, other scripts), or a run of more than ``longest_word``
        Chinese characters, is raw text sent to a word model by mistake."""
        x = tf.strings.unicode_transcode(strings, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
        tokens = tf.strings.split(tf.strings.regex_replace(x, _SPACES, " "))
        glued = tf.strings.regex_full_match(tokens, f"(?s).*[^{_JIEBA_BLOCK}].*") & (
            tf.strings.length(tokens, unit="UTF8_CHAR") >= 2)
        too_long = tf.strings.regex_full_match(tokens, f"(?s).*[{_HAN}]{{{int(longest_word) + 1},}}.*")
        return tf.reduce_any(glued | too_long, axis=1)

    # ---- convenience --------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        """Both stages for one text, eagerly (for inspection and tests)."""
        tokens = self.split(tf.constant(self.segment([text])))
        return [t.decode("utf-8") for t in tokens[0].numpy()]

    def get_config(self) -> dict:
        return {
            "mode": self.mode,
            "lowercase": self.lowercase,
            "stop_words": list(self.stop_words),
            "user_dict": os.path.abspath(self.user_dict) if self.user_dict else None,
            "user_dict_sha256": self.user_dict_sha256,
            "max_chars": self.max_chars,
            # only when not the default, so vocabularies and caches made before the key stay valid
            **({"long_text": self.long_text, "head_share": self.head_share} if self.long_text != "truncate" else {}),
        }

    @classmethod
    def from_config(cls, config: dict) -> "Tokenizer":
        return cls(**config)

    @classmethod
    def from_run_config(cls, cfg) -> "Tokenizer":
        """The tokenizer a training config asks for."""
        return cls(
            mode=cfg.tokenizer,
            lowercase=cfg.lowercase,
            stop_words=read_word_list(cfg.stop_word),
            user_dict=cfg.user_dict,
            max_chars=max(256, 8 * config_tokens_read(cfg)),
            long_text="truncate" if cfg.long_text == "chunks" else cfg.long_text,  # chunks: the model cuts the windows
            head_share=cfg.head_share,
        )
