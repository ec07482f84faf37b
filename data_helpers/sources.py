"""Which files a data key names: one path, a list of paths, or a glob (``data/train-*.txt``),
each plain or gzip-compressed (``.gz``). Standard library only."""

from __future__ import annotations

import glob
import gzip
import os

_GLOB_CHARS = set("*?[")


def is_gzip(path: str) -> bool:
    return path.endswith(".gz")


def expand_paths(spec) -> list[str]:
    """The files ``spec`` names, in order (a glob's matches sorted); a literal path is kept even
    when it does not exist, so the caller can say which one is missing."""
    items = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in items:
        if _GLOB_CHARS & set(item):
            out.extend(sorted(p for p in glob.glob(item) if os.path.isfile(p)))
        else:
            out.append(item)
    return out


def describe(spec) -> str:
    """A key's files for messages: the path, or the list joined by commas."""
    return spec if isinstance(spec, str) else ", ".join(spec)


def open_binary(path: str):
    """A binary file object of the (decompressed) bytes."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")
