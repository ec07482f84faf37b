"""Request and response codecs: JSON (REST) and TensorProto (gRPC) <-> arrays, as pure functions.

Nothing here does I/O or holds state: each function maps its arguments to a value or raises a
:class:`~serving.errors.ServingError` (INVALID_ARGUMENT) whose message names the offending field
(``instances[3]``, ``inputs['text'][0][2]``), as TensorFlow Serving does. The JSON side follows
https://www.tensorflow.org/tfx/serving/api_rest: row format (``instances``) and columnar format
(``inputs``), strings as JSON strings or ``{"b64": "..."}``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from typing import Mapping

import numpy as np

from serving.errors import invalid, one_line

DEFAULT_SIGNATURE = "serving_default"


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
                    raise invalid(f"{where()}: invalid base64 in {{\"b64\": ...}}") from None
            raise invalid(f"{where()}: expected a string (or {{\"b64\": \"...\"}}), got {_json_type(x)}")
        return leaf
    if dtype.is_integer:
        lo, hi = dtype.min, dtype.max

        def leaf(x, where):
            if isinstance(x, bool) or not isinstance(x, int):
                raise invalid(f"{where()}: expected an integer ({dtype.name}), got {_json_type(x)}")
            if not lo <= x <= hi:
                raise invalid(f"{where()}: {x} is out of range for {dtype.name}")
            return x
        return leaf
    if dtype.is_floating:
        def leaf(x, where):
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise invalid(f"{where()}: expected a number ({dtype.name}), got {_json_type(x)}")
            return x
        return leaf
    if dtype == tf.bool:
        def leaf(x, where):
            if not isinstance(x, bool):
                raise invalid(f"{where()}: expected true or false, got {_json_type(x)}")
            return x
        return leaf
    raise invalid(f"inputs of type {dtype.name} are not supported by this server")


def _tensor(value, spec, where: str):
    """Nested JSON lists -> (flat list of elements, shape), checked against a TensorSpec."""
    rank = spec.shape.rank
    if rank is None:
        raise invalid(f"{where}: inputs of unknown rank are not supported by this server")
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
            raise invalid(f"{here()}: expected an array (a tensor of rank {rank}), got {_json_type(v)}")
        inner = None
        path.append(0)
        for i, x in enumerate(v):
            path[-1] = i
            s = walk(x, depth + 1)
            if inner is None:
                inner = s
            elif s != inner:
                path.pop()
                raise invalid(f"{here()}: rows of different shapes {list(inner)} and {list(s)} (a tensor must be rectangular)")
        path.pop()
        return (len(v),) + (inner if inner is not None else (0,) * (rank - depth - 1))

    shape = walk(value, 0)
    for i, (got, want) in enumerate(zip(shape, spec.shape.as_list())):
        if want is not None and got != want and not (i == 0 and got == 0):
            raise invalid(f"{where}: dimension {i} is {got}, the signature expects {want}")
    return flat, shape


def as_array(flat: list, shape: tuple, dtype):
    import tensorflow as tf

    if dtype == tf.string:
        a = np.empty(len(flat), dtype=object)
        a[:] = [x if isinstance(x, bytes) else x.encode("utf-8", "replace") for x in flat]
        return a.reshape(shape)
    return np.array(flat, dtype=dtype.as_numpy_dtype).reshape(shape)


def parse_predict(body, signatures: Mapping[str, Mapping[str, object]]):
    """A predict request body -> (signature, "row" | "columnar", {input: (flat, shape)}, batch size).

    ``signatures`` maps each signature name to its inputs' ``tf.TensorSpec`` by name. Anything the
    body gets wrong is a :class:`ServingError` (INVALID_ARGUMENT) naming the field.
    """
    if not isinstance(body, dict):
        raise invalid(f"the request must be a JSON object, got {_json_type(body)}")
    sig = body.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(sig, str):
        raise invalid(f"'signature_name' must be a string, got {_json_type(sig)}")
    sig = sig or DEFAULT_SIGNATURE
    if sig not in signatures:
        raise invalid(f'Serving signature name: "{sig}" not found in signature def')
    specs = signatures[sig]
    has_rows, has_cols = "instances" in body, "inputs" in body
    if has_rows and has_cols:
        raise invalid("Not both 'instances' and 'inputs' can be set")
    if not (has_rows or has_cols):
        raise invalid("Missing 'inputs' or 'instances' key")
    names = list(specs)
    columns = {}
    if has_rows:
        rows = body["instances"]
        if not isinstance(rows, list):
            raise invalid(f"'instances' must be an array, got {_json_type(rows)}")
        for n in names:
            columns[n] = []
        for i, row in enumerate(rows):
            named = isinstance(row, dict) and not (list(row) == ["b64"])
            if named:
                if set(row) != set(names):
                    raise invalid(f"instances[{i}]: expected the input(s) {names} of signature {sig}, got {sorted(row)}")
                for n in names:
                    columns[n].append(row[n])
            elif len(names) == 1:
                columns[names[0]].append(row)
            else:
                raise invalid(f"instances[{i}]: signature {sig} has several inputs {names}; send objects with those keys")
        fmt = "row"
    else:
        cols = body["inputs"]
        if isinstance(cols, dict) and not (list(cols) == ["b64"]):
            if set(cols) != set(names):
                raise invalid(f"'inputs': expected the input(s) {names} of signature {sig}, got {sorted(cols)}")
            columns = dict(cols)
        elif len(names) == 1:
            columns = {names[0]: cols}
        else:
            raise invalid(f"'inputs': signature {sig} has several inputs {names}; send an object with those keys")
        fmt = "columnar"
    tensors = {}
    sizes = set()
    for n in names:
        where = ("instances" if len(names) == 1 else f"instances[*]['{n}']") if fmt == "row" else f"inputs['{n}']"
        flat, shape = _tensor(columns[n], specs[n], where)
        tensors[n] = (flat, shape)
        sizes.add(shape[0] if shape else 1)
    if len(sizes) > 1:
        raise invalid(f"inputs have different batch sizes {sorted(sizes)}")
    return sig, fmt, tensors, sizes.pop()


def parse_body(raw: bytes, signatures):
    """Bytes of a REST predict request -> what :func:`parse_predict` returns."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise invalid(f"JSON Parse error: {one_line(e)}") from None
    return parse_predict(body, signatures)


