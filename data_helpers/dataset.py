"""config -> reader -> tokenizer -> vocab: the data half of the pipeline, shared by every model.

One streaming pass over ``train_data`` and ``eval_data`` (:func:`scan_data`) checks every line
(``file:line`` messages, the 1% rule), collects the label set and counts the tokens of the
training texts, holding one batch of lines at a time: memory does not grow with the number of
lines. ``word`` models segment with jieba in that pass and keep the result in a cache
(:mod:`data_helpers.segment_cache`). The training and eval batches are then read from the files
by ``tf.data`` (:mod:`data_helpers.pipeline`).

Without a tokenizer the pass needs no TensorFlow (:func:`load_examples`, for quick checks).
"""

from __future__ import annotations

import collections
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from data_helpers.config import ConfigError
from data_helpers.io_utils import file_digest
from data_helpers.long_text import config_tokens_read
from data_helpers.reader import DataError, FileStats, read_class_names, scan_examples
from data_helpers.sources import describe, expand_paths

if TYPE_CHECKING:  # TensorFlow is imported only when a tokenizer is used
    from data_helpers.vocab import VocabArtifacts

_BATCH = 8192


@dataclass
class DataScan:
    """What one pass over the data found."""

    labels: list[str]  # id order
    binary: bool
    multi_label: bool
    train_files: list[str]
    eval_files: list[str]
    train_examples: int
    eval_examples: int
    train_label_counts: dict  # examples per label (multi-label: texts carrying it)
    class_names: list[str] | None = None
    token_counts: collections.Counter = field(default_factory=collections.Counter)
    longer_than_read: int = 0  # training texts with more tokens than are read (config_tokens_read)


@dataclass
class PreparedData:
    """The vocabulary and where ``tf.data`` reads the examples (segmented cache files for ``word``)."""

    artifacts: "VocabArtifacts"
    scan: DataScan
    train_files: list[str]
    eval_files: list[str]
    id_to_name: list[str] | None  # integer labels in the files map through these names
    separator: str  # "auto" (<SEP> or tab) for the user's files, "tab" for the cache
    vocab_dir: str  # holds vocab.txt for the graph's lookup table
    private_dirs: list = field(default_factory=list)  # removed by cleanup()

    @property
    def binary(self) -> bool:
        return self.artifacts.binary

    def cleanup(self) -> None:
        """Remove the private folders: the vocab's when it was not saved to output_path, and a
        segmented cache that a worker other than the chief kept for itself."""
        if os.path.basename(self.vocab_dir).startswith("textcls-vocab-"):
            shutil.rmtree(self.vocab_dir, ignore_errors=True)
        for d in self.private_dirs:
            shutil.rmtree(d, ignore_errors=True)


