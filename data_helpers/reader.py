"""Reading labelled text files and class-name files.

An examples file has one example per line, in either of two formats::

    text<TAB>label
    text<SEP>label          (the literal five characters ``<SEP>``)

If a line contains ``<SEP>`` it is split on the last ``<SEP>``, so the text may
contain tabs; otherwise it is split on the last tab. Text and label are
stripped of surrounding whitespace.

Multi-label files (``label_sep`` given) have any number of labels joined by
``label_sep`` in the label field (``text<TAB>price,fuel``); the field may be
empty (no label). Each example's labels are then a tuple of names, repeated
names merged (the file's first such line is logged once).

The file is read as bytes and each line is decoded on its own (strict UTF-8),
so a single bad line does not spoil the whole file. Malformed lines are skipped
and counted; if there are too many of them, :class:`DataError` is raised.
Every problem is reported as ``path:line: problem`` (lines counted from 1).

Standard library only: this module must stay light (no TensorFlow).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Callable, Iterator

from data_helpers.sources import expand_paths, open_binary

__all__ = ["DataError", "Examples", "FileStats", "read_class_names", "read_examples", "scan_all", "scan_examples"]

SEP = "<SEP>"
_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_INT_LABEL = re.compile(r"-?[0-9]+")
NO_SEPARATOR = "no separator (expected text<TAB>label or text<SEP>label)"


class DataError(ValueError):
    """A data problem, with a one-line message that names the file and line (path:line: problem)."""


@dataclass
class Examples:
    """The examples read from one file.

    Attributes:
        texts: the example texts, in file order.
        labels: the label of each text (a class name; integer ids are mapped
            to names when ``id_to_name`` was given).
        path: the file they were read from.
        skipped: how many malformed lines were skipped.
    """

    texts: list[str]
    labels: list  # a name per text, or (multi-label) a tuple of names per text
    path: str
    skipped: int

    def __len__(self) -> int:
        return len(self.texts)


def _read_bytes(path) -> tuple[str, bytes]:
    """Return ``(path as str, file contents)``, or raise DataError naming the path."""
    name = os.fspath(path)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if os.path.isdir(name):
        raise DataError(f"{name}: is a directory, expected a text file")
    try:
        with open(name, "rb") as f:
            return name, f.read()
    except FileNotFoundError:
        raise DataError(f"{name}: no such file") from None
    except PermissionError:
        raise DataError(f"{name}: permission denied") from None
    except OSError as e:
        raise DataError(f"{name}: cannot read ({e.strerror or e})") from None


def _start_of_file(name: str, data: bytes) -> bytes:
    """The file's first bytes without a UTF-8 BOM; a UTF-16 file is refused."""
    if data.startswith(_UTF16_BOMS):
        raise DataError(
            f"{name} looks UTF-16-encoded, not UTF-8: convert it with "
            f"`iconv -f UTF-16 -t UTF-8 {name} > {name}.utf8`"
        )
    return data[len(_BOM):] if data.startswith(_BOM) else data


def _lines(name: str, data: bytes) -> list[bytes]:
    """Split file contents into lines (LF, CRLF or CR ends), dropping a UTF-8 BOM."""
    data = _start_of_file(name, data)
    # bytes.splitlines() splits on \n, \r\n and \r only. In UTF-8 and in GBK
    # these bytes never occur inside a multi-byte character.
    return data.splitlines()


