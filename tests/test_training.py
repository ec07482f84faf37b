"""Tiny end-to-end runs: each model trains, reports, checkpoints and exports; runs are repeatable."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from data_helpers.config import load_config
from tests.conftest import MODELS, assert_export_scores_as_trained, quiet, tiny_config
from trainers.trainer import Trainer


@pytest.mark.parametrize("name", MODELS)
def test_tiny_training_run(trained, name):
    path, report = trained(name)
    cfg = load_config(path, log=quiet)
    assert report["model_name"] == name
    assert 0.0 <= report["accuracy"] <= 1.0 and report["examples"] == 60
    assert set(report["per_class"]) == {"中性", "好评", "差评"}
    assert np.array(report["confusion_matrix"]["rows_true_cols_predicted"]).sum() == 60
    saved = json.load(open(os.path.join(cfg.output_path, "report.json"), encoding="utf-8"))
    assert saved["accuracy"] == report["accuracy"] and saved["history"]
    assert os.path.exists(os.path.join(cfg.ckpt_model_path, "best.weights.h5"))
    assert any(f.startswith("ckpt-") for f in os.listdir(cfg.ckpt_model_path))
    assert os.path.isfile(os.path.join(cfg.pb_model_path, "1", "saved_model.pb"))
    assert os.path.isdir(os.path.join(cfg.output_path, "logs"))


def test_textcnn_learns_the_tiny_task(trained):
    _, report = trained("textcnn")
    assert report["accuracy"] >= 0.9, report["accuracy"]


def test_same_config_twice_gives_same_metrics(tmp_path, corpus, trained):
    path, first = trained("textcnn")
    again = Trainer(load_config(tiny_config(tmp_path, corpus, "textcnn"), log=quiet), log=quiet, verbose=0).train()
    assert again["accuracy"] == first["accuracy"]
    assert [h["loss"] for h in again["history"]] == [h["loss"] for h in first["history"]]


def test_binary_word_model_with_word_vectors(tmp_path, corpus):
    train = tmp_path / "train.txt"
    lines = [l for l in (corpus / "train.txt").read_text(encoding="utf-8").splitlines() if not l.endswith("中性")]
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    evals = tmp_path / "eval.txt"
    evals.write_text("\n".join(lines[:30]) + "\n", encoding="utf-8")
    vectors = tmp_path / "vec.txt"
    vectors.write_text("3 4\n满意 1 0 0 0\n失望 0 1 0 0\n不在词表 0 0 1 0\n", encoding="utf-8")
    logs = []
    path = tiny_config(tmp_path, corpus, "textcnn", tokenizer="word", embedding_size=4, num_classes=1, epochs=1,
                       train_data=str(train), eval_data=str(evals), word_vectors_path=str(vectors))
    report = Trainer(load_config(path, log=quiet), log=logs.append, verbose=0).train()
    assert any("word vectors: 2 of" in m for m in logs)
    assert set(report["per_class"]) == {"好评", "差评"}


def test_hashed_ngrams_with_lazy_adamw_learn_and_export(tmp_path, corpus):
    path = tiny_config(tmp_path, corpus, "textcnn", ngram_buckets=503, ngram_max=3, optimization="lazy_adamw")
    report = Trainer(load_config(path, log=quiet), log=quiet, verbose=0).train()
    assert report["accuracy"] >= 0.9, report["accuracy"]
    # The export carries the n-gram table and hash: served answers score as the trainer's report did.
    assert_export_scores_as_trained(tmp_path / "pb" / "1", corpus, report)
