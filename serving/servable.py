"""One loaded export version: its signatures, tokenizer and metadata, and the calls that run it.

Loading goes through :meth:`predictors.Predictor.from_saved_model`, so the tokenizer is built from
the export's own assets exactly as the Predictor builds it (user dictionary included). Methods
that call the model run on the server's model thread; :meth:`Servable.segment` (jieba, ``word``
models only) runs on the segmentation pool, never on the model thread.
"""

from __future__ import annotations

import os

import numpy as np

from serving.codec import DEFAULT_SIGNATURE

TEXT_INPUT = "text"

# How a collected batch is cut into signature calls. serving_default pads a call's texts to its
# longest one (to sequence_length in exports made before that change), and a call costs about a
# fixed overhead plus the padded tokens. So the texts are sorted by length and cut into calls of
# similar lengths: a new call starts where growing the current one would add more than
# PAD_BUDGET_TOKENS of padding (about one call's overhead in tokens for the TextCNN demo export
# on 2 CPU cores), or at CALL_CHUNK texts (on CPU, 32-128 texts per call run fastest).
# Measured on the demo eval sentences: 1.3x the texts/s of one call per 16-text batch, 1.7x for
# 256-text batches.
CALL_CHUNK = 64
PAD_BUDGET_TOKENS = 96


class Servable:
    """One export version, loaded: its signatures, tokenizer (for ``word`` models) and metadata.

    Loading goes through :meth:`Predictor.from_saved_model`, so the tokenizer is built from the
    export's own assets exactly as the Predictor builds it (user dictionary included).
    """

    def __init__(self, name: str, version: int, path: str):
        import tensorflow as tf

        from predictors.predictor import Predictor

        self.name, self.version, self.path = name, int(version), path
        predictor = Predictor.from_saved_model(path)
        self.tokenizer = predictor.tokenizer
        self.segments = self.tokenizer.mode == "word"
        self.labels = list(predictor.classes_)
        self.sequence_length = predictor.sequence_length
        self._model = predictor.saved_model  # keeps the variables alive
        self.signatures = predictor.signatures
        self.inputs = {k: dict(fn.structured_input_signature[1]) for k, fn in self.signatures.items()}
        self.outputs = {k: dict(fn.structured_outputs) for k, fn in self.signatures.items()}
        self._tf = tf
        self.metadata = self._signature_def_map()
        self._text_signatures = {k for k in self.signatures if self._takes_text(k)}
        # Signatures answering with character spans of their text input (explain, attention_maps):
        # a word model's raw text is segmented for them and the spans mapped back to it.
        self._span_signatures = {k for k, out in self.outputs.items()
                                 if TEXT_INPUT in self.inputs[k] and {"starts", "ends"} <= set(out)}
        # Warm up (first calls are slow; jieba builds its dictionary) and prove it answers.
        if self.segments:
            self.tokenizer.segment(["预热"])
        self.signature_defs = _signature_defs(path, self.signatures)
        if self.text_signature(DEFAULT_SIGNATURE):
            self.run_texts(["预热 warm-up"], 8)

    def text_signature(self, sig: str) -> bool:
        """True for a signature that takes one string vector ``text`` (batched, segmented)."""
        return sig in self._text_signatures

    def _takes_text(self, sig: str) -> bool:
        spec = self.inputs.get(sig, {})
        return list(spec) == [TEXT_INPUT] and spec[TEXT_INPUT].dtype == self._tf.string and spec[TEXT_INPUT].shape.rank == 1

    # ---- model calls (worker thread) --------------------------------------------------------
    def segment(self, texts: list) -> list:
        """Raw texts (str, or bytes from b64) -> what serving_default takes: jieba-segmented,
        space-joined text for ``word`` models (as the Predictor does), the texts unchanged otherwise."""
        if not self.segments:
            return texts
        return self.tokenizer.segment([t.decode("utf-8", "replace") if isinstance(t, bytes) else t for t in texts])

    def span_signature(self, sig: str) -> bool:
        """True for a signature with a ``text`` input whose answer has ``starts``/``ends`` spans."""
        return sig in self._span_signatures

    def segment_with_offsets(self, texts) -> list:
        """Raw texts -> [(segmented text, where)] (:meth:`Tokenizer.segment_with_offsets`)."""
        return self.tokenizer.segment_with_offsets(
            [t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t) for t in texts])

    def run_spans(self, sig: str, arrays: dict, segmented: list) -> dict:
        """A span signature on a word model's segmented texts (``segmented``, from
        :meth:`segment_with_offsets`, in the order of ``arrays["text"]``), its spans mapped back to
        the raw texts, as :meth:`Predictor.explain` maps them."""
        from predictors.explanation import raw_span

        text = np.empty(len(segmented), dtype=object)
        text[:] = [seg.encode("utf-8", "replace") for seg, _ in segmented]
        out = self.run(sig, {**arrays, TEXT_INPUT: text})
        starts, ends = out["starts"].copy(), out["ends"].copy()
        for i, (_, where) in enumerate(segmented):
            for j in range(starts.shape[1]):
                if starts[i, j] >= 0:
                    starts[i, j], ends[i, j] = raw_span(starts[i, j], ends[i, j], where)
        return {**out, "starts": starts, "ends": ends}

    def run_texts(self, texts: list, chunk: int = CALL_CHUNK, segmented: bool = False) -> dict:
        """serving_default over texts (raw unless ``segmented``: see :meth:`segment`), in calls of
        at most ``chunk`` texts of similar lengths; rows come back in the order of ``texts``."""
        tf = self._tf
        if not segmented:
            texts = self.segment(texts)
        fn = self.signatures[DEFAULT_SIGNATURE]
        calls = _calls([self._length(t) for t in texts], max(int(chunk), 1), PAD_BUDGET_TOKENS)
        parts = []
        for idx in calls or [[]]:  # an empty list still gets one (empty) call
            # Lone surrogates cannot be UTF-8 encoded; they become '?' (as in the Predictor).
            data = [t.encode("utf-8", "replace") if isinstance(t, str) else t for t in (texts[i] for i in idx)]
            parts.append(_to_python(fn(**{TEXT_INPUT: tf.constant(data, tf.string)})))
        perm = [i for idx in calls for i in idx]  # row j of the joined outputs is texts[perm[j]]
        if len(parts) == 1 and perm == list(range(len(texts))):
            return parts[0]
        inverse = np.argsort(np.array(perm, dtype=np.int64), kind="stable")
        out = {}
        for k in parts[0]:
            joined = _concat([p[k] for p in parts])
            out[k] = joined[inverse] if isinstance(joined, np.ndarray) else [joined[j] for j in inverse]
        return out

    def _length(self, text) -> int:
        """About how many tokens a (segmented) text makes, capped at sequence_length."""
        if isinstance(text, bytes):
            n = len(text) // 2
        elif self.tokenizer.mode == "char":
            n = len(text)
        else:
            n = text.count(" ") + 1
        return min(n, self.sequence_length)

    def run(self, sig: str, arrays: dict) -> dict:
        tf = self._tf
        spec = self.inputs[sig]
        feeds = {k: tf.constant(v, spec[k].dtype) for k, v in arrays.items()}
        return _to_python(self.signatures[sig](**feeds))

    # ---- metadata ---------------------------------------------------------------------------
    def _signature_def_map(self) -> dict:
        """TF Serving's SignatureDefMap JSON, from the signatures' structured specs; tensor names
        from saved_model.pb when it can be read."""
        names = _tensor_names(self.path)
        out = {}
        for sig in sorted(self.signatures):
            n = names.get(sig, {})
            out[sig] = {
                "inputs": {k: _tensor_info(s, n.get("inputs", {}).get(k, s.name or k)) for k, s in self.inputs[sig].items()},
                "outputs": {k: _tensor_info(s, n.get("outputs", {}).get(k, s.name or k)) for k, s in self.outputs[sig].items()},
                "method_name": "tensorflow/serving/predict",
            }
        return {"signature_def": out}