def _decode(raw: bytes) -> tuple[str | None, str | None]:
    """Decode one line as strict UTF-8: ``(text, None)`` or ``(None, problem)``."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as e:
        return None, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at byte offset {e.start})"


def _decodes_as_gbk(lines: list[bytes]) -> bool:
    """True if every one of ``lines`` decodes as GBK or GB18030."""
    for encoding in ("gbk", "gb18030"):
        try:
            for raw in lines:
                raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        return True
    return False


def read_class_names(path, label_sep: str | None = None) -> list[str]:
    """Read a class-names file: one name per line, line i (from 0) is label id i.

    Names are stripped of surrounding whitespace. Blank lines at the very end
    of the file are ignored; a blank line anywhere else (it would shift the ids
    of the names after it), a duplicate name, a line that is not UTF-8, a name
    containing ``label_sep`` (multi-label) or a file without names raise
    :class:`DataError` naming ``path:line``.
    """
    name, data = _read_bytes(path)
    lines = _lines(name, data)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{name}: no class names (empty file or only blank lines)")
    names: list[str] = []
    first_line: dict[str, int] = {}
    for lineno, raw in enumerate(lines, start=1):
        text, problem = _decode(raw)
        if problem:
            raise DataError(f"{name}:{lineno}: {problem}")
        class_name = text.strip()
        if not class_name:
            raise DataError(
                f"{name}:{lineno}: blank line (one class name per line; "
                f"line i is label id i, so gaps are not allowed)"
            )
        if class_name in first_line:
            raise DataError(
                f"{name}:{lineno}: duplicate class name {class_name!r} "
                f"(first on line {first_line[class_name]})"
            )
        if label_sep and label_sep in class_name:
            raise DataError(
                f"{name}:{lineno}: class name {class_name!r} contains label_sep {label_sep!r}, which joins "
                f"the labels of a multi-label line; rename the class or choose another label_sep"
            )
        first_line[class_name] = lineno
        names.append(class_name)
    return names


def _label_name(label: str, id_to_name: list[str] | None) -> str | tuple[str]:
    """A label as written -> its name (an integer id maps through ``id_to_name``), or ``(problem,)``."""
    if id_to_name is not None and _INT_LABEL.fullmatch(label):
        label_id = int(label)
        if not 0 <= label_id < len(id_to_name):
            return (
                f"label id {label_id} out of range "
                f"(there are {len(id_to_name)} class names, ids 0..{len(id_to_name) - 1})",
            )
        return id_to_name[label_id]
    return label


def _parse(line: str, id_to_name: list[str] | None, label_sep: str | None = None) -> tuple | str:
    """Parse one decoded, non-blank line: ``(text, label)`` or a problem string.

    With ``label_sep`` (multi-label) the label is a tuple of names, repeats merged, and the
    result has a third item: the number of repeats merged."""
    if SEP in line:
        text, _, label = line.rpartition(SEP)
    elif "\t" in line:
        text, _, label = line.rpartition("\t")
    else:
        return NO_SEPARATOR
    text, label = text.strip(), label.strip()
    if not text:
        return "empty text"
    if label_sep is not None:
        names: list[str] = []
        for part in label.split(label_sep) if label else []:
            part = part.strip()
            if not part:
                return f"empty label name in {label!r} (labels joined by {label_sep!r})"
            named = _label_name(part, id_to_name)
            if isinstance(named, tuple):
                return named[0]
            names.append(named)
        unique = tuple(dict.fromkeys(names))
        return text, unique, len(names) - len(unique)
    if not label:
        return "empty label"
    named = _label_name(label, id_to_name)
    return named[0] if isinstance(named, tuple) else (text, named)


def read_examples(
    path,
    *,
    id_to_name: list[str] | None = None,
    max_bad_fraction: float = 0.01,
    log: Callable[[str], object] = print,
    label_sep: str | None = None,
) -> Examples:
    """Read ``text<TAB>label`` / ``text<SEP>label`` lines from ``path``.

    Args:
        path: the file to read (UTF-8; a BOM and CRLF/CR line ends are fine).
        id_to_name: class names by label id (see :func:`read_class_names`).
            When given, an integer label such as ``"3"`` becomes
            ``id_to_name[3]``; an id out of range makes the line malformed.
            Other labels are kept as they are.
        max_bad_fraction: the largest allowed fraction of malformed lines
            among the non-blank lines; more than that raises DataError.
        log: called with one summary line if any lines were skipped.
        label_sep: multi-label: the labels of a line are joined by this (see the module doc).

    Blank (whitespace-only) lines are skipped silently. Malformed lines (no
    separator, empty text, empty label, bytes that are not UTF-8, label id
    out of range) are skipped and counted in ``Examples.skipped``.

    Raises:
        DataError: missing/unreadable path or a directory; a GBK (or UTF-16)
            encoded file; too many malformed lines; no examples at all.
    """
    name, data = _read_bytes(path)
    stats = FileStats(name)
    pairs = list(_examples(name, _lines(name, data), id_to_name, max_bad_fraction, stats, log, label_sep))
    return Examples(texts=[t for t, _ in pairs], labels=[label for _, label in pairs], path=name, skipped=stats.skipped)


def _check_file(name, nonblank, examples, skipped, bad_first, not_utf8, n_not_utf8, max_bad_fraction, log) -> None:
    """The checks that need the whole file: GBK, no examples, too many malformed lines."""
    if n_not_utf8 * 2 > nonblank and not_utf8 and _decodes_as_gbk(not_utf8):
        raise DataError(
            f"{name} looks GBK-encoded, not UTF-8: convert it with "
            f"`iconv -f GBK -t UTF-8 {name} > {name}.utf8`"
        )
    if nonblank == 0:
        raise DataError(f"{name}: no examples (empty file or only blank lines)")
    if skipped and skipped / nonblank > max_bad_fraction:
        raise DataError(
            f"{name}: {skipped} of {nonblank} non-blank lines are malformed "
            f"({skipped / nonblank:.1%}, more than max_bad_fraction={max_bad_fraction:g}); "
            f"first: {bad_first}"
        )
    if not examples:  # only reachable with max_bad_fraction=1
        raise DataError(f"{name}: no examples ({skipped} malformed lines; first: {bad_first})")
    if skipped:
        noun = "line" if skipped == 1 else "lines"
        log(f"{name}: skipped {skipped} malformed {noun} of {nonblank} (first: {bad_first})")


@dataclass
class FileStats:
    """What :func:`scan_examples` found in one file."""

    path: str
    examples: int = 0
    skipped: int = 0


def _stream_lines(name: str) -> Iterator[bytes]:
    """The lines of a plain or .gz file, one at a time (LF or CRLF ends; a UTF-8 BOM dropped)."""
    try:
        f = open_binary(name)
    except FileNotFoundError:
        raise DataError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{name}: is a directory, expected a text file") from None
    except PermissionError:
        raise DataError(f"{name}: permission denied") from None
    with f:
        first = True
        try:
            for raw in f:
                if first:
                    first = False
                    raw = _start_of_file(name, raw)
                yield raw.rstrip(b"\r\n")
        except (OSError, EOFError) as e:  # a truncated or corrupt .gz
            raise DataError(f"{name}: cannot read ({e})") from None


def scan_examples(
    path,
    *,
    id_to_name: list[str] | None = None,
    max_bad_fraction: float = 0.01,
    stats: FileStats | None = None,
    log: Callable[[str], object] = print,
    label_sep: str | None = None,
) -> Iterator[tuple]:
    """Stream the ``(text, label)`` examples of one file, holding one line at a time.

    The same rules and messages as :func:`read_examples` (lines end at LF; a CR before it is
    dropped); the checks that need the whole file (the share of malformed lines, no examples)
    raise DataError once the file is read, so a caller must read to the end. ``stats`` is
    filled in as the file is read.
    """
    name = os.fsdecode(os.fspath(path))
    stats = stats if stats is not None else FileStats(name)
    yield from _examples(name, _stream_lines(name), id_to_name, max_bad_fraction, stats, log, label_sep)


def scan_all(spec, **options) -> Iterator[tuple]:
    """:func:`scan_examples` over every file a ``paths`` config value names (a file, a list or a
    glob), in order; ``options`` as for :func:`scan_examples`."""
    for path in expand_paths(spec):
        yield from scan_examples(path, **options)


def _examples(name, raw_lines, id_to_name, max_bad_fraction, stats: FileStats, log, label_sep=None) -> Iterator[tuple]:
    """The well-formed (text, label) pairs of ``raw_lines``, counted in ``stats``; the whole-file
    checks once the lines are read."""
    if not 0.0 <= max_bad_fraction <= 1.0:
        raise ValueError(f"max_bad_fraction must be between 0 and 1, got {max_bad_fraction!r}")
    bad_first: str | None = None
    not_utf8: list[bytes] = []  # the first few, for the GBK check
    nonblank = n_not_utf8 = repeated = 0
    for lineno, raw in enumerate(raw_lines, start=1):
        line, problem = _decode(raw)
        if problem is None:
            if not line.strip():
                continue
            parsed = _parse(line, id_to_name, label_sep)
            if isinstance(parsed, tuple):
                nonblank += 1
                stats.examples += 1
                if len(parsed) == 3:
                    if parsed[2] and not repeated:
                        repeated = lineno
                        log(f"{name}:{lineno}: a label repeated on one line; merged (said once per file)")
                    parsed = parsed[:2]
                yield parsed
                continue
            problem = parsed
        else:
            n_not_utf8 += 1
            if len(not_utf8) < 1000:
                not_utf8.append(raw)
        nonblank += 1
        stats.skipped += 1
        bad_first = bad_first or f"{name}:{lineno}: {problem}"
        if len(not_utf8) == 200 and stats.examples < 200 and _decodes_as_gbk(not_utf8):
            break  # clearly GBK: say so now rather than after the whole file
    _check_file(name, nonblank, stats.examples, stats.skipped, bad_first, not_utf8, n_not_utf8, max_bad_fraction, log)
