"""Zero-size inputs through the export, in a fresh process, with oneDNN's custom ops on and off.

TensorFlow turns oneDNN's custom ops on by default on Intel CPUs and off on AMD ones, and a
zero-row batch used to fail inside the model's matmul with them on. CI may land on either
kind of machine, so every export is checked here under both settings: no texts, texts of
no tokens, ids of width 0, ids wider than sequence_length.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from data_helpers.config import load_config
from predictors.export import latest_export
from tests.conftest import MODELS, quiet

ZERO_SIZE = r"""
import json, sys
import numpy as np
import tensorflow as tf

out = {}
for name, export, seq_len in json.loads(sys.argv[1]):
    m = tf.saved_model.load(export)
    text, ids = m.signatures["serving_default"], m.signatures["predict_ids"]
    r = {}
    def shapes(res):
        return [list(res["label"].shape), list(res["probabilities"].shape)]
    r["no_texts"] = shapes(text(text=tf.constant([], tf.string)))
    blank = text(text=tf.constant(["", "   ", "\u3000"]))
    r["blank_texts"] = shapes(blank)
    r["blank_sums"] = blank["probabilities"].numpy().sum(axis=1).tolist()
    for rows, width in ((0, 0), (0, 5), (2, 0)):
        r[f"ids_{rows}x{width}"] = shapes(ids(ids=tf.zeros([rows, width], tf.int32)))
    # A width-0 row answers like a row of padding: that of an empty text.
    r["width0_equals_padding"] = bool(np.allclose(
        ids(ids=tf.zeros([1, 0], tf.int32))["probabilities"].numpy(),
        ids(ids=tf.zeros([1, 1], tf.int32))["probabilities"].numpy(), atol=1e-6))
    # Ids past sequence_length are cut as training cut them.
    row = (np.arange(seq_len + 7) % 5 + 2).astype(np.int32)[None, :]
    r["wide_equals_cut"] = bool(np.allclose(
        ids(ids=tf.constant(row))["probabilities"].numpy(),
        ids(ids=tf.constant(row[:, :seq_len]))["probabilities"].numpy(), atol=1e-6))
    out[name] = r
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def exports(trained):
    out = []
    for name in MODELS:
        cfg = load_config(trained(name)[0], log=quiet)
        out.append((name, latest_export(cfg.pb_model_path), cfg.sequence_length))
    return out


@pytest.mark.parametrize("onednn", ["0", "1"])
def test_zero_size_inputs_through_the_export(exports, tmp_path, onednn):
    script = tmp_path / "zero_size.py"
    script.write_text(ZERO_SIZE)
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn, "PYTHONPATH": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    r = subprocess.run([sys.executable, str(script), json.dumps(exports)], capture_output=True, text=True,
                       cwd=str(tmp_path), env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert sorted(got) == sorted(MODELS)
    for name, res in got.items():
        n = 3  # the tiny corpus's labels
        assert res["no_texts"] == [[0], [0, n]], name
        assert res["blank_texts"] == [[3], [3, n]], name
        assert all(abs(s - 1.0) < 1e-4 for s in res["blank_sums"]), (name, res["blank_sums"])
        assert res["ids_0x0"] == res["ids_0x5"] == [[0], [0, n]], name
        assert res["ids_2x0"] == [[2], [2, n]], name
        assert res["width0_equals_padding"], name
        assert res["wide_equals_cut"], name