def _signature_defs(path: str, names) -> dict:
    """The SignatureDef protos of saved_model.pb for the given signature names (gRPC metadata)."""
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    try:
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            sm.ParseFromString(f.read())
    except Exception:  # noqa: BLE001 - metadata only; the model itself loaded
        return {}
    return {k: v for k, v in sm.meta_graphs[0].signature_def.items() if k in names}


def _tensor_names(path: str) -> dict:
    try:
        from tensorflow.core.protobuf import saved_model_pb2

        sm = saved_model_pb2.SavedModel()
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            sm.ParseFromString(f.read())
        return {
            k: {"inputs": {i: t.name for i, t in v.inputs.items()}, "outputs": {o: t.name for o, t in v.outputs.items()}}
            for k, v in sm.meta_graphs[0].signature_def.items()
        }
    except Exception:  # names are cosmetic
        return {}


def _tensor_info(spec, name: str) -> dict:
    from tensorflow.core.framework import types_pb2

    if spec.shape.rank is None:
        shape = {"dim": [], "unknown_rank": True}
    else:
        shape = {"dim": [{"size": str(-1 if d is None else d), "name": ""} for d in spec.shape.as_list()], "unknown_rank": False}
    return {"dtype": types_pb2.DataType.Name(spec.dtype.as_datatype_enum), "tensor_shape": shape, "name": name}


def _calls(lengths: list[int], max_texts: int, pad_budget: int) -> list[list[int]]:
    """Indices grouped into calls: by rising length, a new call where adding the next text would
    pad the current call by more than pad_budget tokens, or at max_texts texts."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    calls, cur, longest = [], [], 0
    for i in order:
        n = lengths[i]
        if cur and (len(cur) >= max_texts or len(cur) * (n - longest) > pad_budget):
            calls.append(cur)
            cur = []
        cur.append(i)
        longest = n
    if cur:
        calls.append(cur)
    return calls


def _to_python(outputs: dict) -> dict:
    """Tensors -> numpy arrays; string tensors -> nested lists of str."""
    out = {}
    for k, t in outputs.items():
        a = t.numpy()
        if a.dtype == object:
            out[k] = _decode(a.tolist())
        else:
            out[k] = a
    return out


def _decode(x):
    if isinstance(x, bytes):
        return x.decode("utf-8", "replace")
    if isinstance(x, list):
        return [_decode(v) for v in x]
    return x


def _concat(parts: list):
    if isinstance(parts[0], list):
        return [x for p in parts for x in p]
    return np.concatenate(parts)
