"""ensemble_size: one config trained with several seeds and exported as one averaging SavedModel."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from data_helpers.config import ConfigError, load_config, validate
from tests.conftest import assert_export_scores_as_trained, make_lines, quiet, tiny_config

TEXTS = [line.split("\t")[0] for line in make_lines(10, 9)] + ["完全没见过的字"]


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory, corpus):
    """(config path, report, log lines): a tiny BiLSTM-attention trained as an ensemble of two."""
    from trainers.trainer import Trainer

    root = tmp_path_factory.mktemp("ensemble")
    path = tiny_config(root, corpus, "bilstm_atten", ensemble_size=2, export_explain=True, seed=5)
    logs = []
    report = Trainer(load_config(path, log=quiet), log=logs.append, verbose=0).train()
    return path, report, logs


def test_the_export_is_the_mean_of_members_trained_with_their_own_seeds(ensemble, corpus):
    from predictors import Predictor

    path, report, logs = ensemble
    cfg = load_config(path, log=quiet)
    assert [m["seed"] for m in report["members"]] == [5, 6]
    assert report["export"] == os.path.join(cfg.pb_model_path, "1")
    members = [Predictor.from_saved_model(m["export"]) for m in report["members"]]
    for k, m in enumerate(report["members"], 1):  # each member is an ordinary run in its own folders
        assert m["export"].startswith(os.path.join(cfg.output_path, "members", str(k), "export") + os.sep)
        assert os.path.isfile(os.path.join(cfg.ckpt_model_path, "members", str(k), "train_state.json"))
    probs = [p.predict_proba_array(TEXTS) for p in members]
    assert np.abs(probs[0] - probs[1]).max() > 1e-3, "the members' seeds made no difference"
    ens = Predictor(path)  # the config's Predictor loads the ensemble: its stale-vocab check holds
    assert ens.export_dir == report["export"]
    np.testing.assert_allclose(ens.predict_proba_array(TEXTS), np.mean(probs, axis=0), atol=1e-6)
    # What the report says is what the export answers, and the report is on disk.
    assert_export_scores_as_trained(report["export"], corpus, report)
    assert json.load(open(os.path.join(cfg.output_path, "report.json"), encoding="utf-8"))["accuracy"] == report["accuracy"]
    assert os.path.getmtime(os.path.join(cfg.output_path, "report.html")) >= os.path.getmtime(os.path.join(cfg.output_path, "report.json"))
    assert report["train_seconds"] == pytest.approx(sum(m["train_seconds"] for m in report["members"]), abs=0.2)
    assert any("ensemble member 2 of 2 (seed 6)" in line for line in logs)


@pytest.mark.parametrize("method", ["integrated_gradients", "attention"])
def test_the_ensemble_explains_with_the_mean_of_its_members_scores(ensemble, method):
    from predictors import Predictor

    _, report, _ = ensemble
    ens = Predictor.from_saved_model(report["export"])
    members = [Predictor.from_saved_model(m["export"]) for m in report["members"]]
    texts = TEXTS[:4]
    got = ens.explain(texts, method=method)
    proba = ens.predict_proba_array(texts)
    for i, (text, e) in enumerate(zip(texts, got)):
        assert e["label"] == ens.classes_[int(proba[i].argmax())]  # the ensemble's label ...
        assert e["probability"] == pytest.approx(float(proba[i].max()), abs=1e-6)
        parts = [m.explain(text, label=e["label"], method=method) for m in members]  # ... explained by every member
        assert e["method"] == method
        assert [t["token"] for t in e["tokens"]] == [t["token"] for t in parts[0]["tokens"]]
        want = np.mean([[t["score"] for t in p["tokens"]] for p in parts], axis=0)
        np.testing.assert_allclose([t["score"] for t in e["tokens"]], want, atol=1e-5)
        if method == "integrated_gradients":  # the scores still add up, as closely as the members'
            assert e["ig_gap"] == pytest.approx(np.mean([p["ig_gap"] for p in parts]), abs=1e-5)
    assert ens.explain(texts[0])["method"] == "attention"  # `auto`: what every member would pick
    # Another label than the predicted one, when asked; a label it does not have is refused.
    other = [c for c in ens.classes_ if c != got[0]["label"]][0]
    assert ens.explain(texts[0], label=other, method=method)["label"] == other
    with pytest.raises(ValueError, match="not one of classes_"):
        ens.explain(texts[0], label="no-such-label")


def test_members_that_would_explain_differently_are_asked_for_integrated_gradients(ensemble, tmp_path, corpus):
    # A BiLSTM-attention's `auto` is attention, a BiLSTM's integrated gradients: the ensemble's
    # `auto` asks both for integrated gradients, so it never averages scores of two methods.
    from predictors import Predictor
    from predictors.ensemble import export_ensemble
    from trainers.trainer import Trainer

    _, report, _ = ensemble
    path = tiny_config(tmp_path, corpus, "bilstm", export_explain=True)
    bilstm = Trainer(load_config(path, log=quiet), log=quiet, verbose=0).train()["export"]
    atten = report["members"][0]["export"]
    ens = Predictor.from_saved_model(export_ensemble([atten, bilstm], str(tmp_path / "mixed"), log=quiet))
    text = TEXTS[0]
    got = ens.explain(text)
    assert got["method"] == "integrated_gradients"
    parts = [Predictor.from_saved_model(d).explain(text, label=got["label"], method="integrated_gradients") for d in (atten, bilstm)]
    np.testing.assert_allclose([t["score"] for t in got["tokens"]],
                               np.mean([[t["score"] for t in p["tokens"]] for p in parts], axis=0), atol=1e-5)
    with pytest.raises(Exception, match="has no attention"):  # asked for attention, the BiLSTM says it has none
        ens.explain(text, method="attention")


def test_a_second_run_reuses_the_completed_members_and_exports_the_next_version(ensemble):
    from predictors import Predictor
    from trainers.trainer import Trainer

    path, first, _ = ensemble
    logs = []
    report = Trainer(load_config(path, log=quiet), log=logs.append, verbose=0).train()
    assert sum("completed before with these settings and data" in line for line in logs) == 2
    assert not any(line.startswith("training bilstm_atten:") for line in logs)  # nothing was trained again
    assert [m["export"] for m in report["members"]] == [m["export"] for m in first["members"]]
    assert report["export"].endswith(os.sep + "2") and os.path.isdir(first["export"])
    np.testing.assert_allclose(Predictor.from_saved_model(report["export"]).predict_proba_array(TEXTS),
                               Predictor.from_saved_model(first["export"]).predict_proba_array(TEXTS), atol=1e-6)


@pytest.mark.parametrize("extra, message", [
    ({"ensemble_size": 0}, "key 'ensemble_size' must be >= 1"),
    ({"ensemble_size": 2, "multi_label": True}, "key 'ensemble_size' > 1 is for single-label runs"),
])
def test_bad_ensemble_settings_are_refused(extra, message):
    with pytest.raises(ConfigError, match=message):
        validate({"model_name": "textcnn", "train_data": "x", "eval_data": "y", **extra})


def test_wrong_examples_groups_the_misclassified_texts_by_true_and_predicted_label():
    from trainers.ensemble import wrong_examples

    classes = ["a", "b", "c"]
    probs = np.eye(3)[[0, 1, 1, 1, 1, 2, 0]]  # predicted: a b b b b c a
    texts = [f"t{i}" for i in range(7)]
    labels = ["a", "a", "a", "a", "a", "c", "b"]
    assert wrong_examples(texts, labels, probs, classes, each=3) == {("a", "b"): ["t1", "t2", "t3"], ("b", "a"): ["t6"]}
    assert wrong_examples(texts, labels, probs, classes, limit=3) == {("a", "b"): ["t1", "t2"]}
