"""The serving package's parts on their own: the request codec (property-tested on arbitrary JSON),
the batcher's bounded queue, splitting and isolation (with a fake servable, no model), and the
error table."""

from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import example, given, settings
from hypothesis import strategies as st

from serving import codec
from serving.batcher import TextBatcher
from serving.errors import HTTP_STATUS, QUEUE_FULL, ServingError

SIGNATURES = {
    "serving_default": {"text": tf.TensorSpec([None], tf.string, name="text")},
    "predict_ids": {"ids": tf.TensorSpec([None, None], tf.int32, name="ids")},
    "pair": {"a": tf.TensorSpec([None], tf.float32, name="a"), "b": tf.TensorSpec([None, 2], tf.bool, name="b")},
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["instances", "inputs", "signature_name", "text", "ids", "a", "b", "b64"]) | st.text(max_size=3), inner, max_size=4),
    max_leaves=20,
)


# ---- codec -------------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(json_values)
@example({"signature_name": "\n", "instances": ["a"]})  # found by CI-like run: the name is echoed in the message
def test_any_json_is_parsed_or_refused_with_invalid_argument(body):
    try:
        sig, fmt, tensors, n = codec.parse_predict(body, SIGNATURES)
    except ServingError as e:
        assert e.code == "INVALID_ARGUMENT" and e.message and "\n" not in e.message
        return
    assert sig in SIGNATURES and fmt in ("row", "columnar") and set(tensors) == set(SIGNATURES[sig])
    for name, (flat, shape) in tensors.items():
        assert int(np.prod(shape)) == len(flat) and shape[0] == n
        codec.as_array(flat, shape, SIGNATURES[sig][name].dtype)  # always convertible


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=8), max_size=6), st.booleans())
def test_texts_round_trip_in_both_formats(texts, rows):
    body = {"instances": texts} if rows else {"inputs": {"text": texts}}
    sig, fmt, tensors, n = codec.parse_predict(json.loads(json.dumps(body)), SIGNATURES)
    assert sig == "serving_default" and n == len(texts) and tensors["text"][0] == texts
    outputs = {"label": [t[:1] for t in texts], "probabilities": np.zeros((len(texts), 2), np.float32)}
    answer = codec.format_outputs(outputs, fmt)
    if rows:
        assert [p["label"] for p in answer["predictions"]] == outputs["label"]
    else:
        assert answer["outputs"]["label"] == outputs["label"]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(-2**31, 2**31 - 1), min_size=3, max_size=3), max_size=5))
def test_tensor_protos_round_trip(rows):
    a = np.array(rows, np.int32).reshape(-1, 3)
    back = codec.array_from_proto(tf.make_tensor_proto(a), SIGNATURES["predict_ids"]["ids"], "inputs['ids']")
    np.testing.assert_array_equal(back, a)
    protos = codec.outputs_to_protos({"ids": a, "label": [str(r) for r in rows]})
    np.testing.assert_array_equal(tf.make_ndarray(protos["ids"]), a)
    assert [b.decode() for b in tf.make_ndarray(protos["label"])] == [str(r) for r in rows]


def test_tensor_proto_mismatches_name_the_field():
    spec = SIGNATURES["predict_ids"]["ids"]
    for proto, message in [
        (tf.make_tensor_proto(np.zeros((2, 3), np.int64)), "expects arg to be int32 but int64 is provided"),
        (tf.make_tensor_proto(np.zeros(3, np.int32)), "rank 2"),
    ]:
        with pytest.raises(ServingError, match=message) as e:
            codec.array_from_proto(proto, spec, "inputs['ids']")
        assert e.value.code == "INVALID_ARGUMENT" and "inputs['ids']" in e.value.message
    with pytest.raises(ServingError, match="output tensor alias not found"):
        codec.outputs_to_protos({"label": ["a"]}, ["labels"])


def test_tensorflow_servings_http_table():
    assert (HTTP_STATUS["INVALID_ARGUMENT"], HTTP_STATUS["NOT_FOUND"], HTTP_STATUS["UNAVAILABLE"]) == (400, 404, 503)
    assert ServingError("UNAVAILABLE", QUEUE_FULL).http_status == 503
    with pytest.raises(ValueError):
        ServingError("TEAPOT", "x")


# ---- batcher -----------------------------------------------------------------------------------
class FakeServable:
    """run_texts echoes its texts; it blocks while ``gate`` is closed and fails on "bad"."""

    def __init__(self):
        self.gate = threading.Event()
        self.gate.set()
        self.calls = []

    def run_texts(self, texts, chunk, segmented):
        assert segmented
        self.gate.wait(10)
        self.calls.append(list(texts))
        if "bad" in texts:
            raise tf.errors.InvalidArgumentError(None, None, "bad text")
        return {"label": list(texts), "length": np.array([len(t) for t in texts])}


def run(coro):
    return asyncio.run(coro)


def test_batches_form_and_a_bad_request_fails_alone():
    import concurrent.futures

    async def main():
        s = FakeServable()
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            b = TextBatcher(ex, max_batch_size=100, timeout_s=0.05)
            b.start()
            try:
                results = await asyncio.gather(b.submit(s, ["a", "b"]), b.submit(s, ["bad"]), b.submit(s, ["c"]),
                                               return_exceptions=True)
            finally:
                await b.stop()
        return s, results

    s, results = run(main())
    assert s.calls[0] == ["a", "b", "bad", "c"]  # one batch first
    assert results[0]["label"] == ["a", "b"] and list(results[0]["length"]) == [1, 1]
    assert isinstance(results[1], tf.errors.InvalidArgumentError)
    assert results[2]["label"] == ["c"]


def test_a_big_request_is_cut_into_batches_and_a_full_queue_refuses_at_once():
    import concurrent.futures

    async def main():
        s = FakeServable()
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            b = TextBatcher(ex, max_batch_size=4, timeout_s=0.0, max_enqueued_batches=2)
            b.start()
            try:
                big = await b.submit(s, [str(i) for i in range(8)])
                s.gate.clear()  # the model thread is busy from now on
                first = asyncio.ensure_future(b.submit(s, ["x"]))
                await asyncio.sleep(0.01)
                while b.queued:  # until "x" is taken off the queue, into the blocked model thread
                    await asyncio.sleep(0.01)
                waiting = asyncio.ensure_future(b.submit(s, ["y"] * 8))  # fills the queue (2 batches of 4)
                await asyncio.sleep(0.01)
                with pytest.raises(ServingError) as refused:
                    await b.submit(s, ["z"])
                s.gate.set()
                return big, await first, await waiting, refused.value, s.calls
            finally:
                s.gate.set()
                await b.stop()

    big, first, waiting, refused, calls = run(main())
    assert big["label"] == [str(i) for i in range(8)] and list(big["length"]) == [1] * 8
    assert calls[:2] == [["0", "1", "2", "3"], ["4", "5", "6", "7"]]  # at most max_batch_size per run
    assert first["label"] == ["x"] and waiting["label"] == ["y"] * 8
    assert refused.code == "UNAVAILABLE" and QUEUE_FULL in refused.message and refused.http_status == 503
