"""Evaluation: probabilities for the eval set, the metrics every eval_every steps, the final report.

Pure functions of (probabilities, true ids or multi-hot targets) for the metrics; scikit-learn
computes them. Multi-label runs decide which labels are on with per-label thresholds
(:func:`decide`), optionally tuned on the eval set (:func:`tune_thresholds`).
Evaluation runs on the chief over the whole eval set, so a run on several workers reports the
same figures as one process with the same weights.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from sklearn.metrics import (accuracy_score, classification_report, confusion_matrix, f1_score, hamming_loss,
                             precision_recall_curve)


def _inference_fn(model: keras.Model):
    fn = getattr(model, "_textcls_infer", None)
    if fn is None:
        fn = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec([None, None], tf.int32)])
        model._textcls_infer = fn
    return fn


def _both_columns(out: np.ndarray, binary: bool) -> np.ndarray:
    """A binary head's one sigmoid column as [P(label 0), P(label 1)]; other heads unchanged."""
    return np.concatenate([1.0 - out, out], axis=1) if binary else out


def predict_dataset(model: keras.Model, batches, binary: bool) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and true labels (ids, or multi-hot rows) for every example of a finite dataset."""
    fn = _inference_fn(model)
    probs, ys = [], []
    for x, y in batches:
        out = fn(x).numpy()
        probs.append(_both_columns(out, binary))
        ys.append(y.numpy())
    return np.concatenate(probs), np.concatenate(ys)


def eval_metrics(probs: np.ndarray, y: np.ndarray) -> dict:
    """Loss (mean negative log-likelihood), accuracy and macro-F1 over every label."""
    pred = probs.argmax(axis=1)
    p_true = np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)
    return {
        "loss": float(-np.log(p_true).mean()),
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro", labels=np.arange(probs.shape[1]), zero_division=0)),
    }


def evaluation_report(probs: np.ndarray, y: np.ndarray, labels: list[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1 by class name, confusion matrix."""
    pred = probs.argmax(axis=1)
    ids = list(range(len(labels)))
    per_class = classification_report(y, pred, labels=ids, target_names=labels, output_dict=True, zero_division=0)
    return {
        **eval_metrics(probs, y),
        "examples": int(len(y)),
        "per_class": {name: per_class[name] for name in labels},
        "confusion_matrix": {"labels": labels, "rows_true_cols_predicted": confusion_matrix(y, pred, labels=ids).tolist()},
        "table": classification_report(y, pred, labels=ids, target_names=labels, digits=4, zero_division=0),
    }


# ---- multi-label -----------------------------------------------------------------------------
def tune_thresholds(probs: np.ndarray, y: np.ndarray, default: float) -> np.ndarray:
    """Per label, the threshold (one of its eval probabilities) that maximises its F1 when a label
    is on at ``probability >= threshold``; ``default`` for a label without a positive example.
    float32 [n_labels], as the export compares them."""
    out = np.full(y.shape[1], default, np.float32)
    for j in range(y.shape[1]):
        if y[:, j].sum() == 0:
            continue
        precision, recall, thresholds = precision_recall_curve(y[:, j], probs[:, j])
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        out[j] = thresholds[int(np.argmax(f1))]
    return out.astype(np.float32)


def decide(probs: np.ndarray, thresholds, at_least_one: bool) -> np.ndarray:
    """bool [n, n_labels]: a label is on when its probability reaches its threshold; with
    ``at_least_one`` a text with none on gets its likeliest label."""
    pred = probs >= np.asarray(thresholds, np.float32)
    if at_least_one:
        none = ~pred.any(axis=1)
        pred[np.flatnonzero(none), probs[none].argmax(axis=1)] = True
    return pred


