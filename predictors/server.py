"""TensorFlow Serving's REST API for this project's SavedModel exports, on aiohttp.

A client written for TensorFlow Serving works against this server and the other way round
(https://www.tensorflow.org/tfx/serving/api_rest):

- ``GET  /v1/models/NAME[/versions/N]``            model status
- ``GET  /v1/models/NAME[/versions/N]/metadata``   signature definitions
- ``POST /v1/models/NAME[/versions/N]:predict``    ``{"instances": [...]}`` (row format) or
  ``{"inputs": ...}`` (columnar), optional ``"signature_name"``; strings may be sent as
  ``{"b64": "..."}``.

What it adds: ``word`` models take raw text (the server segments it with the export's own
jieba settings and user dictionary, as the :class:`~predictors.Predictor` does), and
concurrent ``serving_default`` requests are batched into one signature call.

Pieces:

- :class:`ModelManager` watches ``model_base_path`` (TensorFlow Serving's layout,
  ``<base>/<int version>/saved_model.pb``) and serves the newest version that loads
  (the "latest" version policy). A new version is loaded in a background thread, warmed up
  and swapped in; the older one is unloaded. A version that fails to load is logged and
  skipped until its files change, and never replaces a working one.
- :func:`create_app` builds the aiohttp application. Model calls run in one worker thread,
  never on the event loop.
- :func:`run_server` serves until SIGINT/SIGTERM (``serve.py``), :class:`BackgroundServer`
  runs one in a thread (tests, notebooks).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import concurrent.futures
import functools
import json
import logging
import os
import re
import signal
import threading
import time

import numpy as np
from aiohttp import web

log = logging.getLogger("textcls.serve")

DEFAULT_SIGNATURE = "serving_default"
TEXT_INPUT = "text"
_PREDICT_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+))?:(classify|regress|predict)", re.I)
_STATUS_PATH = re.compile(r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+))?(/metadata)?", re.I)
_JSON_IN_THREAD_BYTES = 256 * 1024  # bigger request bodies are parsed off the event loop
_JSON_IN_THREAD_ROWS = 1024  # answers for more rows are encoded off the event loop
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


class ApiError(Exception):
    """An error answered to the client as ``{"error": message}`` with an HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class NoLoadableVersion(RuntimeError):
    """The base path holds no version that loads."""


# ---- one loaded version ------------------------------------------------------------------
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
        # Warm up (first calls are slow; jieba builds its dictionary) and prove it answers.
        if self.segments:
            self.tokenizer.segment(["预热"])
        if self.text_signature(DEFAULT_SIGNATURE):
            self.run_texts(["预热 warm-up"], 8)

    def text_signature(self, sig: str) -> bool:
        """True for a signature that takes one string vector ``text`` (batched, segmented)."""
        return sig in self._text_signatures

    def _takes_text(self, sig: str) -> bool:
        spec = self.inputs.get(sig, {})
        return list(spec) == [TEXT_INPUT] and spec[TEXT_INPUT].dtype == self._tf.string and spec[TEXT_INPUT].shape.rank == 1

    # ---- model calls (worker thread) --------------------------------------------------------
    def run_texts(self, texts: list, chunk: int = CALL_CHUNK) -> dict:
        """serving_default over raw texts (str, or bytes from b64), like the Predictor does: word
        models get them segmented first. Calls of at most ``chunk`` texts of similar lengths."""
        tf = self._tf
        if self.segments:
            texts = [t.decode("utf-8", "replace") if isinstance(t, bytes) else t for t in texts]
            texts = self.tokenizer.segment(texts)
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


def _folder_signature(path: str):
    """What changes when a version folder's files change (to retry a failed load only then)."""
    sig = []
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.stat(os.path.join(root, f))
            except OSError:
                continue
            sig.append((os.path.relpath(os.path.join(root, f), path), st.st_size, st.st_mtime_ns))
    return tuple(sorted(sig))


def _one_line(exc: BaseException) -> str:
    """A short error message without tracebacks or TensorFlow's node/stack decorations."""
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    lines = []
    for line in str(text).splitlines():
        s = line.strip()
        if not s or s.startswith(("Graph execution error", "Detected at node", "<stack traces", "[[", "File \"")):
            continue
        lines.append(re.sub(r"\s*\[Op:[^\]]*\]$", "", s))
    msg = "; ".join(lines) or type(exc).__name__
    return msg if len(msg) <= 500 else msg[:497] + "..."


