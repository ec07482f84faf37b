"""serve.py's gRPC API, called with TensorFlow Serving's official client (tensorflow-serving-api's
stubs and tf.make_tensor_proto, as TensorFlow Serving's own examples call it); the Prometheus
metrics; several models from a --model_config_file with version policies, labels and polling.

Servers run in this process on free loopback ports (REST and gRPC), like test_server's.
"""

from __future__ import annotations

import logging
import os

import grpc
import numpy as np
import pytest
import tensorflow as tf
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from serving.manager import ModelManager
from serving.model_config import ConfigError, parse_text, read_file
from serving.server import BackgroundServer
from tests.test_server import TEXTS, call, copy_version, export_1, served, wait_for  # noqa: F401 (fixtures)

TIMEOUT = 30
GTEXTS = [t for t in TEXTS if "\ud800" not in t]  # a lone surrogate cannot be put in a TensorProto


@pytest.fixture(scope="module")
def export_dir(export_1):
    return export_1


@pytest.fixture(scope="module")
def grpc_served(served):
    srv, predictor = served
    channel = grpc.insecure_channel(srv.grpc_target)
    yield srv, prediction_service_pb2_grpc.PredictionServiceStub(channel), predictor
    channel.close()


def predict_request(name="tiny", texts=GTEXTS, signature="", version=None, label=None, key="text", tensor=None):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if signature:
        request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    request.inputs[key].CopyFrom(tensor if tensor is not None else tf.make_tensor_proto(texts))
    return request


def grpc_error(fn, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        fn(request, timeout=TIMEOUT)
    return e.value


# ---- PredictionService ------------------------------------------------------------------------
def test_grpc_predict_equals_rest_and_the_predictor(grpc_served):
    srv, stub, predictor = grpc_served
    response = stub.Predict(predict_request(), timeout=TIMEOUT)
    assert response.model_spec.name == "tiny" and response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"
    labels = [b.decode("utf-8") for b in tf.make_ndarray(response.outputs["label"])]
    probs = tf.make_ndarray(response.outputs["probabilities"])
    assert labels == predictor.predict(GTEXTS)
    status, rest = call(f"{srv.url}/v1/models/tiny:predict", {"inputs": GTEXTS})
    assert status == 200 and rest["outputs"]["label"] == labels
    np.testing.assert_allclose(probs, np.array(rest["outputs"]["probabilities"]), atol=1e-6)
    np.testing.assert_allclose(probs, predictor.predict_proba_array(GTEXTS), atol=1e-5)
    # a version, and an output filter
    request = predict_request(version=1)
    request.output_filter.append("label")
    response = stub.Predict(request, timeout=TIMEOUT)
    assert set(response.outputs) == {"label"}
    # an empty batch answers with every output's shape
    response = stub.Predict(predict_request(tensor=tf.make_tensor_proto([], dtype=tf.string)), timeout=TIMEOUT)
    assert tf.make_ndarray(response.outputs["probabilities"]).shape == (0, len(predictor.classes_))


def test_grpc_predict_ids(grpc_served):
    srv, stub, predictor = grpc_served
    ids = np.array([[2, 3, 4, 0], [5, 6, 7, 8]], np.int32)
    response = stub.Predict(predict_request(signature="predict_ids", key="ids", tensor=tf.make_tensor_proto(ids)),
                            timeout=TIMEOUT)
    direct = predictor.signatures["predict_ids"](ids=tf.constant(ids))
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), direct["probabilities"].numpy(), atol=1e-6)
    wrong_type = predict_request(signature="predict_ids", key="ids", tensor=tf.make_tensor_proto(ids.astype(np.int64)))
    e = grpc_error(stub.Predict, wrong_type)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "int32" in e.details() and "int64" in e.details()
    outside = predict_request(signature="predict_ids", key="ids", tensor=tf.make_tensor_proto(np.array([[99999]], np.int32)))
    e = grpc_error(stub.Predict, outside)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "token ids must be <" in e.details()


