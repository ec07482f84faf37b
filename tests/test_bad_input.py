"""Bad input across the pipeline: one clear line, exit status 2 from a command, nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from data_helpers.config import ConfigError, load_config
from data_helpers.dataset import load_examples
from data_helpers.reader import DataError
from tests.conftest import quiet, tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(script, *args, stdin=None):
    return subprocess.run([sys.executable, os.path.join(REPO, script), *args], input=stdin, capture_output=True,
                          text=True, cwd=REPO, timeout=300)


def one_error_line(r):
    lines = [l for l in r.stderr.splitlines() if l.startswith("error: ")]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    return lines[0]


def test_num_classes_that_contradicts_the_labels(tmp_path, corpus):
    cfg = load_config(tiny_config(tmp_path, corpus, num_classes=5), log=quiet)
    with pytest.raises(ConfigError, match=r"key 'num_classes' is 5 but .*train.txt has 3 labels .*set num_classes to 3 or null"):
        load_examples(cfg, log=quiet)
    cfg = load_config(tiny_config(tmp_path, corpus, num_classes=1), log=quiet)
    with pytest.raises(ConfigError, match=r"num_classes' is 1 \(binary, sigmoid\) but .* has 3 labels"):
        load_examples(cfg, log=quiet)


def test_training_file_with_one_class(tmp_path, corpus):
    one = tmp_path / "one.txt"
    one.write_text("好吃\t好评\n很好\t好评\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"one.txt: only one class \('好评'\)"):
        load_examples(load_config(tiny_config(tmp_path, corpus, train_data=str(one)), log=quiet), log=quiet)


def test_eval_label_never_seen_in_training(tmp_path, corpus):
    ev = tmp_path / "ev.txt"
    ev.write_text("好吃\t好评\n一般\t体育\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"ev.txt: label '体育' never occurs in .*train.txt \(1 unseen label\(s\), 1 eval examples\)"):
        load_examples(load_config(tiny_config(tmp_path, corpus, eval_data=str(ev)), log=quiet), log=quiet)


def test_unwritable_output_folder_is_named_and_exit_2(tmp_path, corpus):
    path = tiny_config(tmp_path, corpus, output_path="/proc/textcls-cannot-write-here")
    line = one_error_line(run("train.py", f"--config_path={path}"))
    assert "/proc/textcls-cannot-write-here" in line


def test_predict_cli(trained):
    path, _ = trained("textcnn")
    r = run("predict.py", f"--config_path={path}", "这家店的服务很好，满意", "")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(l) for l in r.stdout.splitlines()]
    assert [row["text"] for row in rows] == ["这家店的服务很好，满意", ""]
    assert rows[0]["label"] == "好评" and abs(sum(rows[0]["probabilities"].values()) - 1) < 1e-5
    r = run("predict.py", f"--config_path={path}", "--top_k", "1", stdin="物流很差，很失望\n")
    assert json.loads(r.stdout)["top_k"][0][0] == "差评"


def test_predict_cli_errors(tmp_path, corpus):
    line = one_error_line(run("predict.py", f"--config_path={tiny_config(tmp_path, corpus)}", "x"))
    assert "no exported model under" in line and "python train.py --config_path=" in line
    line = one_error_line(run("predict.py", f"--export_dir={tmp_path}", "x"))
    assert "no saved_model.pb" in line
    line = one_error_line(run("predict.py", f"--config_path={tmp_path}/missing.json", "x"))
    assert "config file not found" in line


def test_predictor_takes_a_one_megabyte_string(trained):
    from predictors import Predictor

    p = Predictor(trained("textcnn")[0])
    assert p.predict("好" * (1 << 20)) in p.classes_