# ---- versions on disk ------------------------------------------------------------------
class ModelManager:
    """Serves the newest loadable version under ``base_path`` (TF Serving's "latest" policy).

    :meth:`poll` checks the file system once (blocking; the app calls it from a worker thread
    every ``poll_seconds``). Request handlers only read :attr:`current`.
    """

    def __init__(self, name: str, base_path: str, poll_seconds: float = 2.0):
        self.name = name
        self.base_path = base_path
        self.poll_seconds = float(poll_seconds)
        self.current: Servable | None = None
        self._lock = threading.Lock()
        self._failed: dict[int, tuple] = {}  # version -> folder signature when it failed
        self._states: dict[int, tuple[str, str, str]] = {}  # version -> (state, error_code, message)
        self._warned_missing = False

    def _versions(self) -> list[int]:
        from predictors.export import export_versions

        return export_versions(self.base_path)

    def _try_load(self, version: int) -> Servable | None:
        path = os.path.join(self.base_path, str(version))
        try:
            sig = _folder_signature(path)
            if self._failed.get(version) == sig:
                return None
            t = time.perf_counter()
            servable = Servable(self.name, version, path)
        except Exception as e:  # a broken export: log it, keep what we have
            self._failed[version] = _folder_signature(path)
            self._states[version] = ("END", "UNKNOWN", _one_line(e))
            keep = f"; still serving version {self.current.version}" if self.current else ""
            log.error("model %s: version %d at %s failed to load: %s%s (not retried until its files change)",
                      self.name, version, path, _one_line(e), keep)
            return None
        self._failed.pop(version, None)
        log.info("model %s: loaded version %d from %s in %.1f s", self.name, version, path, time.perf_counter() - t)
        return servable

    def load_initial(self) -> Servable:
        """Load the newest version that loads; NoLoadableVersion when none does."""
        if not os.path.isdir(self.base_path):
            raise NoLoadableVersion(f"{self.base_path}: no such directory")
        versions = self._versions()
        if not versions:
            raise NoLoadableVersion(
                f"{self.base_path}: no version folders (<int>/saved_model.pb); export one first with train.py"
            )
        if not self.poll() or self.current is None:
            tried = ", ".join(f"{v} ({self._states[v][2]})" for v in sorted(self._failed, reverse=True))
            raise NoLoadableVersion(f"{self.base_path}: no version loads; tried {tried}")
        return self.current

    def poll(self) -> bool:
        """One look at the file system; True when the served version changed."""
        with self._lock:
            try:
                versions = self._versions()
            except OSError as e:
                log.error("model %s: cannot list %s: %s", self.name, self.base_path, e)
                return False
            cur = self.current.version if self.current else None
            if cur is not None and cur not in versions and not self._warned_missing:
                log.warning("model %s: version %d disappeared from %s", self.name, cur, self.base_path)
                self._warned_missing = True
            if cur is None or cur not in versions:
                candidates = [v for v in versions if v != cur]
            else:
                candidates = [v for v in versions if v > cur]
            for v in sorted(candidates, reverse=True):
                servable = self._try_load(v)
                if servable is not None:
                    old, self.current = self.current, servable
                    self._states[v] = ("AVAILABLE", "OK", "")
                    self._warned_missing = False
                    if old is not None:
                        self._states[old.version] = ("END", "OK", "")
                        log.info("model %s: now serving version %d (unloaded version %d)", self.name, v, old.version)
                    return True
            return False

    # ---- what handlers ask -------------------------------------------------------------------
    def servable(self, name: str, version: int | None) -> Servable:
        cur = self.current
        if name != self.name or cur is None or (version is not None and version != cur.version):
            spec = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise ApiError(404, f"Servable not found for request: {spec}")
        return cur

    def status(self, name: str, version: int | None) -> dict:
        cur = self.current
        if name != self.name or cur is None:
            raise ApiError(404, f"Could not find any versions of model {name}")
        if version is None:
            entries = [(cur.version, ("AVAILABLE", "OK", ""))]
        elif version in self._states:
            entries = [(version, self._states[version])]
        else:
            raise ApiError(404, f"Could not find version {version} of model {name}")
        return {
            "model_version_status": [
                {"version": str(v), "state": st, "status": {"error_code": code, "error_message": msg}}
                for v, (st, code, msg) in entries
            ]
        }


