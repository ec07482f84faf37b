"""SavedModel export in TensorFlow Serving's layout: ``<pb_model_path>/<version>/``.

Signatures:
- ``serving_default``: ``text`` (string [None]) -> ``label`` (string [None]) and
  ``probabilities`` (float [None, n_labels], in the order of ``assets/labels.txt``).
  Tokenizing runs in the graph with stock TensorFlow ops: raw text for ``char`` models,
  jieba-segmented (space-separated) text for ``word`` and ``whitespace`` models. A ``word``
  model refuses (InvalidArgument) a text that cannot be jieba's output, i.e. raw text sent by
  mistake (see :meth:`Tokenizer.unsegmented`).
- ``predict_ids``: ``ids`` (int32 [None, None], 0 = padding) -> the same outputs. Ids outside
  the vocabulary (negative, or >= its size) are an InvalidArgument error naming the input;
  rows wider than ``sequence_length`` are cut to it, as training cut them.

Multi-label models add ``predicted`` (bool [None, n_labels]: label i is on), and ``label`` is
then the labels that are on, joined by the config's ``label_sep`` in the order of
``assets/labels.txt`` (an empty string when none is on). The thresholds (one per label, tuned or
not) and ``at_least_one`` are constants in the graph, so the Predictor, ``serve.py`` and stock
TensorFlow Serving decide alike; ``assets/decision.json`` records them for people.

Assets: ``vocab.txt`` (line = id), ``labels.txt``, ``vocab.json`` (tokenizer settings,
fingerprint) and the jieba user dictionary when there is one. Each version is written to a
hidden temporary folder and renamed, so a reader never sees half an export.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import tempfile
import time

import keras
import tensorflow as tf

from data_helpers.io_utils import atomic_write_json, fault_point
from data_helpers.tokenizer import JIEBA_LONGEST_WORD, Tokenizer, longest_han_run, read_word_list
from data_helpers.vocab import TextEncoder, VocabArtifacts
from predictors.explanation import explain_functions

TMP_PREFIX = ".tmp-export-"


def export_versions(base_dir: str) -> list[int]:
    """Integer version folders under base_dir that hold a finished export, oldest first."""
    if not os.path.isdir(base_dir):
        return []
    return sorted(
        int(d)
        for d in os.listdir(base_dir)
        if re.fullmatch(r"\d+", d) and os.path.isfile(os.path.join(base_dir, d, "saved_model.pb"))
    )


def latest_export(base_dir: str) -> str | None:
    versions = export_versions(base_dir)
    return os.path.join(base_dir, str(versions[-1])) if versions else None


def _probabilities(model, ids, binary: bool):
    p = model(ids, training=False)
    if binary:  # one sigmoid output = P(labels[1])
        p = tf.concat([1.0 - p, p], axis=-1)
    return tf.cast(p, tf.float32)


def guarded_probabilities(model, ids, binary: bool, n_labels: int, sequence_length: int):
    """[batch, n_labels] probabilities for any ids [batch, width], zero-size ones included.

    - A batch of zero texts never reaches the model: it gets a [0, n_labels] answer. With
      oneDNN's custom ops on (TensorFlow's default on Intel CPUs) a zero-row batch makes
      the model's matmul fail, and TensorFlow Serving does send empty batches.
    - A width of 0 (no tokens at all) is padded to one padding column; the models ignore
      padding, so the answer is that of an empty text.
    - Ids past ``sequence_length`` are cut, as training cut them.
    """
    ids = ids[:, :sequence_length]
    ids = tf.cond(
        tf.shape(ids)[1] > 0, lambda: ids, lambda: tf.zeros(tf.stack([tf.shape(ids)[0], 1]), tf.int32)
    )
    return tf.cond(
        tf.shape(ids)[0] > 0,
        lambda: _probabilities(model, ids, binary),
        lambda: tf.zeros([0, n_labels], tf.float32),
    )


def decide_labels(p, labels: list[str], thresholds, at_least_one: bool, label_sep: str) -> dict:
    """Multi-label outputs from probabilities [batch, n_labels]: ``predicted`` (bool) and ``label``
    (the labels that are on, joined by ``label_sep``)."""
    on = p >= tf.constant(thresholds, tf.float32)
    if at_least_one:
        best = tf.equal(tf.range(len(labels), dtype=tf.int64)[tf.newaxis, :], tf.argmax(p, axis=-1)[:, tf.newaxis])
        on = on | (best & ~tf.reduce_any(on, axis=-1, keepdims=True))
    names = tf.ragged.boolean_mask(tf.broadcast_to(tf.constant(labels), tf.shape(on)), on)
    return {"label": tf.strings.reduce_join(names, axis=-1, separator=label_sep), "predicted": on, "probabilities": p}


def build_archive(model: keras.Model, artifacts: VocabArtifacts, asset_dir: str, decision: dict | None = None,
                  explain: bool = True):
    """The ExportArchive with both signatures; asset_dir holds vocab.txt, labels.txt, vocab.json.
    ``decision`` (multi-label): ``{"thresholds": [one per label], "at_least_one": bool}``."""
    encoder = TextEncoder(
        Tokenizer.from_config(artifacts.tokenizer), os.path.join(asset_dir, "vocab.txt"), artifacts.sequence_length
    )
    labels = tf.constant(artifacts.labels)
    binary = artifacts.binary

    if artifacts.multi_label:
        decision = decision or {}
        thresholds = decision.get("thresholds") or [0.5] * len(artifacts.labels)

    def outputs(ids):
        p = guarded_probabilities(model, ids, binary, len(artifacts.labels), artifacts.sequence_length)
        if artifacts.multi_label:
            return decide_labels(p, artifacts.labels, thresholds, bool(decision.get("at_least_one")), artifacts.label_sep)
        return {"label": tf.gather(labels, tf.argmax(p, axis=-1)), "probabilities": p}

    tokenizer = encoder.tokenizer
    if tokenizer.mode == "word":
        # Raw text sent to a word model would become one unknown token per text and a near-constant
        # answer; refuse it in the graph, so stock TensorFlow Serving refuses it too.
        user_dict = tokenizer.user_dict if tokenizer.user_dict and os.path.isfile(tokenizer.user_dict) else None
        user_words = [line.split()[0] for line in read_word_list(user_dict)]
        longest = max(JIEBA_LONGEST_WORD, longest_han_run(artifacts.tokens), longest_han_run(user_words))

        def check_text(text):
            bad = tokenizer.unsegmented(text, longest)
            return [tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)), [
                "text: this word model takes text segmented by jieba with words joined by spaces "
                "(Predictor(...).tokenizer.segment(texts), or serve.py, which segments raw text); "
                "this looks like raw text:", tf.gather(text, tf.where(bad)[:1, 0])], summarize=1)]
    else:
        check_text = None

    def serve_text(text):
        if check_text is not None:
            with tf.control_dependencies(check_text(text)):
                text = tf.identity(text)
        return outputs(encoder.ids(text, full_width=False))

    n_tokens = len(artifacts.tokens)

    def predict_ids(ids):
        checks = [
            tf.debugging.Assert(tf.reduce_all(ids >= 0), ["ids: token ids must be >= 0 (0 is padding)"]),
            tf.debugging.Assert(tf.reduce_all(ids < n_tokens),
                                [f"ids: token ids must be < {n_tokens}, the vocabulary's size (assets/vocab.txt)"]),
        ]
        with tf.control_dependencies(checks):
            ids = tf.identity(ids)
        if tokenizer.long_text != "truncate":  # more ids than sequence_length: the same ones training read
            ids = tokenizer.clip(tf.RaggedTensor.from_tensor(ids, padding=0), artifacts.sequence_length).to_tensor()
        return outputs(ids)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(encoder)  # its lookup table brings vocab.txt into assets/
    archive.add_endpoint("serving_default", serve_text, input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    archive.add_endpoint("predict_ids", predict_ids, input_signature=[tf.TensorSpec([None, None], tf.int32, name="ids")])
    if explain:
        functions, explainer = explain_functions(model, encoder, artifacts.labels, binary, check_text)
        archive.track(explainer)
        for name, (fn, spec) in functions.items():
            archive.add_endpoint(name, fn, input_signature=spec)
    return archive


def export_model(model: keras.Model, artifacts: VocabArtifacts, base_dir: str, keep: int = 3, log=print,
                 decision: dict | None = None, explain: bool = True) -> str:
    """Write the next version under base_dir (atomically) and keep the newest ``keep`` versions.
    ``decision``: a multi-label model's thresholds and at_least_one (see :func:`build_archive`);
    ``explain``: add the ``explain`` signatures (:mod:`predictors.explanation`).
    """

    def write(model_dir: str, staging: str) -> None:
        asset_dir = os.path.join(staging, ".staging-assets")
        artifacts.save(asset_dir)
        build_archive(model, artifacts, asset_dir, decision, explain).write_out(model_dir, verbose=False)
        # The other files travel in assets/ too: for people, the Predictor and serve.py.
        assets = os.path.join(model_dir, "assets")
        if artifacts.multi_label:
            thresholds = (decision or {}).get("thresholds") or [0.5] * len(artifacts.labels)
            atomic_write_json(os.path.join(assets, "decision.json"), {
                "multi_label": True, "label_sep": artifacts.label_sep, "at_least_one": bool((decision or {}).get("at_least_one")),
                "thresholds": {name: float(t) for name, t in zip(artifacts.labels, thresholds)},
            })
        for name in ("labels.txt", "vocab.json"):
            shutil.copyfile(os.path.join(asset_dir, name), os.path.join(assets, name))
        if artifacts.tokenizer.get("user_dict"):
            shutil.copyfile(artifacts.tokenizer["user_dict"], os.path.join(assets, "user_dict.txt"))

    return write_version(base_dir, write, keep, log)


def write_version(base_dir: str, write, keep: int = 3, log=print) -> str:
    """``write(model_dir, staging_dir)`` fills a new SavedModel folder, which becomes the next
    integer version under base_dir (TensorFlow Serving's layout); the newest ``keep`` are kept.

    The staging folder is locked while it is written, so another process's clean-up never
    removes it, and two exporters never take the same version number; a reader never sees
    half an export.
    """
    os.makedirs(base_dir, exist_ok=True)
    clean_partial_exports(base_dir, log)
    tmp = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=base_dir)
    lock = os.open(os.path.join(tmp, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        write(os.path.join(tmp, "model"), tmp)
        fault_point("export")
        version = (export_versions(base_dir) or [0])[-1] + 1
        while True:
            final = os.path.join(base_dir, str(version))
            try:
                os.rename(os.path.join(tmp, "model"), final)  # fails when that folder exists and is not empty
                break
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                version += 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        os.close(lock)
    for old in export_versions(base_dir)[:-keep]:
        shutil.rmtree(os.path.join(base_dir, str(old)), ignore_errors=True)
    log(f"exported SavedModel version {version} to {final}")
    return final


def _held_by_a_live_export(folder: str) -> bool:
    """True while an exporting process holds the folder's lock (or may be about to take it)."""
    path = os.path.join(folder, ".lock")
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:  # made a moment ago and not locked yet, or left by a crash
        return time.time() - os.path.getmtime(folder) < 60
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def clean_partial_exports(base_dir: str, log=print) -> None:
    """Remove the temporary folders of exports that a crash interrupted (never a live one)."""
    for d in os.listdir(base_dir):
        path = os.path.join(base_dir, d)
        if d.startswith(TMP_PREFIX) and not _held_by_a_live_export(path):
            shutil.rmtree(path, ignore_errors=True)
            log(f"{base_dir}: removed {d}, left by an interrupted export")
