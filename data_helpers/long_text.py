"""Which part of a long text is read: pure Python, shared by the tokenizer (TensorFlow) and the
segmentation workers (which do not import TensorFlow)."""

from __future__ import annotations

LONG_TEXT = ("truncate", "head_tail")  # what the tokenizer cuts; `chunks` reads the first tokens_read() tokens


def tokens_read(sequence_length: int, long_text: str = "truncate", chunk_stride: int | None = None, max_chunks: int = 1) -> int:
    """How many tokens of a text are read: ``sequence_length``, or for ``chunks`` the span of
    ``max_chunks`` windows of ``sequence_length`` tokens, ``chunk_stride`` apart."""
    if long_text != "chunks":
        return sequence_length
    return sequence_length + (max_chunks - 1) * (chunk_stride or sequence_length)


def config_tokens_read(cfg) -> int:
    """:func:`tokens_read` for a training config."""
    return tokens_read(cfg.sequence_length, cfg.long_text, cfg.chunk_stride, cfg.max_chunks)


def head_tail_split(n: int, head_share: float) -> tuple[int, int]:
    """``head_tail``: how many of ``n`` characters or tokens come from the beginning and how many from the end."""
    head = int(n * head_share)
    return head, n - head


def cut_chars(text: str, max_chars: int, long_text: str = "truncate", head_share: float = 0.25) -> tuple[str, int, int]:
    """The characters of ``text`` that are read: (kept, head, skipped).

    ``truncate`` keeps the first ``max_chars``; ``head_tail`` keeps the first ``head`` =
    ``int(max_chars * head_share)`` and the last ``max_chars - head``, joined by one space (a
    token boundary in every mode), and ``skipped`` characters between them are left out. A text
    of at most ``max_chars`` characters is kept whole: (text, len(text), 0).
    """
    if len(text) <= max_chars:
        return text, len(text), 0
    if long_text != "head_tail":
        return text[:max_chars], max_chars, 0
    head, tail = head_tail_split(max_chars, head_share)
    return text[:head] + " " + text[len(text) - tail :], head, len(text) - head - tail