def _label_order(labels: set[str]) -> list[str]:
    if all(label.lstrip("-").isdigit() for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def resolve_labels(cfg, train_labels, class_names: list[str] | None) -> tuple[list[str], bool]:
    """The label list (id order) and whether the model is binary (one sigmoid output)."""
    seen = set(train_labels)
    labels = list(class_names) if class_names else _label_order(seen)
    if cfg.multi_label:
        if not seen:
            raise DataError(f"{describe(cfg.train_data)}: no line has any label (multi_label: true, labels joined by {cfg.label_sep!r})")
    elif len(seen) < 2:
        raise DataError(f"{describe(cfg.train_data)}: only one class ({next(iter(seen))!r}); a classifier needs at least two")
    if cfg.num_classes == 1:
        if len(labels) != 2:
            raise ConfigError(
                f"{cfg.source}: key 'num_classes' is 1 (binary, sigmoid) but {describe(cfg.train_data)} has {len(labels)} labels; "
                f"set num_classes to {len(labels)} or null"
            )
        return labels, True
    if cfg.num_classes is not None and cfg.num_classes != len(labels):
        where = cfg.class_names if class_names else describe(cfg.train_data)
        raise ConfigError(
            f"{cfg.source}: key 'num_classes' is {cfg.num_classes} but {where} has {len(labels)} labels "
            f"({', '.join(labels[:5])}{', ...' if len(labels) > 5 else ''}); set num_classes to {len(labels)} or null"
        )
    return labels, False


def files_digest(spec) -> str:
    """sha256 over the contents of every file ``spec`` names, in order."""
    h = hashlib.sha256()
    for path in expand_paths(spec):
        h.update((file_digest(path) or "").encode())
    return h.hexdigest()


def data_settings(cfg) -> dict:
    """What, besides the tokenizer, decides the vocabulary and label ids."""
    return {
        "train_data_sha256": files_digest(cfg.train_data),
        "class_names_sha256": file_digest(cfg.class_names),
        "min_count": cfg.min_count,
        "vocab_size": cfg.vocab_size,
    }


def _changed(old: dict, new: dict, prefix="") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def _batches(files, names, log, stats_out, separator="auto", label_sep=None):
    """(texts, labels) batches of every example in ``files``, streamed (multi-label: tuples of labels)."""
    texts, labels = [], []
    for path in files:
        stats = FileStats(path)
        stats_out.append(stats)
        if separator == "tab":
            lines = _cache_lines(path, stats, label_sep)
        else:
            lines = scan_examples(path, id_to_name=names, stats=stats, log=log, label_sep=label_sep)
        for text, label in lines:
            texts.append(text)
            labels.append(label)
            if len(texts) == _BATCH:
                yield texts, labels
                texts, labels = [], []
    if texts:
        yield texts, labels


def _cache_lines(path, stats, label_sep=None):
    """The segmented cache's ``text<TAB>label`` lines (written by us: always well formed)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            text, _, label = line.rstrip("\n").rpartition("\t")
            stats.examples += 1
            yield text, (tuple(label.split(label_sep)) if label else ()) if label_sep else label


def scan_data(cfg, tokenizer=None, log=print, segmenter=None, cached=None) -> DataScan:
    """One pass over train_data and eval_data: checks, labels, token counts (with a tokenizer).

    ``segmenter`` (word models): called with each batch of texts, returns them segmented; it
    sees every training text before eval's, in file order (the cache writes them as it goes).
    ``cached``: (train files, eval files) of a complete segmented cache to read instead.
    """
    label_sep = cfg.label_sep if cfg.multi_label else None
    names = read_class_names(cfg.class_names, label_sep) if cfg.class_names else None
    train_files, eval_files = expand_paths(cfg.train_data), expand_paths(cfg.eval_data)
    separator = "auto"
    read_train, read_eval = train_files, eval_files
    if cached is not None:
        (read_train, read_eval), separator = cached, "tab"
    train_labels: collections.Counter = collections.Counter()
    counts: collections.Counter = collections.Counter()
    longer = 0
    stats: list[FileStats] = []
    for texts, labels in _batches(read_train, names, log, stats, separator, label_sep):
        if label_sep:
            for one in labels:
                train_labels.update(one)
        else:
            train_labels.update(labels)
        if segmenter is not None:
            texts = segmenter(texts, labels, "train")
        if tokenizer is not None:
            import tensorflow as tf

            tokens = tokenizer.split(tf.constant(texts, tf.string))
            counts.update(t.decode("utf-8") for t in tokens.flat_values.numpy())
            longer += int((tokens.row_lengths().numpy() > config_tokens_read(cfg)).sum())
    n_train = sum(s.examples for s in stats)
    labels, binary = resolve_labels(cfg, train_labels, names)
    eval_stats: list[FileStats] = []
    unseen: collections.Counter = collections.Counter()
    for texts, labels_ in _batches(read_eval, names, log, eval_stats, separator, label_sep):
        if label_sep:
            unseen.update(label for one in labels_ for label in one if label not in train_labels)
        else:
            unseen.update(label for label in labels_ if label not in train_labels)
        if segmenter is not None:
            segmenter(texts, labels_, "eval")
    if unseen:
        first = sorted(unseen)[0]
        raise DataError(
            f"{describe(cfg.eval_data)}: label {first!r} never occurs in {describe(cfg.train_data)} "
            f"({len(unseen)} unseen label(s), {sum(unseen.values())} eval examples)"
        )
    return DataScan(
        labels=labels, binary=binary, multi_label=cfg.multi_label, train_files=train_files, eval_files=eval_files,
        train_examples=n_train, eval_examples=sum(s.examples for s in eval_stats),
        train_label_counts=dict(train_labels), class_names=names, token_counts=counts, longer_than_read=longer,
    )


def load_examples(cfg, log=print) -> DataScan:
    """Check train_data and eval_data (lines, labels, the config's num_classes) without TensorFlow."""
    return scan_data(cfg, None, log=log)


def prepare_data(cfg, log=print, save: bool = True, cache_writer: bool = True) -> PreparedData:
    """Scan the data, build the vocabulary, and say where ``tf.data`` reads the examples.

    ``save=False`` writes nothing to output_path: the vocab goes to a private folder and the
    caller saves ``artifacts`` with :func:`save_vocab` once it knows the run goes ahead (a
    refused resume must leave the folder as it was). ``cache_writer=False`` (a worker other
    than the chief) keeps a ``word`` model's segmented cache in a private folder too.
    """
    from data_helpers import segment_cache
    from data_helpers.tokenizer import Tokenizer
    from data_helpers.vocab import VocabArtifacts, build_vocab

    tokenizer = Tokenizer.from_run_config(cfg)
    if cfg.tokenizer == "word":
        cache = segment_cache.SegmentCache(cfg, tokenizer, writable=cache_writer, log=log)
        if cache.complete():
            log(f"segmented text: reusing {cache.folder}")
            scan = scan_data(cfg, tokenizer, log=log, cached=(cache.train_files(), cache.eval_files()))
        else:
            with cache.writing() as segment:
                scan = scan_data(cfg, tokenizer, log=log, segmenter=segment)
        files, separator, id_to_name = (cache.train_files(), cache.eval_files()), "tab", None
        private = [cache.private] if cache.private else []
    else:
        scan = scan_data(cfg, tokenizer, log=log)
        files, separator, id_to_name = (scan.train_files, scan.eval_files), "auto", scan.class_names
        private = []
    tokens = build_vocab(scan.token_counts, cfg.min_count, cfg.vocab_size)
    artifacts = VocabArtifacts(tokens, scan.labels, tokenizer.get_config(), config_tokens_read(cfg), scan.binary, data_settings(cfg),
                               multi_label=cfg.multi_label, label_sep=cfg.label_sep if cfg.multi_label else None)
    log(f"vocab: {len(tokens)} tokens ({cfg.tokenizer}), {len(scan.labels)} labels, fingerprint {artifacts.fingerprint}")
    if save:
        save_vocab(artifacts, cfg.output_path, log)
        folder = cfg.output_path
    else:
        folder = tempfile.mkdtemp(prefix="textcls-vocab-")
        artifacts.save(folder)
    return PreparedData(artifacts, scan, files[0], files[1], id_to_name, separator, folder, private)


def _summary(a) -> dict:
    return {"tokenizer": a.tokenizer, "sequence_length": a.sequence_length, "binary": a.binary, "multi_label": a.multi_label,
            "labels": a.labels, **a.settings}


def save_vocab(artifacts, folder: str, log=print) -> None:
    """Save the vocab; say so when it replaces one built with other settings or data."""
    from data_helpers.vocab import StaleVocabError, VocabArtifacts

    path = os.path.join(folder, "vocab.json")
    if os.path.exists(path):
        try:
            old = VocabArtifacts.load(folder)
        except (StaleVocabError, ValueError, KeyError) as e:
            log(f"{path}: unreadable ({e}); rebuilding")
        else:
            if old.fingerprint == artifacts.fingerprint:
                return
            what = _changed(_summary(old), _summary(artifacts))
            log(f"{path}: built with other settings or data ({', '.join(what) or 'content'} changed); rebuilt")
    artifacts.save(folder)
