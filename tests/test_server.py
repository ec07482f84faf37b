"""serve.py / serving: TensorFlow Serving's REST API over a tiny export.

Status and metadata, row and columnar predict equal to the Predictor, predict_ids, b64 strings,
a word model fed raw text, every error status (and the server still answering after it), hot
reload of a new version, a broken version that never replaces a working one, batching under
concurrent clients, and the CLI. Servers run in this process (one TensorFlow import), each in a
background thread with its own event loop, on a free loopback port.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from data_helpers.config import load_config
from predictors import Predictor
from serving.manager import ModelManager, NoLoadableVersion
from serving.server import BackgroundServer
from tests.conftest import quiet, tiny_config
from tests.test_export import ODD_TEXTS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXTS = ["这家店的服务很好，满意", "物流很差，很失望", "一般般吧，还行", *ODD_TEXTS, "\ud800 lone surrogate"]


def call(url, body=None, method=None, raw=None, timeout=30):
    """(status, parsed JSON) of one request; body is JSON-encoded, raw is sent as is."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode("utf-8"))
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        text = e.read()
        assert e.headers.get("Content-Type", "").startswith("application/json"), text[:200]
        return e.code, json.loads(text)


def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def copy_version(src: str, base: str, version: int) -> str:
    """Copy an export to base/<version> the way export_model writes one: a hidden folder, then a rename."""
    tmp = os.path.join(base, f".tmp-copy-{version}")
    shutil.copytree(src, tmp)
    final = os.path.join(base, str(version))
    os.rename(tmp, final)
    return final


def assert_matches(predictions, predictor, texts):
    assert [p["label"] for p in predictions] == predictor.predict(texts)
    np.testing.assert_allclose(np.array([p["probabilities"] for p in predictions]), predictor.predict_proba_array(texts),
                               atol=1e-5)


@pytest.fixture(scope="module")
def export_1(trained):
    path, _ = trained("textcnn")
    return os.path.join(load_config(path, log=quiet).pb_model_path, "1")


@pytest.fixture(scope="module")
def served(export_1, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("served") / "tiny")
    os.makedirs(base)
    copy_version(export_1, base, 1)
    srv = BackgroundServer(base, "tiny", poll_seconds=0.1, max_body_bytes=512 * 1024)
    yield srv, Predictor.from_saved_model(os.path.join(base, "1"))
    srv.close()


