"""Predictor: labels and probabilities for raw text, from what training exported.

It calls the export's ``serving_default`` signature, the same graph TensorFlow Serving
runs, so the Predictor, a served model and training all tokenize alike. For ``word``
models it first segments with jieba, using the settings (and user dictionary) carried in
the export's assets.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from data_helpers.config import load_config
from data_helpers.io_utils import read_json
from data_helpers.long_text import config_tokens_read
from data_helpers.tokenizer import Tokenizer
from data_helpers.vocab import StaleVocabError
from predictors.explanation import raw_span
from predictors.export import latest_export

# Texts go to the signature in length order, in calls of up to _CHUNK: a call pads to its
# longest text, so similar lengths waste little (about 4x faster than calls of 512 mixed texts).
_CHUNK = 64
_EXPLAIN_CHUNK = 16  # integrated gradients runs 64 steps of each text at once


class Predictor:
    """Classify raw text with a trained model.

    A multi-label model's ``predict`` gives each text the list of its labels (those whose
    probability reaches the threshold the export carries; see ``thresholds_``).

    Args:
        config_path: the training config; the newest export under its ``pb_model_path`` is
            loaded, after checking that it was trained with the tokenizer settings the
            config asks for (otherwise :class:`StaleVocabError`: retrain).
        overrides: ``key=value`` items, as ``train.py --set``.

    Example:
        >>> p = Predictor("config/textcnn_config.json")
        >>> p.predict("这家店的菜很好吃，服务也很周到")
        'pos'
        >>> p.predict_proba("质量太差了")
        {'neg': 0.93, 'pos': 0.07}
        >>> Predictor("config/car_topics_textcnn.json").predict("油耗有点高，价格还行")
        ['价格', '油耗']
    """

    def __init__(self, config_path: str, overrides=()):
        cfg = load_config(config_path, overrides, check_files=False)
        export_dir = latest_export(cfg.pb_model_path)
        if export_dir is None:
            raise FileNotFoundError(
                f"no exported model under {cfg.pb_model_path}: train first with "
                f"`python train.py --config_path={config_path}`"
            )
        self._load(export_dir)
        self._check_matches(cfg, config_path)

    @classmethod
    def from_saved_model(cls, export_dir: str) -> "Predictor":
        """Load one export folder (``pb_model_path/<version>``) on its own, no config needed."""
        self = cls.__new__(cls)
        if not os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
            raise FileNotFoundError(f"{export_dir}: no saved_model.pb (expected an export folder pb_model_path/<version>)")
        self._load(export_dir)
        return self

    def _load(self, export_dir: str) -> None:
        self.export_dir = export_dir
        assets = os.path.join(export_dir, "assets")
        meta = read_json(os.path.join(assets, "vocab.json"))
        self.meta = {k: v for k, v in meta.items() if k != "tokens"}
        tok = dict(meta["tokenizer"])
        if tok.get("user_dict"):
            tok["user_dict"] = os.path.join(assets, "user_dict.txt")
        self.tokenizer = Tokenizer.from_config(tok)
        self.classes_ = list(meta["labels"])
        self.multi_label = bool(meta.get("multi_label", False))
        self.thresholds_ = None  # multi-label: {label: threshold}, as the export applies them
        if self.multi_label:
            self.thresholds_ = read_json(os.path.join(assets, "decision.json"))["thresholds"]
        self._model = tf.saved_model.load(export_dir)
        self._serve = self._model.signatures["serving_default"]

    def _check_matches(self, cfg, config_path: str) -> None:
        """The stale-vocab guard: the config must still describe the exported model."""
        expected = Tokenizer.from_run_config(cfg).get_config()
        saved = self.meta["tokenizer"]
        diffs = [k for k in expected if k not in ("user_dict",) and expected[k] != saved.get(k)]
        if config_tokens_read(cfg) != self.meta["sequence_length"]:  # tokens read: long_text chunks reads several windows
            diffs.append("sequence_length" if cfg.long_text != "chunks" else "sequence_length, chunk_stride or max_chunks")
        for key in ("min_count", "vocab_size"):
            if self.meta["settings"].get(key) != getattr(cfg, key):
                diffs.append(key)
        if diffs:
            raise StaleVocabError(
                f"{self.export_dir} was trained with other settings than {config_path} now has "
                f"({', '.join(diffs)} differ): retrain with `python train.py --config_path={config_path}`"
            )

    # ---- inputs ------------------------------------------------------------------
    @staticmethod
    def _as_list(texts) -> tuple[list[str], bool]:
        if isinstance(texts, str):
            return [texts], True
        if texts is None or isinstance(texts, (bytes, bytearray)) or not hasattr(texts, "__iter__"):
            raise TypeError(f"expected a str or a list of str, got {type(texts).__name__}")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] is {type(t).__name__}, expected str")
        return texts, False

    def _probabilities(self, texts: list[str]) -> tuple[np.ndarray, list]:
        """Probabilities [n, n_classes] and each text's label (multi-label: its list of labels)."""
        probs = np.zeros((len(texts), len(self.classes_)), np.float32)
        labels: list = [""] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(texts), _CHUNK):
            idx = order[start : start + _CHUNK]
            chunk = self.tokenizer.segment([texts[i] for i in idx])
            # Lone surrogates cannot be UTF-8 encoded; they become '?'.
            data = [t.encode("utf-8", "replace") for t in chunk]
            out = self._serve(text=tf.constant(data, tf.string))
            probs[idx] = out["probabilities"].numpy()
            if self.multi_label:
                for i, row in zip(idx, out["predicted"].numpy()):
                    labels[i] = [c for c, on in zip(self.classes_, row) if on]
            else:
                for i, label in zip(idx, out["label"].numpy()):
                    labels[i] = label.decode("utf-8")
        return probs, labels

    # ---- scikit-learn style API ----------------------------------------------------
    def predict(self, texts):
        """One text -> its label (multi-label: its list of labels, in ``classes_`` order);
        a list of texts -> a list of those."""
        items, single = self._as_list(texts)
        labels = self._probabilities(items)[1]
        return labels[0] if single else labels

    def classify(self, texts):
        """One text -> ``{"label": ..., "probabilities": {label: p}}`` (multi-label: ``"labels"``,
        a list) from one run of the model; a list of texts -> a list of those."""
        items, single = self._as_list(texts)
        probs, labels = self._probabilities(items)
        key = "labels" if self.multi_label else "label"
        out = [{key: label, "probabilities": {c: float(p) for c, p in zip(self.classes_, row)}} for label, row in zip(labels, probs)]
        return out[0] if single else out

    def predict_proba(self, texts):
        """One text -> {label: probability}; a list -> a list of such dicts."""
        items, single = self._as_list(texts)
        probs = self._probabilities(items)[0]
        dicts = [{c: float(p) for c, p in zip(self.classes_, row)} for row in probs]
        return dicts[0] if single else dicts

    def predict_proba_array(self, texts) -> np.ndarray:
        """[n, n_classes] probabilities, columns in the order of ``classes_``."""
        items, _ = self._as_list(texts)
        return self._probabilities(items)[0]

    def top_k(self, texts, k: int = 3):
        """One text -> the k likeliest (label, probability), best first; a list -> a list of those."""
        items, single = self._as_list(texts)
        probs = self._probabilities(items)[0]
        k = max(1, min(int(k), len(self.classes_)))
        out = []
        for row in probs:
            best = np.argsort(-row, kind="stable")[:k]
            out.append([(self.classes_[j], float(row[j])) for j in best])
        return out[0] if single else out

    # ---- why ------------------------------------------------------------------------
    def explain(self, texts, label=None, method: str = "auto", attention_maps: bool = False):
        """Why the model decided, through the export's ``explain`` signature.

        One text -> a dict; a list -> a list of dicts: ``label`` (the predicted one, or
        ``label`` when given), its ``probability``, the ``method`` used, and ``tokens``: the
        tokens as the model saw them (at most ``sequence_length``), each
        ``{"token", "start", "end", "score"}`` with ``text[start:end]`` the characters it came
        from (-1 where they cannot be told, e.g. text cut by ``max_chars``). For integrated
        gradients, ``ig_gap`` is f(text) - f(baseline) - sum(scores), the integration error.

        Args:
            label: the label to explain (one of ``classes_``); None: the predicted one.
            method: ``auto`` (attention where the model has it, else integrated gradients),
                ``attention`` (``bilstm_atten``, ``transformer``) or ``integrated_gradients``.
            attention_maps: transformer only: add ``attention_maps``, a numpy array
                [blocks, heads, n_tokens, n_tokens] of each block's self-attention per head.
        """
        items, single = self._as_list(texts)
        signatures = self._model.signatures
        if "explain" not in signatures:
            raise ValueError(f"{self.export_dir} has no explain signature: it was exported with export_explain: false "
                             "(train or export again with export_explain: true) or with long_text chunks "
                             "(an explanation reads one window; use truncate or head_tail to explain)")
        if method not in ("auto", "attention", "integrated_gradients"):
            raise ValueError(f"method must be auto, attention or integrated_gradients; got {method!r}")
        if label is not None and label not in self.classes_:
            raise ValueError(f"label {label!r} is not one of classes_ {self.classes_}")
        if attention_maps and "attention_maps" not in signatures:
            raise ValueError("attention_maps: only transformer exports have per-head attention maps")
        out = []
        for start in range(0, len(items), _EXPLAIN_CHUNK):
            chunk = items[start : start + _EXPLAIN_CHUNK]
            segmented = self.tokenizer.segment_with_offsets(chunk)
            # Lone surrogates cannot be UTF-8 encoded; they become '?' (one character, so spans hold).
            data = tf.constant([seg.encode("utf-8", "replace") for seg, _ in segmented], tf.string)
            n = len(chunk)
            r = {k: v.numpy() for k, v in signatures["explain"](
                text=data, method=tf.constant([method] * n), label=tf.constant([label or ""] * n)).items()}
            maps = signatures["attention_maps"](text=data)["maps"].numpy() if attention_maps else None
            for i, (seg, where) in enumerate(segmented):
                tokens = []
                for tok, a, b, score in zip(r["tokens"][i], r["starts"][i], r["ends"][i], r["scores"][i]):
                    if not tok:
                        break  # padding
                    a, b = raw_span(a, b, where)
                    tokens.append({"token": tok.decode("utf-8"), "start": int(a), "end": int(b), "score": float(score)})
                item = {"label": r["label"][i].decode("utf-8"), "probability": float(r["probability"][i]),
                        "method": r["method"][i].decode("utf-8"), "tokens": tokens}
                if item["method"] == "integrated_gradients":
                    item["ig_gap"] = float(r["ig_gap"][i])
                if maps is not None:
                    item["attention_maps"] = maps[i][:, :, : len(tokens), : len(tokens)]
                out.append(item)
        return out[0] if single else out

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]

    @property
    def sequence_length(self) -> int:
        return self.meta["sequence_length"]

    @property
    def saved_model(self):
        """The loaded SavedModel (``tf.saved_model.load``); keep it alive while using its signatures."""
        return self._model

    @property
    def signatures(self) -> dict:
        """The export's signatures by name (``serving_default``, ``predict_ids``, ``explain``, ...)."""
        return dict(self._model.signatures)


__all__ = ["Predictor", "StaleVocabError"]