# ---- request parsing ---------------------------------------------------------------------
def _json_type(v) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(v), "number")


@functools.lru_cache(maxsize=None)
def _leaf_converter(dtype):
    """A function (value, where) -> Python scalar for one element of a tensor of dtype; ``where()``
    names the element in an error message (only built when there is an error)."""
    import tensorflow as tf

    if dtype == tf.string:
        def leaf(x, where):
            if isinstance(x, str):
                return x
            if isinstance(x, dict) and list(x) == ["b64"] and isinstance(x["b64"], str):
                try:
                    return base64.b64decode(x["b64"], validate=True)
                except (binascii.Error, ValueError):
                    raise ApiError(400, f"{where()}: invalid base64 in {{\"b64\": ...}}") from None
            raise ApiError(400, f"{where()}: expected a string (or {{\"b64\": \"...\"}}), got {_json_type(x)}")
        return leaf
    if dtype.is_integer:
        lo, hi = dtype.min, dtype.max

        def leaf(x, where):
            if isinstance(x, bool) or not isinstance(x, int):
                raise ApiError(400, f"{where()}: expected an integer ({dtype.name}), got {_json_type(x)}")
            if not lo <= x <= hi:
                raise ApiError(400, f"{where()}: {x} is out of range for {dtype.name}")
            return x
        return leaf
    if dtype.is_floating:
        def leaf(x, where):
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise ApiError(400, f"{where()}: expected a number ({dtype.name}), got {_json_type(x)}")
            return x
        return leaf
    if dtype == tf.bool:
        def leaf(x, where):
            if not isinstance(x, bool):
                raise ApiError(400, f"{where()}: expected true or false, got {_json_type(x)}")
            return x
        return leaf
    raise ApiError(400, f"inputs of type {dtype.name} are not supported by this server")


def _tensor(value, spec, where: str):
    """Nested JSON lists -> (flat list of elements, shape), checked against a TensorSpec."""
    rank = spec.shape.rank
    if rank is None:
        raise ApiError(400, f"{where}: inputs of unknown rank are not supported by this server")
    leaf = _leaf_converter(spec.dtype)
    flat: list = []
    path: list[int] = []

    def here() -> str:
        return where + "".join(f"[{i}]" for i in path)

    def walk(v, depth):
        if depth == rank:
            flat.append(leaf(v, here))
            return ()
        if not isinstance(v, list):
            raise ApiError(400, f"{here()}: expected an array (a tensor of rank {rank}), got {_json_type(v)}")
        inner = None
        path.append(0)
        for i, x in enumerate(v):
            path[-1] = i
            s = walk(x, depth + 1)
            if inner is None:
                inner = s
            elif s != inner:
                path.pop()
                raise ApiError(400, f"{here()}: rows of different shapes {list(inner)} and {list(s)} (a tensor must be rectangular)")
        path.pop()
        return (len(v),) + (inner if inner is not None else (0,) * (rank - depth - 1))

    shape = walk(value, 0)
    for i, (got, want) in enumerate(zip(shape, spec.shape.as_list())):
        if want is not None and got != want and not (i == 0 and got == 0):
            raise ApiError(400, f"{where}: dimension {i} is {got}, the signature expects {want}")
    return flat, shape


def _as_array(flat: list, shape: tuple, dtype):
    import tensorflow as tf

    if dtype == tf.string:
        a = np.empty(len(flat), dtype=object)
        a[:] = [x if isinstance(x, bytes) else x.encode("utf-8", "replace") for x in flat]
        return a.reshape(shape)
    return np.array(flat, dtype=dtype.as_numpy_dtype).reshape(shape)