# ---- status and metadata -------------------------------------------------------------------
def test_status(served):
    srv, _ = served
    expected = {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert call(f"{srv.url}/v1/models/tiny") == (200, expected)
    assert call(f"{srv.url}/v1/models/tiny/versions/1") == (200, expected)


def test_metadata_lists_both_signatures(served):
    srv, predictor = served
    status, meta = call(f"{srv.url}/v1/models/tiny/metadata")
    assert status == 200
    assert meta["model_spec"] == {"name": "tiny", "signature_name": "", "version": "1"}
    sigs = meta["metadata"]["signature_def"]["signature_def"]
    assert set(sigs) == {"serving_default", "predict_ids"}
    vector = {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}
    text = sigs["serving_default"]["inputs"]["text"]
    assert text["dtype"] == "DT_STRING" and text["tensor_shape"] == vector and text["name"]
    ids = sigs["predict_ids"]["inputs"]["ids"]
    assert ids["dtype"] == "DT_INT32" and ids["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}] * 2
    for sig in sigs.values():
        assert sig["method_name"] == "tensorflow/serving/predict"
        assert sig["outputs"]["label"]["dtype"] == "DT_STRING" and sig["outputs"]["label"]["tensor_shape"] == vector
        probs = sig["outputs"]["probabilities"]
        assert probs["dtype"] == "DT_FLOAT"
        assert probs["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}, {"size": str(len(predictor.classes_)), "name": ""}]
    assert call(f"{srv.url}/v1/models/tiny/versions/1/metadata") == (200, meta)


# ---- predict --------------------------------------------------------------------------------
def test_row_and_columnar_predict_equal_the_predictor(served):
    srv, predictor = served
    rows = [t if i % 2 else {"text": t} for i, t in enumerate(TEXTS)]
    for url in (f"{srv.url}/v1/models/tiny:predict", f"{srv.url}/v1/models/tiny/versions/1:predict"):
        status, out = call(url, {"instances": rows})
        assert status == 200 and set(out) == {"predictions"}
        assert_matches(out["predictions"], predictor, TEXTS)
    for inputs in (TEXTS, {"text": TEXTS}):
        status, out = call(f"{srv.url}/v1/models/tiny:predict", {"inputs": inputs, "signature_name": "serving_default"})
        assert status == 200 and set(out) == {"outputs"} and set(out["outputs"]) == {"label", "probabilities"}
        assert out["outputs"]["label"] == predictor.predict(TEXTS)
        np.testing.assert_allclose(out["outputs"]["probabilities"], predictor.predict_proba_array(TEXTS), atol=1e-5)
    assert call(f"{srv.url}/v1/models/tiny:predict", {"instances": []}) == (200, {"predictions": []})


def test_big_request(served):
    srv, predictor = served
    texts = [f"{i}很好" * 1000 for i in range(30)]  # ~400 KB of JSON: parsed off the event loop
    status, out = call(f"{srv.url}/v1/models/tiny:predict", {"instances": texts})
    assert status == 200
    assert_matches(out["predictions"], predictor, texts)


def test_batches_are_cut_into_calls_of_similar_lengths(served):
    from serving.servable import _calls

    assert _calls([], 64, 96) == []
    assert _calls([5, 1, 3], 64, 96) == [[1, 2, 0]]
    assert _calls([100, 1, 2, 3], 64, 96) == [[1, 2, 3], [0]]  # 3 texts padded by ~97 tokens: a new call
    assert _calls([1] * 5, 2, 96) == [[0, 1], [2, 3], [4]]
    srv, predictor = served
    servable = srv.manager.servable("tiny")
    out = servable.run_texts(TEXTS, chunk=2)  # many calls, answers back in request order
    assert out["label"] == predictor.predict(TEXTS)
    np.testing.assert_allclose(out["probabilities"], predictor.predict_proba_array(TEXTS), atol=1e-5)


def test_b64_strings(served):
    srv, predictor = served
    b64 = [{"b64": base64.b64encode(t.encode("utf-8")).decode("ascii")} for t in TEXTS[:4]]
    status, out = call(f"{srv.url}/v1/models/tiny:predict", {"instances": [b64[0], {"text": b64[1]}, *b64[2:]]})
    assert status == 200
    assert_matches(out["predictions"], predictor, TEXTS[:4])
    status, out = call(f"{srv.url}/v1/models/tiny:predict", {"inputs": {"text": b64}})
    assert status == 200 and out["outputs"]["label"] == predictor.predict(TEXTS[:4])


def test_predict_ids(served):
    srv, predictor = served
    ids = [[2, 3, 4, 0, 0], [5, 6, 7, 8, 9]]
    import tensorflow as tf

    direct = predictor.signatures["predict_ids"](ids=tf.constant(ids, tf.int32))
    url = f"{srv.url}/v1/models/tiny/versions/1:predict"
    status, rows = call(url, {"signature_name": "predict_ids", "instances": [ids[0], {"ids": ids[1]}]})
    assert status == 200
    assert [p["label"] for p in rows["predictions"]] == [b.decode() for b in direct["label"].numpy()]
    np.testing.assert_allclose([p["probabilities"] for p in rows["predictions"]], direct["probabilities"].numpy(), atol=1e-6)
    status, cols = call(url, {"signature_name": "predict_ids", "inputs": {"ids": ids}})
    assert status == 200
    np.testing.assert_allclose(cols["outputs"]["probabilities"], direct["probabilities"].numpy(), atol=1e-6)


# ---- errors ---------------------------------------------------------------------------------
BIG = json.dumps({"instances": ["很好" * 100000]}).encode("utf-8")  # 1.2 MB > --max_body_bytes (512 KiB)
ERRORS = [
    ("malformed JSON", "POST", "/v1/models/tiny:predict", b'{"instances": ["a",', 400),
    ("not UTF-8", "POST", "/v1/models/tiny:predict", b"\xff\xfe{]", 400),
    ("not an object", "POST", "/v1/models/tiny:predict", b'["a"]', 400),
    ("both", "POST", "/v1/models/tiny:predict", b'{"instances": ["a"], "inputs": ["a"]}', 400),
    ("neither", "POST", "/v1/models/tiny:predict", b'{"signature_name": "serving_default"}', 400),
    ("number for text", "POST", "/v1/models/tiny:predict", b'{"instances": [1]}', 400),
    ("null for text", "POST", "/v1/models/tiny:predict", b'{"inputs": {"text": [null]}}', 400),
    ("instances not a list", "POST", "/v1/models/tiny:predict", b'{"instances": "a"}', 400),
    ("unknown input name", "POST", "/v1/models/tiny:predict", b'{"instances": [{"txt": "a"}]}', 400),
    ("bad base64", "POST", "/v1/models/tiny:predict", b'{"instances": [{"b64": "%%%"}]}', 400),
    ("text for ids", "POST", "/v1/models/tiny:predict", b'{"signature_name": "predict_ids", "instances": ["a"]}', 400),
    ("float ids", "POST", "/v1/models/tiny:predict", b'{"signature_name": "predict_ids", "instances": [[1.5, 2]]}', 400),
    ("ragged ids", "POST", "/v1/models/tiny:predict", b'{"signature_name": "predict_ids", "instances": [[1, 2], [3]]}', 400),
    ("id outside the vocab", "POST", "/v1/models/tiny:predict", b'{"signature_name": "predict_ids", "instances": [[99999]]}', 400),
    ("id outside int32", "POST", "/v1/models/tiny:predict", b'{"signature_name": "predict_ids", "instances": [[4294967296]]}', 400),
    ("unknown signature", "POST", "/v1/models/tiny:predict", b'{"signature_name": "nope", "instances": ["a"]}', 400),
    ("signature_name not a string", "POST", "/v1/models/tiny:predict", b'{"signature_name": 3, "instances": ["a"]}', 400),
    ("classify", "POST", "/v1/models/tiny:classify", b'{"examples": []}', 400),
    ("GET on predict", "GET", "/v1/models/tiny:predict", None, 400),
    ("no model name", "GET", "/v1/models", None, 400),
    ("unknown model: predict", "POST", "/v1/models/nope:predict", b'{"instances": ["a"]}', 404),
    ("unknown model: status", "GET", "/v1/models/nope", None, 404),
    ("unknown model: metadata", "GET", "/v1/models/nope/metadata", None, 404),
    ("unknown version: predict", "POST", "/v1/models/tiny/versions/7:predict", b'{"instances": ["a"]}', 404),
    ("unknown version: status", "GET", "/v1/models/tiny/versions/7", None, 404),
    ("unknown version: metadata", "GET", "/v1/models/tiny/versions/7/metadata", None, 404),
    ("not the API", "GET", "/nothing.html", None, 404),
    ("not one of the page's files", "GET", "/ui/index.html", None, 404),
    ("body over --max_body_bytes", "POST", "/v1/models/tiny:predict", BIG, 413),
]


@pytest.mark.parametrize("what,method,path,body,status", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_and_the_server_keeps_serving(served, what, method, path, body, status):
    srv, predictor = served
    got, out = call(srv.url + path, raw=body, method=method)
    assert got == status, out
    assert set(out) == {"error"} and out["error"] and "Traceback" not in out["error"] and "File \"" not in out["error"]
    assert call(f"{srv.url}/v1/models/tiny:predict", {"instances": ["物流很差，很失望"]})[1]["predictions"][0]["label"] == \
        predictor.predict("物流很差，很失望")


def test_requests_over_the_instance_cap_get_400(export_1, tmp_path):
    base = str(tmp_path / "capped")
    os.makedirs(base)
    copy_version(export_1, base, 1)
    with BackgroundServer(base, "tiny", poll_seconds=30, max_instances=3) as srv:
        assert call(f"{srv.url}/v1/models/tiny:predict", {"instances": ["很好"] * 3})[0] == 200
        status, out = call(f"{srv.url}/v1/models/tiny:predict", {"instances": ["很好"] * 4})
        assert status == 400 and "--max_instances_per_request" in out["error"] and "instances" in out["error"]
        status, out = call(f"{srv.url}/v1/models/tiny:predict", {"signature_name": "predict_ids", "inputs": [[1]] * 4})
        assert status == 400 and "at most 3" in out["error"]


def test_chunked_body_over_the_limit_gets_413(served):
    srv, _ = served

    def chunks():
        for i in range(0, len(BIG), 8192):
            yield BIG[i : i + 8192]

    req = urllib.request.Request(f"{srv.url}/v1/models/tiny:predict", data=chunks(), method="POST",
                                 headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 413 and "error" in json.loads(e.value.read())


# ---- concurrency and batching -----------------------------------------------------------------
def test_short_load_test_with_concurrent_clients(served):
    """A few aiohttp clients for ~2 s: every answer right, every status 200, and requests batched."""
    import aiohttp

    srv, predictor = served
    texts = TEXTS[:3] + [f"这本书{w}，{w}" for w in ("很好", "很差", "一般", "满意", "失望", "还行")]
    labels, probs = predictor.predict(texts), predictor.predict_proba_array(texts)
    batcher = srv.server.inference.batcher
    before = (batcher.batches, batcher.texts)
    results = {"ok": 0, "bad": [], "sent": 0}

    async def client(session, k, until):
        i = k
        while time.monotonic() < until:
            idx = [(i + j) % len(texts) for j in range(1 + i % 3)]
            i += 7
            async with session.post(f"{srv.url}/v1/models/tiny:predict", json={"instances": [texts[j] for j in idx]}) as r:
                body = await r.json()
                if r.status != 200:
                    results["bad"].append((r.status, body))
                    continue
            got = body["predictions"]
            if [p["label"] for p in got] != [labels[j] for j in idx] or not np.allclose(
                    [p["probabilities"] for p in got], probs[idx], atol=1e-5):
                results["bad"].append(("wrong", idx, got))
            results["ok"] += 1
            results["sent"] += len(idx)

    async def main():
        until = time.monotonic() + 2.0
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(client(session, k, until) for k in range(6)))

    asyncio.run(main())
    assert not results["bad"], results["bad"][:3]
    assert results["ok"] > 20
    batches, sent = batcher.batches - before[0], batcher.texts - before[1]
    assert sent == results["sent"]
    assert batches < results["ok"], "concurrent requests were never batched together"


# ---- word models: raw text in, segmented by the server ------------------------------------------
@pytest.fixture(scope="module")
def word_export(tmp_path_factory, corpus):
    from trainers.trainer import Trainer

    root = tmp_path_factory.mktemp("word")
    user_dict = root / "user_dict.txt"
    user_dict.write_text("马马虎虎 5 a\n中规中矩 5 a\n", encoding="utf-8")
    path = tiny_config(root, corpus, "textcnn", tokenizer="word", user_dict=str(user_dict), epochs=1, export_explain=True)
    Trainer(load_config(path, log=quiet), log=quiet, verbose=0).train()
    user_dict.unlink()  # the export carries its own copy
    return os.path.join(load_config(path, log=quiet, check_files=False).pb_model_path, "1")


def test_word_model_takes_raw_text(word_export):
    predictor = Predictor.from_saved_model(word_export)
    assert predictor.tokenizer.mode == "word"
    texts = ["这家店的服务很好，满意", "物流马马虎虎，中规中矩", "质量很差，很失望，要退货", *ODD_TEXTS[:4]]
    with BackgroundServer(os.path.dirname(word_export), "word", poll_seconds=30) as srv:
        servable = srv.manager.servable("word")
        threads, segment = [], servable.segment

        def recording(batch):
            threads.append(threading.current_thread().name)
            return segment(batch)

        servable.segment = recording
        status, out = call(f"{srv.url}/v1/models/word:predict", {"instances": texts})
        assert status == 200
        assert_matches(out["predictions"], predictor, texts)
        assert threads and all(t.startswith("segment") for t in threads), threads  # jieba off the model thread
        b64 = [{"b64": base64.b64encode(t.encode("utf-8")).decode("ascii")} for t in texts]
        status, out = call(f"{srv.url}/v1/models/word:predict", {"inputs": {"text": b64}})
        assert status == 200 and out["outputs"]["label"] == predictor.predict(texts)


def test_word_export_refuses_raw_text_in_the_graph(word_export):
    """Stock TF Serving runs no jieba: raw text sent to a word export must fail loudly, not answer."""
    import tensorflow as tf

    predictor = Predictor.from_saved_model(word_export)
    fn = tf.saved_model.load(word_export).signatures["serving_default"]
    texts = ["这家店的服务很好，满意", "物流马马虎虎，中规中矩", "质量很差 😀 要退货", *ODD_TEXTS[:4]]
    segmented = predictor.tokenizer.segment(texts)
    out = fn(text=tf.constant(segmented))
    assert [b.decode() for b in out["label"].numpy()] == predictor.predict(texts)
    raw = ["这家店的服务很好，满意",  # punctuation glued to words
           "侵华日军南京大屠杀遇难同胞纪念馆就在那里",  # more Chinese characters in a row than any jieba word
           "质量很差😀"]
    for text in raw:
        with pytest.raises(tf.errors.InvalidArgumentError, match="this word model takes text segmented by jieba"):
            fn(text=tf.constant([segmented[1], text]))


def test_word_model_explanations_point_into_the_raw_text(word_export):
    predictor = Predictor.from_saved_model(word_export)
    texts = ["这家店的服务很好，满意", "物流马马虎虎，中规中矩  iPhone12 不错"]
    for text, r in zip(texts, predictor.explain(texts)):
        assert r["label"] == predictor.predict(text) and r["tokens"]
        for t in r["tokens"]:  # jieba words, located in the text as the caller sent it
            assert t["start"] >= 0 and text[t["start"]:t["end"]].lower() == t["token"]
        assert abs(r["ig_gap"]) < 0.05


def test_word_export_accepts_whatever_jieba_makes_of_any_text(word_export):
    """The raw-text check never refuses real segmented input: any text, segmented as the Predictor does."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    predictor = Predictor.from_saved_model(word_export)
    chinese = st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FD5), max_size=40)

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.text(max_size=30) | chinese | st.sampled_from(ODD_TEXTS), min_size=1, max_size=4))
    def check(texts):
        assert len(predictor.predict(texts)) == len(texts)

    check()


# ---- versions: hot reload, broken versions ----------------------------------------------------
def test_new_version_is_served_without_restart_and_broken_ones_never_replace_it(export_1, tmp_path, caplog):
    base = str(tmp_path / "reload")
    os.makedirs(base)
    copy_version(export_1, base, 1)
    caplog.set_level(logging.INFO, logger="textcls.serve")
    with BackgroundServer(base, "tiny", poll_seconds=0.05) as srv:
        status_url = f"{srv.url}/v1/models/tiny"

        def served_version():
            return call(status_url)[1]["model_version_status"][0]["version"]

        assert served_version() == "1"
        copy_version(export_1, base, 2)
        wait_for(lambda: served_version() == "2", what="version 2 to be served")
        assert call(f"{srv.url}/v1/models/tiny:predict", {"instances": ["很好"]})[0] == 200
        assert call(f"{srv.url}/v1/models/tiny/versions/2:predict", {"instances": ["很好"]})[0] == 200
        assert call(f"{srv.url}/v1/models/tiny/versions/1:predict", {"instances": ["很好"]})[0] == 404  # unloaded
        assert call(f"{srv.url}/v1/models/tiny/versions/1")[1]["model_version_status"][0]["state"] == "END"

        # A broken higher version: logged once, not retried while unchanged, version 2 keeps serving.
        broken = os.path.join(base, "3")
        os.makedirs(os.path.join(broken, "variables"))
        with open(os.path.join(broken, "saved_model.pb"), "wb") as f:
            f.write(b"this is not a SavedModel")
        failures = lambda: [r for r in caplog.records if "version 3" in r.getMessage() and "failed to load" in r.getMessage()]
        wait_for(failures, what="the broken version to be tried")
        for _ in range(5):
            srv.manager.poll()
        assert len(failures()) == 1
        assert served_version() == "2"
        st = call(f"{status_url}/versions/3")[1]["model_version_status"][0]
        assert st["state"] == "END" and st["status"]["error_code"] != "OK" and st["status"]["error_message"]
        assert call(f"{srv.url}/v1/models/tiny:predict", {"instances": ["很好"]})[0] == 200
        assert call(f"{srv.url}/v1/models/tiny/versions/3:predict", {"instances": ["很好"]})[0] == 404

        # A good version above the broken one is still picked up.
        copy_version(export_1, base, 4)
        wait_for(lambda: served_version() == "4", what="version 4 to be served")


def test_no_loadable_version(tmp_path):
    broken = tmp_path / "base" / "1"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"garbage")
    with pytest.raises(NoLoadableVersion, match="no version loads"):
        ModelManager.single("x", str(tmp_path / "base")).load_initial()
    import serve

    assert serve.main(["--model_base_path", str(tmp_path / "base"), "--port", "0", "--rest_api_port", "0"]) == 2


# ---- the CLI ------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,message", [
    (["--port", "1"], "one of --model_base_path or --model_config_file is required"),
    (["--model_base_path", "/nonexistent/x"], "no such directory"),
    (["--model_base_path", ".", "--port", "70000"], "port"),
    (["--model_base_path", ".", "--poll_seconds", "0"], "poll_seconds"),
    (["--model_base_path", "."], "holds no version folder"),
])
def test_cli_bad_arguments_exit_2_with_one_line(args, message):
    r = subprocess.run([sys.executable, "serve.py", *args], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_cli_serves_and_stops_cleanly_on_sigterm(served):
    srv, _ = served
    proc = subprocess.Popen([sys.executable, "serve.py", "--model_base_path", srv.manager.sources["tiny"].base_path,
                             "--model_name", "tiny", "--port", "0", "--rest_api_port", "0"], stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            if "serving model tiny version" in line:
                url = line.split(" at ")[-1].strip()
        assert url, "serve.py did not start"
        assert url.startswith("http://127.0.0.1:")
        assert call(url)[1]["model_version_status"][0]["state"] == "AVAILABLE"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