def format_outputs(outputs: dict, fmt: str) -> dict:
    """Outputs (arrays or lists, one row per instance) -> the REST answer in the request's format."""
    keys = sorted(outputs)
    cols = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in outputs.items()}
    if fmt == "columnar":
        return {"outputs": cols[keys[0]] if len(keys) == 1 else {k: cols[k] for k in keys}}
    n = len(cols[keys[0]])
    if any(len(cols[k]) != n for k in keys):
        raise invalid("outputs have different batch sizes; use the columnar 'inputs' format")
    if len(keys) == 1:
        return {"predictions": cols[keys[0]]}
    return {"predictions": [{k: cols[k][i] for k in keys} for i in range(n)]}


# ---- gRPC: TensorProto <-> arrays -------------------------------------------------------------
def array_from_proto(proto, spec, where: str) -> np.ndarray:
    """A TensorProto from a gRPC PredictRequest -> a numpy array, checked against a TensorSpec:
    the same dtype (no silent casts, as TensorFlow Serving) and a shape the signature accepts."""
    import tensorflow as tf

    try:
        got = tf.dtypes.as_dtype(proto.dtype)
    except TypeError:
        raise invalid(f"{where}: unknown dtype enum {proto.dtype}") from None
    if got != spec.dtype:
        raise invalid(f"{where}: expects arg to be {spec.dtype.name} but {got.name} is provided")
    try:
        a = tf.make_ndarray(proto)
    except Exception as e:  # noqa: BLE001 - any malformed proto is the client's error
        raise invalid(f"{where}: not a valid TensorProto: {one_line(e)}") from None
    want = spec.shape
    if want.rank is not None:
        if a.ndim != want.rank:
            raise invalid(f"{where}: expects a tensor of rank {want.rank}, got shape {list(a.shape)}")
        for i, (g, w) in enumerate(zip(a.shape, want.as_list())):
            if w is not None and g != w and not (i == 0 and g == 0):
                raise invalid(f"{where}: dimension {i} is {g}, the signature expects {w}")
    return a


def outputs_to_protos(outputs: Mapping[str, object], output_filter=()) -> dict:
    """Outputs (arrays, or nested lists of str for string tensors) -> {name: TensorProto};
    ``output_filter`` keeps only the outputs it names (all when empty)."""
    import tensorflow as tf

    names = list(output_filter) or sorted(outputs)
    unknown = [n for n in names if n not in outputs]
    if unknown:
        raise invalid(f"output_filter: output tensor alias not found in signature: {unknown[0]} "
                      f"(outputs: {sorted(outputs)})")
    protos = {}
    for n in names:
        v = outputs[n]
        if isinstance(v, list):  # strings: back to bytes
            protos[n] = tf.make_tensor_proto(np.array(_encode(v), dtype=object), dtype=tf.string)
        else:
            protos[n] = tf.make_tensor_proto(v)
    return protos


def _encode(x):
    if isinstance(x, str):
        return x.encode("utf-8")
    if isinstance(x, list):
        return [_encode(v) for v in x]
    return x
