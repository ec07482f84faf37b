"""The input pipeline: examples streamed from the data files by ``tf.data``, never held whole.

files (plain or .gz, read in parallel) -> lines parsed in the graph with the reader's rules
(:func:`parse_lines`) -> the same tokenizer and vocabulary graph the export carries
(``TextEncoder``) -> a bounded shuffle buffer -> an endless, seeded stream of length-bucketed
batches (:func:`training_batches`), or one pass in batches for evaluation (:func:`eval_batches`).
Data whose token ids fit in the config's ``in_memory_mb`` is tokenized once and held instead,
and shuffled whole each pass.

Batches group texts of similar length and are cut to their longest text: the models ignore
padding, so this changes nothing but the time a step takes. The stream is fixed by the seed,
and its iterator is saved in every checkpoint (a streamed run's shuffle buffer included), so a resumed run sees
exactly the batches an uninterrupted one would have seen.

Several workers share the data one of two ways (:func:`training_batches` says which):
- by file, when there are at least as many training files as workers: worker i reads files
  i, i + N, ... and makes batches of its share of the global batch;
- by record otherwise: every worker builds the same global batch and keeps its own rows of it
  (:func:`worker_share`), so N workers train on exactly the batches one process would.
The iterator stays a plain ``tf.data`` iterator, which a checkpoint can hold (TensorFlow 2.21's
distributed iterators cannot be checkpointed).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from data_helpers.sources import is_gzip

# Python's str.strip() whitespace, as an RE2 class.
_STRIP = r"^[\t\n\x{0b}\f\r\x{1c}-\x{1f}\x{85}\p{Z}]+|[\t\n\x{0b}\f\r\x{1c}-\x{1f}\x{85}\p{Z}]+$"
_ENCODE_BATCH = 256


def bucket_boundaries(sequence_length: int) -> list[int]:
    """Length buckets for training batches: 8, 12, 18, 27, ... below sequence_length."""
    out, b = [], 8
    while b < sequence_length:
        out.append(b)
        b = int(b * 1.5)
    return out


def read_lines(files: list[str], parallel: int = 4) -> tf.data.Dataset:
    """The lines of ``files`` (plain or .gz), in order within each file; several files are read
    in parallel, interleaved deterministically."""
    if len(files) == 1:
        return tf.data.TextLineDataset(files, compression_type="GZIP" if is_gzip(files[0]) else "")
    names = tf.data.Dataset.from_tensor_slices(files)
    return names.interleave(
        lambda f: tf.data.TextLineDataset(f, compression_type=tf.where(tf.strings.regex_full_match(f, r".*\.gz"), "GZIP", "")),
        cycle_length=min(parallel, len(files)),
        num_parallel_calls=min(parallel, len(files)),
        deterministic=True,
    )


def parse_lines(lines: tf.data.Dataset, labels: list[str], id_to_name: list[str] | None, separator: str = "auto",
                label_sep: str | None = None) -> tf.data.Dataset:
    """Lines -> (text, label id) for the well-formed ones, by :mod:`data_helpers.reader`'s rules:
    split at the last ``<SEP>``, else the last tab; both sides stripped and non-empty; strict
    UTF-8; an integer label is an id into ``id_to_name``; labels outside ``labels`` are dropped.
    ``separator="tab"``: split at the last tab only (the segmented cache's own files).

    ``label_sep`` (multi-label): the label field is any number of labels joined by it (none
    included) and the label becomes a multi-hot float32 vector [len(labels)]; a line naming a
    label outside ``labels`` (or an empty name) is dropped."""
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(labels), tf.range(len(labels), dtype=tf.int32)), default_value=-1
    )
    n_names = len(id_to_name) if id_to_name else 0

    def parse(line):
        line = tf.strings.regex_replace(line, "^\ufeff|\r$", "")
        clean = tf.strings.unicode_transcode(line, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
        valid = tf.equal(clean, line)
        tab = tf.strings.regex_full_match(clean, "(?s).*\t.*")
        if separator == "tab":
            use_sep, found = tf.constant(False), tab
        else:
            use_sep = tf.strings.regex_full_match(clean, "(?s).*<SEP>.*")
            found = use_sep | tab
        text = tf.where(use_sep, tf.strings.regex_replace(clean, "(?s)^(.*)<SEP>.*$", r"\1"),
                        tf.strings.regex_replace(clean, "(?s)^(.*)\t.*$", r"\1"))
        label = tf.where(use_sep, tf.strings.regex_replace(clean, "(?s)^.*<SEP>(.*)$", r"\1"),
                         tf.strings.regex_replace(clean, "(?s)^.*\t(.*)$", r"\1"))
        text = tf.strings.regex_replace(text, _STRIP, "")
        label = tf.strings.regex_replace(label, _STRIP, "")
        if label_sep is None:
            label_id = to_id(label)
            return text, label_id, valid & found & (tf.strings.length(text) > 0) & (label_id >= 0)
        parts = tf.strings.split(label, label_sep)
        parts = tf.strings.regex_replace(parts[: tf.where(tf.strings.length(label) > 0, tf.size(parts), 0)], _STRIP, "")
        ids = to_id(parts)
        # Repeats count once; -1 (unknown) is all zeros; no label at all is a zero row.
        hot = tf.minimum(tf.reduce_sum(tf.one_hot(ids, len(labels), dtype=tf.float32), axis=0), 1.0)
        ok = valid & found & (tf.strings.length(text) > 0) & tf.reduce_all(ids >= 0)
        return text, tf.reshape(hot, [len(labels)]), ok

    def to_id(label):
        label_id = table.lookup(label)
        if n_names:
            is_int = tf.strings.regex_full_match(label, "-?[0-9]{1,9}")
            as_int = tf.strings.to_number(tf.where(is_int, label, "0"), tf.int32)
            label_id = tf.where(is_int, tf.where((as_int >= 0) & (as_int < n_names), as_int, -1), label_id)
        return label_id

    return lines.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).filter(lambda t, y, ok: ok).map(
        lambda t, y, ok: (t, y)
    )


def encode(examples: tf.data.Dataset, encoder) -> tf.data.Dataset:
    """(text, label id) -> (ids int32 [sequence_length], label id, length), tokenized in batches."""

    def enc(texts, ys):
        ids = encoder.ids(texts)
        return ids, ys, tf.reduce_sum(tf.cast(ids != 0, tf.int32), axis=1)

    return examples.batch(_ENCODE_BATCH).map(enc, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()


def _options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    # The lookup tables are static: an iterator checkpoint need not (and cannot) hold them.
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return options


def shards_by_file(n_files: int, workers: int) -> bool:
    return workers > 1 and n_files >= workers


def _held(examples: tf.data.Dataset) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Every (ids, label id, length) of a finite dataset, stacked into three tensors."""
    parts = list(examples.batch(4096).as_numpy_iterator())
    if not parts:
        raise ValueError("no training examples to hold in memory")
    return tuple(tf.constant(np.concatenate([p[i] for p in parts])) for i in range(3))


def _shuffled_epochs(held, seed: int) -> tf.data.Dataset:
    """The held examples, endlessly: each pass a fresh permutation of all of them, drawn from
    (seed, pass number) alone, so the iterator's state is two counters (a checkpoint of it is
    tiny) and a resumed run continues the same order."""
    ids, ys, ns = held
    n = tf.shape(ys, out_type=tf.int64)[0]

    def one_pass(k):
        order = tf.random.experimental.stateless_shuffle(tf.range(n), seed=tf.stack([tf.constant(seed, tf.int64), k]))
        return tf.data.Dataset.from_tensor_slices(order)

    order = tf.data.Dataset.range(tf.int64.max).flat_map(one_pass)
    return order.map(lambda i: (tf.gather(ids, i), tf.gather(ys, i), tf.gather(ns, i)))


def training_batches(files, labels, id_to_name, encoder, *, batch_size: int, sequence_length: int, seed: int,
                     shuffle_buffer: int, worker: int = 0, workers: int = 1, separator: str = "auto",
                     in_memory: bool = False, label_sep: str | None = None) -> tf.data.Dataset:
    """(ids int32 [batch, width], label ids int32 [batch]) batches, endlessly: this worker's share
    of each global batch of ``batch_size`` examples (multi-label, ``label_sep`` given: multi-hot
    float32 labels [batch, len(labels)]).

    ``in_memory``: tokenize the files once, hold the token ids and shuffle all of them afresh
    each pass (for data that fits: no re-tokenizing, no shuffle buffer in the checkpoints);
    otherwise stream them from the files every pass through a buffer of ``shuffle_buffer``."""
    by_file = shards_by_file(len(files), workers)
    if by_file:
        files = files[worker::workers]
        batch_size = batch_size * (worker + 1) // workers - batch_size * worker // workers
    ds = encode(parse_lines(read_lines(files), labels, id_to_name, separator, label_sep), encoder)
    if in_memory:
        ds = _shuffled_epochs(_held(ds.with_options(_options())), seed)
    else:
        # An endless stream, cut into epochs of a fixed number of steps by the training loop:
        # bucketing makes the batch count of one pass vary a little.
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    boundaries = bucket_boundaries(sequence_length)
    ds = ds.bucket_by_sequence_length(
        lambda x, y, n: n, boundaries, [batch_size] * (len(boundaries) + 1), no_padding=True
    )
    ds = ds.map(lambda x, y, n: (x[:, : tf.maximum(1, tf.reduce_max(n))], y))
    ds = ds.with_options(_options())
    return ds.prefetch(2) if by_file else worker_share(ds, worker, workers)


def eval_batches(files, labels, id_to_name, encoder, *, sequence_length: int, batch_size: int = 256,
                 separator: str = "auto", in_memory: bool = False, label_sep: str | None = None) -> tf.data.Dataset:
    """One pass over the eval files: (ids [batch, width], labels as in :func:`training_batches`), texts of similar
    length together (the order is fixed, so metrics are the same every time). ``in_memory``:
    the first pass keeps the batches, so later evaluations neither read nor tokenize again."""
    ds = encode(parse_lines(read_lines(files), labels, id_to_name, separator, label_sep), encoder)
    boundaries = bucket_boundaries(sequence_length)
    ds = ds.bucket_by_sequence_length(lambda x, y, n: n, boundaries, [batch_size] * (len(boundaries) + 1), no_padding=True)
    ds = ds.map(lambda x, y, n: (x[:, : tf.maximum(1, tf.reduce_max(n))], y))
    if in_memory:
        ds = ds.cache()
    return ds.with_options(_options()).prefetch(2)


def share_bounds(rows, index: int, count: int):
    """[start, end) of part ``index`` of ``count`` near-equal parts of ``rows`` rows."""
    return (rows * index) // count, (rows * (index + 1)) // count


def worker_share(ds: tf.data.Dataset, index: int, count: int) -> tf.data.Dataset:
    """Worker ``index`` of ``count``: its rows of every global batch (all of them for one worker)."""
    if count > 1:
        def take(x, y):
            start, end = share_bounds(tf.shape(y)[0], index, count)
            return x[start:end], y[start:end]

        ds = ds.map(take)
    return ds.prefetch(2)