def multilabel_metrics(probs: np.ndarray, y: np.ndarray, thresholds, at_least_one: bool = False) -> dict:
    """Loss (mean binary cross-entropy), micro-, macro- and weighted-F1, subset accuracy, Hamming
    loss and the mean number of labels per text, predicted and true."""
    y = y.astype(bool)
    pred = decide(probs, thresholds, at_least_one)
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    f1 = {avg: float(f1_score(y, pred, average=avg, zero_division=0)) for avg in ("micro", "macro", "weighted")}
    return {
        "loss": float(-np.mean(np.where(y, np.log(p), np.log(1 - p)))),
        "micro_f1": f1["micro"],
        "macro_f1": f1["macro"],
        "weighted_f1": f1["weighted"],
        "subset_accuracy": float(accuracy_score(y, pred)),
        "hamming_loss": float(hamming_loss(y, pred)),
        "labels_per_text_predicted": float(pred.sum(axis=1).mean()),
        "labels_per_text_true": float(y.sum(axis=1).mean()),
    }


def multilabel_report(probs: np.ndarray, y: np.ndarray, labels: list[str], thresholds, at_least_one: bool = False) -> dict:
    """:func:`multilabel_metrics`, per-label precision, recall, F1, support and threshold, and a table."""
    y = y.astype(bool)
    pred = decide(probs, thresholds, at_least_one)
    ids = list(range(len(labels)))
    per = classification_report(y, pred, labels=ids, target_names=labels, output_dict=True, zero_division=0)
    return {
        **multilabel_metrics(probs, y, thresholds, at_least_one),
        "examples": int(len(y)),
        "thresholds": {name: float(t) for name, t in zip(labels, np.broadcast_to(np.asarray(thresholds, np.float32), len(labels)))},
        "per_class": {name: per[name] for name in labels},
        "table": classification_report(y, pred, labels=ids, target_names=labels, digits=4, zero_division=0),
    }


REPORT_TEXTS = 5000  # eval texts read again for report.html's examples
EXAMPLES_EACH = 3


def report_examples(model: keras.Model, encoder, examples, labels: list[str], binary: bool, *, multi_label: bool = False,
                    thresholds=None, at_least_one: bool = False, limit: int = REPORT_TEXTS, each: int = EXAMPLES_EACH) -> dict:
    """Example texts for report.html, from the first ``limit`` of ``examples`` ((text, label) pairs
    as the reader yields them) run through ``model`` as the export runs it (same tokenization).

    Single-label: ``{(true, predicted): [texts]}`` for misclassified texts; multi-label:
    ``{label: {"missed": [texts], "added": [texts]}}``. At most ``each`` texts per entry."""
    texts, truth = [], []
    for text, label in examples:
        texts.append(text)
        truth.append(label)
        if len(texts) >= limit:
            break
    out: dict = {}
    if not texts:
        return out
    fn = _inference_fn(model)
    index = {name: i for i, name in enumerate(labels)}
    probs = []
    for start in range(0, len(texts), 256):
        chunk = encoder.tokenizer.segment(texts[start : start + 256])
        p = fn(encoder.ids(tf.constant([t.encode("utf-8", "replace") for t in chunk]), full_width=False)).numpy()
        probs.append(_both_columns(p, binary))
    probs = np.concatenate(probs)
    if multi_label:
        on = decide(probs, thresholds if thresholds is not None else 0.5, at_least_one)
        for row, (text, gold) in enumerate(zip(texts, truth)):
            gold = {gold} if isinstance(gold, str) else set(gold)
            for j, name in enumerate(labels):
                kind = "missed" if name in gold and not on[row, j] else "added" if on[row, j] and name not in gold else None
                if kind:
                    bucket = out.setdefault(name, {"missed": [], "added": []})[kind]
                    if len(bucket) < each:
                        bucket.append(text)
        return out
    for text, gold, pred in zip(texts, truth, probs.argmax(axis=1)):
        if gold in index and index[gold] != pred:
            bucket = out.setdefault((gold, labels[pred]), [])
            if len(bucket) < each:
                bucket.append(text)
    return out
