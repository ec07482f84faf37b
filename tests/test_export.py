"""The SavedModel export: layout, assets, signatures, versions, and a reload with plain
TensorFlow in a new process that answers exactly as the Predictor does."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data_helpers.config import load_config
from predictors import Predictor
from predictors.export import export_model, export_versions, latest_export
from tests.conftest import quiet

ODD_TEXTS = ["", "   ", "很好" * 5000, "😀😀👍", "This is great, 推荐!", "龘靐齉", "\u3000好\t评\n"]


def test_layout_assets_and_signatures(trained):
    path, _ = trained("textcnn")
    cfg = load_config(path, log=quiet)
    export = latest_export(cfg.pb_model_path)
    assert os.path.basename(export) == "1"
    assets = sorted(os.listdir(os.path.join(export, "assets")))
    assert assets == ["labels.txt", "vocab.json", "vocab.txt"]
    meta = json.load(open(os.path.join(export, "assets", "vocab.json"), encoding="utf-8"))
    assert meta["labels"] == ["中性", "好评", "差评"] and meta["tokenizer"]["mode"] == "char"
    shown = subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--dir", export, "--all"],
        capture_output=True, text=True,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    for needle in ("signature_def['serving_default']", "signature_def['predict_ids']", "outputs['probabilities']", "outputs['label']"):
        assert needle in shown.stdout


PLAIN_TF = r"""
import json, sys
import tensorflow as tf
m = tf.saved_model.load(sys.argv[1])
texts = json.loads(sys.stdin.read())
out = m.signatures["serving_default"](text=tf.constant(texts))
ids = m.signatures["predict_ids"](ids=tf.constant([[2, 3, 0, 0]], tf.int32))
print(json.dumps({"labels": [b.decode() for b in out["label"].numpy()],
                  "probs": out["probabilities"].numpy().tolist(),
                  "ids_probs": ids["probabilities"].numpy().tolist(),
                  "modules": sorted(k for k in sys.modules if k.split(".")[0] in ("data_helpers", "models", "predictors", "trainers"))}))
"""


@pytest.mark.parametrize("name", ["textcnn", "transformer"])
def test_plain_tensorflow_in_a_new_process_matches_predictor(trained, tmp_path, name):
    path, _ = trained(name)
    p = Predictor(path)
    texts = ODD_TEXTS + ["这家店的服务很好", "物流很差，很失望", "一般般吧"]
    script = tmp_path / "plain.py"
    script.write_text(PLAIN_TF)
    r = subprocess.run([sys.executable, str(script), p.export_dir], input=json.dumps(texts), capture_output=True,
                       text=True, cwd=str(tmp_path), env={**os.environ, "PYTHONPATH": ""})
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["modules"] == []  # no project code was needed
    assert got["labels"] == p.predict(texts)
    np.testing.assert_allclose(np.array(got["probs"]), p.predict_proba_array(texts), atol=1e-5)
    assert np.array(got["ids_probs"]).shape == (1, 3)


def test_versions_count_up_and_old_ones_are_pruned(trained, tmp_path):
    from data_helpers.vocab import VocabArtifacts

    path, _ = trained("textcnn")
    cfg = load_config(path, log=quiet)
    model = _model_from(cfg)
    art = VocabArtifacts.load(cfg.output_path)
    base = str(tmp_path / "pb")
    crashed = os.path.join(base, ".tmp-export-crashed")
    os.makedirs(crashed)
    os.utime(crashed, (0, 0))  # left long ago by a crash: no live process holds it
    # A live export of another process: its staging folder is locked and must survive.
    live = os.path.join(base, ".tmp-export-live")
    os.makedirs(live)
    fd = os.open(os.path.join(live, ".lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        for _ in range(4):
            export_model(model, art, base, keep=2, log=quiet, explain=False)
        assert export_versions(base) == [3, 4]
        assert sorted(os.listdir(base)) == [".tmp-export-live", "3", "4"]  # the crashed export's leftovers are gone
    finally:
        os.close(fd)
    export_model(model, art, base, keep=2, log=quiet, explain=False)  # released: now it is a leftover
    assert sorted(os.listdir(base)) == ["4", "5"]


def _model_from(cfg):
    from data_helpers.vocab import VocabArtifacts
    from models import build_model

    art = VocabArtifacts.load(cfg.output_path)
    model = build_model(cfg, len(art.tokens), len(art.labels))
    model.load_weights(os.path.join(cfg.ckpt_model_path, "best.weights.h5"))
    return model


def test_graph_uses_stock_tensorflow_ops_only(trained):
    """No py_function and no custom op: TensorFlow Serving can run it as it is."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import op_def_registry

    for name in ("textcnn", "bilstm"):
        path, _ = trained(name)
        export = latest_export(load_config(path, log=quiet).pb_model_path)
        sm = saved_model_pb2.SavedModel()
        sm.ParseFromString(open(os.path.join(export, "saved_model.pb"), "rb").read())
        graph = sm.meta_graphs[0].graph_def
        ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
        ops -= {f.signature.name for f in graph.library.function}  # calls of the graph's own functions
        assert not ops & {"PyFunc", "PyFuncStateless", "EagerPyFunc"}
        assert all(op_def_registry.get(op) is not None for op in ops), sorted(o for o in ops if op_def_registry.get(o) is None)
        assert "BlockLSTM" in ops or name != "bilstm"


def test_predict_ids_refuses_ids_outside_the_vocabulary_in_the_graph(trained):
    """So stock TensorFlow Serving answers such a request with INVALID_ARGUMENT too, naming the input."""
    import tensorflow as tf

    path, _ = trained("textcnn")
    export = latest_export(load_config(path, log=quiet).pb_model_path)
    fn = tf.saved_model.load(export).signatures["predict_ids"]
    n = len(json.load(open(os.path.join(export, "assets", "vocab.json"), encoding="utf-8"))["tokens"])
    assert fn(ids=tf.constant([[2, n - 1, 0]], tf.int32))["probabilities"].shape == (1, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"ids: token ids must be < {n}"):
        fn(ids=tf.constant([[2, n]], tf.int32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="ids: token ids must be >= 0"):
        fn(ids=tf.constant([[-1, 2]], tf.int32))