def parse_predict(body: dict, servable: Servable):
    """A predict request body -> (signature, "row" | "columnar", {input: (flat, shape)}, batch size)."""
    if not isinstance(body, dict):
        raise ApiError(400, f"the request must be a JSON object, got {_json_type(body)}")
    sig = body.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(sig, str):
        raise ApiError(400, f"'signature_name' must be a string, got {_json_type(sig)}")
    sig = sig or DEFAULT_SIGNATURE
    if sig not in servable.signatures:
        raise ApiError(400, f'Serving signature name: "{sig}" not found in signature def')
    specs = servable.inputs[sig]
    has_rows, has_cols = "instances" in body, "inputs" in body
    if has_rows and has_cols:
        raise ApiError(400, "Not both 'instances' and 'inputs' can be set")
    if not (has_rows or has_cols):
        raise ApiError(400, "Missing 'inputs' or 'instances' key")
    names = list(specs)
    columns = {}
    if has_rows:
        rows = body["instances"]
        if not isinstance(rows, list):
            raise ApiError(400, f"'instances' must be an array, got {_json_type(rows)}")
        for n in names:
            columns[n] = []
        for i, row in enumerate(rows):
            named = isinstance(row, dict) and not (list(row) == ["b64"])
            if named:
                if set(row) != set(names):
                    raise ApiError(400, f"instances[{i}]: expected the input(s) {names} of signature {sig}, got {sorted(row)}")
                for n in names:
                    columns[n].append(row[n])
            elif len(names) == 1:
                columns[names[0]].append(row)
            else:
                raise ApiError(400, f"instances[{i}]: signature {sig} has several inputs {names}; send objects with those keys")
        fmt = "row"
    else:
        cols = body["inputs"]
        if isinstance(cols, dict) and not (list(cols) == ["b64"]):
            if set(cols) != set(names):
                raise ApiError(400, f"'inputs': expected the input(s) {names} of signature {sig}, got {sorted(cols)}")
            columns = dict(cols)
        elif len(names) == 1:
            columns = {names[0]: cols}
        else:
            raise ApiError(400, f"'inputs': signature {sig} has several inputs {names}; send an object with those keys")
        fmt = "columnar"
    tensors = {}
    sizes = set()
    for n in names:
        where = ("instances" if len(names) == 1 else f"instances[*]['{n}']") if fmt == "row" else f"inputs['{n}']"
        flat, shape = _tensor(columns[n], specs[n], where)
        tensors[n] = (flat, shape)
        sizes.add(shape[0] if shape else 1)
    if len(sizes) > 1:
        raise ApiError(400, f"inputs have different batch sizes {sorted(sizes)}")
    return sig, fmt, tensors, sizes.pop()


def _parse_body(raw: bytes, servable: Servable):
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ApiError(400, f"JSON Parse error: {_one_line(e)}") from None
    return parse_predict(body, servable)


def format_outputs(outputs: dict, fmt: str) -> dict:
    keys = sorted(outputs)
    cols = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in outputs.items()}
    if fmt == "columnar":
        return {"outputs": cols[keys[0]] if len(keys) == 1 else {k: cols[k] for k in keys}}
    n = len(cols[keys[0]])
    if any(len(cols[k]) != n for k in keys):
        raise ApiError(400, "outputs have different batch sizes; use the columnar 'inputs' format")
    if len(keys) == 1:
        return {"predictions": cols[keys[0]]}
    return {"predictions": [{k: cols[k][i] for k in keys} for i in range(n)]}


# ---- batching ----------------------------------------------------------------------------
class TextBatcher:
    """Batches concurrent serving_default requests into one signature call.

    A batch is sent when it holds ``max_batch_size`` texts, or ``timeout_s`` after its oldest
    request arrived, whichever is first. While the worker thread runs one batch, the next one
    fills up, so under load batches form without waiting. A request with more texts than
    ``max_batch_size`` is run on its own. Either way the worker calls the signature with at most
    ``CALL_CHUNK`` texts at a time.
    """

    def __init__(self, executor, max_batch_size: int = 256, timeout_s: float = 0.002):
        self.executor = executor
        self.max_batch_size = max(1, int(max_batch_size))
        self.timeout_s = max(0.0, float(timeout_s))
        self._queue: collections.deque = collections.deque()
        self._size = 0
        self._wake: asyncio.Future | None = None
        self._full: asyncio.Future | None = None
        self._task: asyncio.Task | None = None
        self.batches = 0
        self.texts = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._queue:
            fut = self._queue.popleft()[2]
            if not fut.done():
                fut.set_exception(ApiError(503, "the server is shutting down"))

    async def submit(self, servable: Servable, texts: list) -> dict:
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((servable, texts, fut, time.monotonic()))
        self._size += len(texts)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        if self._full is not None and self._size >= self.max_batch_size and not self._full.done():
            self._full.set_result(None)
        return await fut

    @staticmethod
    def _release(fut):
        if not fut.done():
            fut.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wake = loop.create_future()
                await self._wake
                self._wake = None
                continue
            remaining = self._queue[0][3] + self.timeout_s - time.monotonic()
            if remaining > 0 and self._size < self.max_batch_size:
                self._full = loop.create_future()
                timer = loop.call_later(remaining, self._release, self._full)
                try:
                    await self._full
                finally:
                    timer.cancel()
                    self._full = None
            batch = self._take()
            servable = batch[0][0]
            texts = [t for item in batch for t in item[1]]
            try:
                outputs = await loop.run_in_executor(self.executor, servable.run_texts, texts, min(self.max_batch_size, CALL_CHUNK))
            except Exception as e:
                for item in batch:
                    if not item[2].done():
                        item[2].set_exception(e)
                continue
            self.batches += 1
            self.texts += len(texts)
            start = 0
            for _s, item_texts, fut, _t in batch:
                end = start + len(item_texts)
                if not fut.done():
                    fut.set_result({k: v[start:end] for k, v in outputs.items()})
                start = end

    def _take(self) -> list:
        first = self._queue.popleft()
        batch, n = [first], len(first[1])
        while self._queue:
            nxt = self._queue[0]
            if nxt[0] is not first[0] or n + len(nxt[1]) > self.max_batch_size:
                break
            self._queue.popleft()
            batch.append(nxt)
            n += len(nxt[1])
        self._size -= n
        return batch


