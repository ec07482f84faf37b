"""predictors.ensemble: several exports averaged in one SavedModel, and the members it refuses."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import make_lines

TEXTS = [line.split("\t")[0] for line in make_lines(12, 9)] + ["", "完全没见过的字"]


@pytest.fixture(scope="module")
def members(trained):
    return [trained(name)[1]["export"] for name in ("textcnn", "fasttext", "transformer")]


def test_the_ensemble_answers_the_mean_of_its_members(members, tmp_path):
    from predictors import Predictor
    from predictors.ensemble import main

    assert main([*members, "--out", str(tmp_path / "ens")]) == 0
    export = str(tmp_path / "ens" / "1")
    ens = Predictor.from_saved_model(export)
    parts = [Predictor.from_saved_model(m) for m in members]
    assert ens.classes_ == parts[0].classes_
    want = np.mean([p.predict_proba_array(TEXTS) for p in parts], axis=0)
    np.testing.assert_allclose(ens.predict_proba_array(TEXTS), want, atol=1e-6)
    assert ens.predict(TEXTS) == [ens.classes_[i] for i in want.argmax(axis=1)]
    assert ens.predict([]) == []
    assert ens.predict(TEXTS[0]) == ens.predict(TEXTS[:1])[0]
    # What TensorFlow Serving reads: one text signature with the usual outputs, and the members named.
    import tensorflow as tf

    assert "explain" not in tf.saved_model.load(export).signatures  # its members were exported without one
    sig = tf.saved_model.load(export).signatures["serving_default"]
    assert set(sig.structured_outputs) == {"label", "probabilities"}
    assert list(sig.structured_input_signature[1]) == ["text"]
    meta = json.load(open(os.path.join(export, "assets", "vocab.json"), encoding="utf-8"))
    assert [m["export"] for m in meta["ensemble"]] == [os.path.abspath(m) for m in members]
    # A second ensemble is the next version; the first stays as it was.
    assert main([*members[:2], "--out", str(tmp_path / "ens")]) == 0
    assert sorted(os.listdir(tmp_path / "ens")) == ["1", "2"]
    np.testing.assert_allclose(Predictor.from_saved_model(export).predict_proba_array(TEXTS[:3]), want[:3], atol=1e-6)


def _copy_with(src, dst, **changes):
    shutil.copytree(src, dst)
    path = os.path.join(dst, "assets", "vocab.json")
    meta = json.load(open(path, encoding="utf-8"))
    for key, value in changes.items():
        if key == "mode":
            meta["tokenizer"]["mode"] = value
        else:
            meta[key] = value
    json.dump(meta, open(path, "w", encoding="utf-8"))
    return str(dst)


def test_members_that_cannot_be_averaged_are_refused_in_one_line(members, tmp_path, capsys):
    from predictors.ensemble import main

    out = tmp_path / "ens"
    bad = {
        "at least two": ([members[0]], "at least two exports"),
        "twice": ([members[0], members[0]], "named twice"),
        "labels": ([members[0], _copy_with(members[1], tmp_path / "l", labels=["a", "b", "c"])], "labels"),
        "word": ([members[0], _copy_with(members[1], tmp_path / "w", mode="word")], "the same text"),
        "multi-label": ([members[0], _copy_with(members[1], tmp_path / "m", multi_label=True)], "multi-label"),
        "not an export": ([members[0], str(tmp_path)], "not an export folder"),
    }
    for case, (dirs, words) in bad.items():
        assert main([*dirs, "--out", str(out)]) == 2, case
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err and len(err.strip().splitlines()) == 1, (case, err)
    assert not out.exists() or not os.listdir(out)


def _accuracy(probs, members, y):
    return float(np.mean(np.sum([probs[i] for i in members], axis=0).argmax(axis=1) == y))


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 5), st.integers(1, 30), st.integers(2, 4), st.integers(0, 2**31 - 1))
def test_greedy_selection_starts_from_the_best_and_adds_only_what_helps(n_models, n, n_classes, seed):
    from predictors.ensemble import greedy_selection

    rng = np.random.default_rng(seed)
    probs = [rng.dirichlet(np.ones(n_classes), size=n) for _ in range(n_models)]
    y = rng.integers(0, n_classes, n)
    chosen, scores = greedy_selection(probs, y)
    assert scores == [_accuracy(probs, chosen[:k], y) for k in range(1, len(chosen) + 1)]
    assert 2 <= len(chosen) == len(set(chosen)) and set(chosen) <= set(range(n_models))
    singles = [_accuracy(probs, [i], y) for i in range(n_models)]
    assert chosen[0] == int(np.argmax(singles))  # the most accurate, the earliest on ties
    second = max(range(n_models), key=lambda i: (i != chosen[0], _accuracy(probs, [chosen[0], i], y), -i))
    assert chosen[1] == second
    for k in range(3, len(chosen) + 1):  # past two, each member raised the accuracy
        assert _accuracy(probs, chosen[:k], y) > _accuracy(probs, chosen[: k - 1], y)
    best = max(_accuracy(probs, chosen[:k], y) for k in range(1, len(chosen) + 1))
    for i in set(range(n_models)) - set(chosen):  # and it stopped when nothing else would
        assert _accuracy(probs, chosen + [i], y) <= best


def test_select_on_a_labelled_file(members, corpus, tmp_path, capsys):
    from predictors.ensemble import main

    assert main([*members, "--out", str(tmp_path / "sel"), "--select-on", str(corpus / "eval.txt")]) == 0
    meta = json.load(open(tmp_path / "sel" / "1" / "assets" / "vocab.json", encoding="utf-8"))
    chosen = [m["export"] for m in meta["ensemble"]]
    assert len(chosen) >= 2 and set(chosen) <= {os.path.abspath(m) for m in members}
    assert "selection: 1 member(s), accuracy" in capsys.readouterr().err
    ids = tmp_path / "ids.txt"  # integer labels without --class-names: one line naming the fix
    ids.write_text("很好满意\t0\n很差失望\t1\n", encoding="utf-8")
    assert main([*members, "--out", str(tmp_path / "sel"), "--select-on", str(ids)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--class-names" in err and len(err.strip().splitlines()) == 1
    assert sorted(os.listdir(tmp_path / "sel")) == ["1"]