@pytest.mark.parametrize("what,request_kwargs,code", [
    ("unknown model", dict(name="nope"), grpc.StatusCode.NOT_FOUND),
    ("unknown version", dict(version=7), grpc.StatusCode.NOT_FOUND),
    ("unknown label", dict(label="canary"), grpc.StatusCode.INVALID_ARGUMENT),  # as TF Serving answers
    ("unknown signature", dict(signature="nope"), grpc.StatusCode.INVALID_ARGUMENT),
    ("unknown input", dict(key="txt"), grpc.StatusCode.INVALID_ARGUMENT),
    ("numbers for text", dict(tensor=tf.make_tensor_proto([1.5, 2.5])), grpc.StatusCode.INVALID_ARGUMENT),
    ("a matrix for a vector", dict(tensor=tf.make_tensor_proto([["a", "b"]])), grpc.StatusCode.INVALID_ARGUMENT),
])
def test_grpc_errors_and_the_server_keeps_serving(grpc_served, what, request_kwargs, code):
    srv, stub, predictor = grpc_served
    e = grpc_error(stub.Predict, predict_request(**request_kwargs))
    assert e.code() == code and e.details() and "Traceback" not in e.details()
    response = stub.Predict(predict_request(texts=["物流很差，很失望"]), timeout=TIMEOUT)
    assert tf.make_ndarray(response.outputs["label"])[0].decode() == predictor.predict("物流很差，很失望")


def test_grpc_metadata_and_status(grpc_served):
    srv, stub, predictor = grpc_served
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "tiny"
    request.metadata_field.append("signature_def")
    response = stub.GetModelMetadata(request, timeout=TIMEOUT)
    assert response.model_spec.version.value == 1
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(sig_map)
    assert {"serving_default", "predict_ids"} <= set(sig_map.signature_def)
    text = sig_map.signature_def["serving_default"].inputs["text"]
    assert text.dtype == tf.string.as_datatype_enum
    assert sig_map.signature_def["serving_default"].method_name == "tensorflow/serving/predict"
    del request.metadata_field[:]
    assert grpc_error(stub.GetModelMetadata, request).code() == grpc.StatusCode.INVALID_ARGUMENT

    models = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(srv.grpc_target))
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "tiny"
    status = models.GetModelStatus(status_request, timeout=TIMEOUT)
    assert [(s.version, s.state, s.status.error_code) for s in status.model_version_status] == \
        [(1, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)]
    status_request.model_spec.name = "nope"
    assert grpc_error(models.GetModelStatus, status_request).code() == grpc.StatusCode.NOT_FOUND


def test_prometheus_metrics(grpc_served):
    srv, stub, _ = grpc_served
    for _ in range(3):
        stub.Predict(predict_request(texts=["很好"]), timeout=TIMEOUT)
    grpc_error(stub.Predict, predict_request(signature="nope"))
    call(f"{srv.url}/v1/models/tiny:predict", {"instances": ["很好", "很差"]})
    call(f"{srv.url}/v1/models/tiny:predict", {"instances": [1]})
    import urllib.request

    with urllib.request.urlopen(f"{srv.url}/monitoring/prometheus/metrics", timeout=TIMEOUT) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(r.read().decode("utf-8"))}

    def value(family, suffix="", **labels):
        return sum(s.value for s in families[family].samples
                   if s.name == family + suffix and all(s.labels.get(k) == v for k, v in labels.items()))

    assert value("tfserving_requests", "_total", model="tiny", api="grpc", status="OK", signature="serving_default") >= 3
    assert value("tfserving_requests", "_total", model="tiny", api="grpc", status="INVALID_ARGUMENT") >= 1
    assert value("tfserving_requests", "_total", model="tiny", api="rest", status="OK", version="1") >= 1
    assert value("tfserving_requests", "_total", model="tiny", api="rest", status="INVALID_ARGUMENT") >= 1
    assert value("tfserving_request_latency_seconds", "_count", model="tiny", api="grpc") >= 4
    assert value("tfserving_batch_size", "_sum") >= 5  # texts run in batches
    assert value("tfserving_model_events", "_total", model="tiny", event="loaded") == 1
    assert value("tfserving_model_versions_available", model="tiny") == 1
    assert "tfserving_queue_texts" in families