# ---- the HTTP application --------------------------------------------------------------------
def _json_response(obj, status: int = 200) -> web.Response:
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return web.Response(body=body, status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json_response({"error": message}, status)


class _Api:
    def __init__(self, manager: ModelManager, max_body_bytes: int, max_batch_size: int, batch_timeout_ms: float):
        self.manager = manager
        self.max_body_bytes = int(max_body_bytes)
        self.max_batch_size = max(1, int(max_batch_size))
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")
        self.loader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="loader")
        self.batcher = TextBatcher(self.executor, max_batch_size, batch_timeout_ms / 1000.0)
        self._poll_task: asyncio.Task | None = None

    async def on_startup(self, app) -> None:
        self.batcher.start()
        self._poll_task = asyncio.get_running_loop().create_task(self._poll_loop())

    async def on_cleanup(self, app) -> None:
        if self._poll_task:
            self._poll_task.cancel()
            try:
                await self._poll_task
            except asyncio.CancelledError:
                pass
        await self.batcher.stop()
        self.executor.shutdown(wait=True)
        self.loader.shutdown(wait=False, cancel_futures=True)

    async def _poll_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.manager.poll_seconds)
            try:
                await loop.run_in_executor(self.loader, self.manager.poll)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("model %s: polling %s failed", self.manager.name, self.manager.base_path)

    async def handle(self, request: web.Request) -> web.Response:
        try:
            return await self._dispatch(request)
        except ApiError as e:
            return _error(e.status, e.message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("internal error on %s %s", request.method, request.path)
            return _error(500, "Internal error (see the server log)")

    async def _dispatch(self, request: web.Request) -> web.Response:
        path, method = request.path, request.method
        if not path.lower().startswith("/v1/"):
            raise ApiError(404, f"Not found: {path} (this server answers /v1/models/...)")
        if method == "POST":
            m = _PREDICT_PATH.fullmatch(path)
            if m:
                name, version, verb = m.group(1), m.group(2), m.group(3).lower()
                if verb != "predict":
                    raise ApiError(400, f"'{verb}' is not supported by this server (its signatures are predict signatures); use :predict")
                return await self.predict(request, name, None if version is None else int(version))
        elif method in ("GET", "HEAD"):
            m = _STATUS_PATH.fullmatch(path)
            if m:
                name, version, meta = m.group(1), m.group(2), m.group(3)
                if not name:
                    raise ApiError(400, "Missing model name in request.")
                version = None if version is None else int(version)
                if meta:
                    return self.metadata(name, version)
                return _json_response(self.manager.status(name, version))
        raise ApiError(400, f"Malformed request: {method} {path}")

    def metadata(self, name: str, version: int | None) -> web.Response:
        s = self.manager.servable(name, version)
        return _json_response(
            {
                "model_spec": {"name": s.name, "signature_name": "", "version": str(s.version)},
                "metadata": {"signature_def": {"signature_def": s.metadata["signature_def"],
                                               "@type": "type.googleapis.com/tensorflow.serving.SignatureDefMap"}},
            }
        )

    async def _read_body(self, request: web.Request) -> bytes:
        too_big = f"the request body is larger than --max_body_bytes={self.max_body_bytes}"
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            raise ApiError(413, too_big)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(413, too_big) from None
        if len(raw) > self.max_body_bytes:
            raise ApiError(413, too_big)
        return raw

    async def predict(self, request: web.Request, name: str, version: int | None) -> web.Response:
        self.manager.servable(name, version)  # 404 before reading a body for nothing
        raw = await self._read_body(request)
        servable = self.manager.servable(name, version)
        loop = asyncio.get_running_loop()
        if len(raw) > _JSON_IN_THREAD_BYTES:  # a big body is parsed off the event loop
            sig, fmt, tensors, n = await loop.run_in_executor(None, _parse_body, raw, servable)
        else:
            sig, fmt, tensors, n = _parse_body(raw, servable)
        try:
            if servable.text_signature(sig):
                outputs = await self.batcher.submit(servable, tensors[TEXT_INPUT][0])
            else:
                arrays = {k: _as_array(flat, shape, servable.inputs[sig][k].dtype) for k, (flat, shape) in tensors.items()}
                outputs = await loop.run_in_executor(self.executor, servable.run, sig, arrays)
        except ApiError:
            raise
        except Exception as e:
            import tensorflow as tf

            if isinstance(e, (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError)):  # e.g. an id outside the vocabulary
                raise ApiError(400, _one_line(e)) from None
            raise
        response = format_outputs(outputs, fmt)
        if n > _JSON_IN_THREAD_ROWS:  # a big answer is encoded off the event loop
            return await loop.run_in_executor(None, _json_response, response)
        return _json_response(response)


API_KEY = web.AppKey("api", _Api)


def create_app(manager: ModelManager, *, max_body_bytes: int = 10 * 1024 * 1024, max_batch_size: int = 256,
               batch_timeout_ms: float = 2.0) -> web.Application:
    """The aiohttp application for one model. ``manager.current`` must be loaded already."""
    api = _Api(manager, max_body_bytes, max_batch_size, batch_timeout_ms)

    @web.middleware
    async def json_errors(request, handler):
        # aiohttp's own errors (e.g. a body over client_max_size) as TF Serving-style JSON too
        try:
            return await handler(request)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            return _error(e.status, e.reason or str(e))

    # client_max_size is a backstop; the handler answers 413 itself before reading.
    app = web.Application(client_max_size=max(int(max_body_bytes), 1), middlewares=[json_errors])
    app[API_KEY] = api
    app.router.add_route("*", "/{tail:.*}", api.handle)
    app.on_startup.append(api.on_startup)
    app.on_cleanup.append(api.on_cleanup)
    return app


# ---- running it --------------------------------------------------------------------------------
async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]


