"""Config loading: defaults, overrides, and one clear line for every kind of mistake."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from data_helpers.config import SCHEMA, ConfigError, load_config, parse_override
from tests.conftest import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(tmp_path, text, name="c.json"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


def test_defaults_filled_and_model_paths_templated(tmp_path, corpus):
    path = tiny_config(tmp_path, corpus, "bilstm")
    raw = json.load(open(path))
    for k in ("output_path", "ckpt_model_path", "pb_model_path", "epochs"):
        raw.pop(k)
    path = write(tmp_path, json.dumps(raw))
    cfg = load_config(path)
    assert cfg.epochs == SCHEMA["epochs"].default
    assert cfg.output_path == "outputs/bilstm"
    assert cfg.pb_model_path == "pb_model/bilstm"
    assert cfg.tokenizer == "char" and cfg.num_classes is None


def test_example_configs_are_valid():
    for name in ("textcnn", "bilstm", "bilstm_atten", "transformer"):
        cfg = load_config(os.path.join(REPO, "config", f"{name}_config.json"), check_files=False)
        assert cfg.model_name == name


def test_yaml_config_with_same_keys(tmp_path, corpus):
    raw = json.load(open(tiny_config(tmp_path, corpus)))
    import yaml

    path = write(tmp_path, yaml.safe_dump(raw, allow_unicode=True), "c.yaml")
    assert load_config(path).to_dict() == load_config(tiny_config(tmp_path, corpus)).to_dict()


def test_set_overrides_parse_json_then_string(tmp_path, corpus):
    cfg = load_config(tiny_config(tmp_path, corpus), ["epochs=1", "filter_sizes=[2, 5]", "tokenizer=word"])
    assert cfg.epochs == 1 and cfg.filter_sizes == [2, 5] and cfg.tokenizer == "word"
    assert parse_override("learning_rate=1e-4") == ("learning_rate", 1e-4)
    assert parse_override("model_name=bilstm") == ("model_name", "bilstm")
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override("epochs")


@pytest.mark.parametrize(
    "change, pattern",
    [
        ({"learnin_rate": 0.1}, r"unknown key 'learnin_rate' \(did you mean 'learning_rate'\?\)"),
        ({"epochs": "ten"}, r"key 'epochs' must be an integer, got \"ten\""),
        ({"epochs": True}, r"key 'epochs' must be an integer"),
        ({"epochs": 0}, r"key 'epochs' must be >= 1"),
        ({"embedding_size": -4}, r"key 'embedding_size' must be >= 1"),
        ({"keep_prob": 1.5}, r"key 'keep_prob' must be in \(0, 1\]"),
        ({"keep_prob": 0}, r"key 'keep_prob' must be in \(0, 1\]"),
        ({"sequence_length": 0}, r"key 'sequence_length' must be >= 1"),
        ({"filter_sizes": []}, r"key 'filter_sizes' must be a non-empty list"),
        ({"filter_sizes": [2, "3"]}, r"key 'filter_sizes' must be a list of integers"),
        ({"model_name": "cnn"}, r"key 'model_name' must be one of textcnn, bilstm, bilstm_atten, transformer, fasttext"),
        ({"optimization": "adagrad"}, r"key 'optimization' must be one of adam, adamw, lazy_adam, lazy_adamw, sgd, rmsprop"),
        ({"model_name": "transformer", "embedding_size": 10, "num_heads": 4}, r"'num_heads' \(4\) must divide embedding_size \(10\)"),
        ({"train_data": "/nonexistent/train.txt"}, r"key 'train_data': file not found: /nonexistent/train.txt"),
        ({"model_name": None}, r"key 'model_name' is required"),
    ],
)
def test_bad_values_name_the_key(tmp_path, corpus, change, pattern):
    raw = json.load(open(tiny_config(tmp_path, corpus)))
    raw.update(change)
    path = write(tmp_path, json.dumps(raw))
    with pytest.raises(ConfigError, match=pattern) as e:
        load_config(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(path)


def test_invalid_json_gives_line_and_column(tmp_path):
    path = write(tmp_path, '{\n  "epochs": 3,\n  "batch_size": 64\n  "x": 1\n}')
    with pytest.raises(ConfigError, match=re.escape(path) + r":4:3: invalid JSON"):
        load_config(path)


def test_invalid_yaml_gives_line_and_column(tmp_path):
    path = write(tmp_path, "epochs: 3\nbatch_size: [64\nmodel_name: x\n", "c.yml")
    with pytest.raises(ConfigError, match=re.escape(path) + r":\d+:\d+: invalid YAML"):
        load_config(path)


def test_missing_config_and_output_path_that_is_a_file(tmp_path, corpus):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "nope.json"))
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ConfigError, match=r"key 'output_path': .* is a file, expected a folder"):
        load_config(tiny_config(tmp_path, corpus, output_path=str(afile)))


def test_unknown_key_in_set_is_named(tmp_path, corpus):
    with pytest.raises(ConfigError, match=r"--set epoch=2: unknown key 'epoch' \(did you mean 'epochs'\?\)"):
        load_config(tiny_config(tmp_path, corpus), ["epoch=2"])


def run_train(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *args], capture_output=True, text=True, cwd=REPO)


def test_cli_bad_config_exits_2_with_one_line(tmp_path, corpus):
    raw = json.load(open(tiny_config(tmp_path, corpus)))
    raw["batch_sise"] = 3
    path = write(tmp_path, json.dumps(raw))
    r = run_train(f"--config_path={path}")
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: {path}: unknown key 'batch_sise' (did you mean 'batch_size'?)"
    assert "Traceback" not in r.stderr


def test_cli_bad_data_exits_2_and_keeps_saved_files(tmp_path, corpus):
    bad = tmp_path / "bad.txt"
    bad.write_text("no separator here\n" * 10, encoding="utf-8")
    out = tmp_path / "outputs"
    out.mkdir()
    (out / "vocab.json").write_text("precious")
    r = run_train(f"--config_path={tiny_config(tmp_path, corpus, train_data=str(bad))}")
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ") and f"{bad}:1: no separator" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert (out / "vocab.json").read_text() == "precious"


def test_readme_documents_every_key():
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    missing = [k for k in SCHEMA if f"`{k}`" not in readme]
    assert not missing, f"README lacks keys: {missing}"