# ---- several models from a model config file ---------------------------------------------------
def config_text(models) -> str:
    cfg = model_server_config_pb2.ModelServerConfig()
    for name, base, policy, labels in models:
        c = cfg.model_config_list.config.add()
        c.name, c.base_path, c.model_platform = name, base, "tensorflow"
        if policy == "all":
            c.model_version_policy.all.SetInParent()
        elif isinstance(policy, tuple):
            c.model_version_policy.specific.versions.extend(policy)
        for k, v in labels.items():
            c.version_labels[k] = v
    from google.protobuf import text_format

    return text_format.MessageToString(cfg)


def test_model_config_file_parsing(tmp_path):
    entries = parse_text(config_text([("a", "/m/a", (2, 1), {"stable": 1}), ("b", "rel/b", "all", {})]))
    assert [(e.name, e.base_path, e.policy, e.label_map) for e in entries] == [
        ("a", "/m/a", ("specific", (1, 2)), {"stable": 1}), ("b", "rel/b", ("all", None), {})]
    assert parse_text('model_config_list { config { name: "c" base_path: "/x" } }')[0].policy == ("latest", 1)
    bad = {
        'model_config_list { config { name: "a" base_pth: "/x" } }': "no field named \"base_pth\"",
        'model_config_list { config { name: "a" } }': "base_path: missing",
        'model_config_list { config { name: "a/b" base_path: "/x" } }': "name",
        'model_config_list { config { name: "a" base_path: "/x" } config { name: "a" base_path: "/y" } }': "configured twice",
        'model_config_list { config { name: "a" base_path: "/x" model_platform: "onnx" } }': "model_platform",
        'model_config_list { }': "no model to serve",
    }
    for text, message in bad.items():
        with pytest.raises(ConfigError, match=message):
            parse_text(text)
    with pytest.raises(ConfigError, match="cannot read"):
        read_file(str(tmp_path / "missing.config"))


def test_several_models_versions_labels_and_polling(export_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="textcls.serve")
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    for base, versions in ((a, (1, 2, 3)), (b, (5,))):
        os.makedirs(base)
        for v in versions:
            copy_version(export_dir, base, v)
    path = tmp_path / "models.config"
    path.write_text(config_text([("a", a, (1, 2), {"stable": 1, "canary": 2}), ("b", b, None, {})]))
    manager = ModelManager(read_file(str(path)), poll_seconds=30)
    manager.load_initial()
    with BackgroundServer(manager=manager, model_config_file=str(path), config_poll_seconds=0.1) as srv:
        status = call(f"{srv.url}/v1/models/a")[1]["model_version_status"]
        assert [(s["version"], s["state"]) for s in status] == [("2", "AVAILABLE"), ("1", "AVAILABLE")]
        for url in ("a/versions/1", "a/versions/2", "a/labels/stable", "a/labels/canary", "a", "b"):
            assert call(f"{srv.url}/v1/models/{url}:predict", {"instances": ["很好"]})[0] == 200, url
        assert call(f"{srv.url}/v1/models/a/versions/3:predict", {"instances": ["很好"]})[0] == 404  # not in the policy
        assert call(f"{srv.url}/v1/models/a/labels/nope:predict", {"instances": ["很好"]})[0] == 400
        assert call(f"{srv.url}/v1/models/a/labels/canary")[1]["model_version_status"][0]["version"] == "2"
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(srv.grpc_target))
        assert stub.Predict(predict_request("a", ["很好"], label="canary"), timeout=TIMEOUT).model_spec.version.value == 2
        assert stub.Predict(predict_request("b", ["很好"]), timeout=TIMEOUT).model_spec.version.value == 5

        # A bad change (a label naming a version that is not loaded) is logged; the old config serves.
        path.write_text(config_text([("a", a, (1, 2), {"stable": 9})]))
        wait_for(lambda: any("model config change refused" in r.getMessage() for r in caplog.records), what="refusal")
        assert call(f"{srv.url}/v1/models/b:predict", {"instances": ["很好"]})[0] == 200
        assert call(f"{srv.url}/v1/models/a/labels/stable")[1]["model_version_status"][0]["version"] == "1"

        # A good change: b removed, a serves all of its versions, a label moves.
        path.write_text(config_text([("a", a, "all", {"stable": 3})]))
        wait_for(lambda: call(f"{srv.url}/v1/models/b")[0] == 404, what="model b to be removed")
        assert [s["version"] for s in call(f"{srv.url}/v1/models/a")[1]["model_version_status"]] == ["3", "2", "1"]
        assert call(f"{srv.url}/v1/models/a/labels/stable")[1]["model_version_status"][0]["version"] == "3"

        # ModelService.HandleReloadConfigRequest applies a config the same way.
        models = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(srv.grpc_target))
        reload = model_management_pb2.ReloadConfigRequest()
        c = reload.config.model_config_list.config.add()
        c.name, c.base_path = "b", b
        assert models.HandleReloadConfigRequest(reload, timeout=TIMEOUT).status.error_code == 0
        assert call(f"{srv.url}/v1/models/b")[0] == 200 and call(f"{srv.url}/v1/models/a")[0] == 404
        c.base_path = str(tmp_path / "nothing")
        answer = models.HandleReloadConfigRequest(reload, timeout=TIMEOUT)
        assert answer.status.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "no such directory" in answer.status.error_message
        assert call(f"{srv.url}/v1/models/b")[0] == 200