async def run_server(manager: ModelManager, host: str = "127.0.0.1", port: int = 8501, ready=None, **app_options) -> None:
    """Serve until SIGINT or SIGTERM, then shut down cleanly. ``ready(port)`` is called once listening."""
    app = create_app(manager, **app_options)
    runner, bound = await start_site(app, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(s, stop.set)
    if ready:
        ready(bound)
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        for s in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(s)
        await runner.cleanup()


class BackgroundServer:
    """A server in a background thread with its own event loop (tests, notebooks).

    >>> with BackgroundServer("pb_model/textcnn", "textcnn") as srv:
    ...     urllib.request.urlopen(srv.url + "/v1/models/textcnn").read()
    """

    def __init__(self, base_path: str, name: str, host: str = "127.0.0.1", port: int = 0, poll_seconds: float = 2.0,
                 **app_options):
        self.manager = ModelManager(name, base_path, poll_seconds)
        self.manager.load_initial()
        self.app = create_app(self.manager, **app_options)
        self.loop = asyncio.new_event_loop()
        self._runner = None
        started = concurrent.futures.Future()

        def main():
            asyncio.set_event_loop(self.loop)
            try:
                self._runner, self.port = self.loop.run_until_complete(start_site(self.app, host, port))
            except BaseException as e:
                started.set_exception(e)
                return
            started.set_result(None)
            self.loop.run_forever()
            self.loop.run_until_complete(self._runner.cleanup())
            self.loop.close()

        self.host = host
        self._thread = threading.Thread(target=main, name=f"serve-{name}", daemon=True)
        self._thread.start()
        started.result(timeout=60)
        self.url = f"http://{host}:{self.port}"

    def close(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
