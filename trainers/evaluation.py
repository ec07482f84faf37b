"""Evaluation: probabilities for the eval set, the metrics every eval_every steps, the final report.

Pure functions of (probabilities, true ids) for the metrics; scikit-learn computes them.
Evaluation runs on the chief over the whole eval set, so a run on several workers reports the
same figures as one process with the same weights.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score


def _inference_fn(model: keras.Model):
    fn = getattr(model, "_textcls_infer", None)
    if fn is None:
        fn = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec([None, None], tf.int32)])
        model._textcls_infer = fn
    return fn


def predict_dataset(model: keras.Model, batches, binary: bool) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and true label ids for every example of a finite (ids, label ids) dataset."""
    fn = _inference_fn(model)
    probs, ys = [], []
    for x, y in batches:
        out = fn(x).numpy()
        probs.append(np.concatenate([1.0 - out, out], axis=1) if binary else out)
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