def test_serve_py_refuses_a_bad_config_file_with_one_line(tmp_path, capsys, export_dir):
    import serve

    path = tmp_path / "models.config"
    path.write_text('model_config_list { config { name: "a" base_path: "/x" model_version_policy { lastest {} } } }')
    assert serve.main(["--model_config_file", str(path), "--port", "0", "--rest_api_port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "lastest" in err
    base = tmp_path / "a"
    base.mkdir()
    copy_version(export_dir, str(base), 1)
    path.write_text(config_text([("a", str(base), None, {"stable": 4})]))
    assert serve.main(["--model_config_file", str(path), "--port", "0", "--rest_api_port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "stable" in err and "version 4" in err


def test_a_full_queue_answers_unavailable_at_once_on_both_apis(export_dir, tmp_path):
    """TensorFlow Serving's answer to a full batch queue: UNAVAILABLE (HTTP 503), at once, not a wait."""
    import concurrent.futures
    import threading
    import time

    from serving.errors import QUEUE_FULL

    base = str(tmp_path / "tiny")
    os.makedirs(base)
    copy_version(export_dir, base, 1)
    with BackgroundServer(base, "tiny", poll_seconds=30, max_batch_size=2, max_enqueued_batches=1) as srv:
        servable = srv.manager.servable("tiny")
        gate, entered, run_texts = threading.Event(), threading.Event(), servable.run_texts

        def slow(*args, **kwargs):
            entered.set()
            gate.wait(30)
            return run_texts(*args, **kwargs)

        servable.run_texts = slow  # the model thread is busy until the gate opens
        batcher = srv.server.inference.batcher
        url = f"{srv.url}/v1/models/tiny:predict"
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            try:
                running = pool.submit(call, url, {"instances": ["很好"]})
                assert entered.wait(TIMEOUT)  # its batch is on the model thread
                queued = pool.submit(call, url, {"instances": ["很差", "一般"]})  # fills the queue: 1 batch of 2
                wait_for(lambda: batcher.queued == 2, what="a full queue")
                t = time.monotonic()
                status, out = call(url, {"instances": ["还行"]})
                assert status == 503 and QUEUE_FULL in out["error"] and time.monotonic() - t < 5
                stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(srv.grpc_target))
                e = grpc_error(stub.Predict, predict_request(texts=["还行"]))
                assert e.code() == grpc.StatusCode.UNAVAILABLE and QUEUE_FULL in e.details()
            finally:
                gate.set()
            assert running.result(timeout=TIMEOUT)[0] == 200 and queued.result(timeout=TIMEOUT)[0] == 200
        assert call(url, {"instances": ["还行"]})[0] == 200  # and it serves again
