"""The Predictor: one text or many, probabilities, top-k, odd inputs, type errors, stale configs."""

from __future__ import annotations

import json

import pytest

from data_helpers.vocab import StaleVocabError
from predictors import Predictor
from tests.conftest import tiny_config
from tests.test_export import ODD_TEXTS


@pytest.fixture(scope="module")
def predictor(trained):
    return Predictor(trained("textcnn")[0])


def test_single_text_and_list(predictor):
    assert predictor.classes_ == ["中性", "好评", "差评"]
    assert predictor.predict("这家店的服务很好，满意") == "好评"
    assert predictor.predict(["物流很差，很失望", "这本书很好，推荐"]) == ["差评", "好评"]
    assert predictor.predict([]) == []


def test_predict_proba_and_top_k(predictor):
    proba = predictor.predict_proba("物流很差，很失望")
    assert set(proba) == set(predictor.classes_)
    assert abs(sum(proba.values()) - 1) < 1e-5 and max(proba, key=proba.get) == "差评"
    top = predictor.top_k("物流很差，很失望", k=2)
    assert len(top) == 2 and top[0] == ("差评", proba["差评"]) and top[0][1] >= top[1][1]
    assert len(predictor.top_k(["a", "b"], k=10)) == 2 and len(predictor.top_k("a", k=10)) == 3


def test_odd_texts_get_answers(predictor):
    labels = predictor.predict(ODD_TEXTS + ["\ud800 lone surrogate"])
    assert len(labels) == len(ODD_TEXTS) + 1 and set(labels) <= set(predictor.classes_)


@pytest.mark.parametrize("bad", [None, 3, 2.5, b"bytes", ["ok", None], ["ok", 1]])
def test_non_strings_raise_type_error(predictor, bad):
    with pytest.raises(TypeError, match="expected"):
        predictor.predict(bad)


def test_from_saved_model_alone(predictor):
    other = Predictor.from_saved_model(predictor.export_dir)
    assert other.predict_proba("一般般") == predictor.predict_proba("一般般")
    with pytest.raises(FileNotFoundError, match="no saved_model.pb"):
        Predictor.from_saved_model(predictor.export_dir + "/assets")


def test_changed_config_is_refused(trained, tmp_path):
    path, _ = trained("textcnn")
    cfg = json.load(open(path, encoding="utf-8"))
    cfg["tokenizer"] = "word"
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(cfg, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(StaleVocabError, match=r"tokenizer settings|mode"):
        Predictor(str(changed))
    with pytest.raises(StaleVocabError, match="sequence_length"):
        Predictor(path, ["sequence_length=7"])


def test_no_export_yet(tmp_path, corpus):
    with pytest.raises(FileNotFoundError, match="train first with `python train.py --config_path="):
        Predictor(tiny_config(tmp_path, corpus))


def test_one_sentence_is_one_call_of_the_exported_graph(predictor, monkeypatch):
    """The Predictor calls the export's signature once per sentence and never Keras's
    model.predict (about 45 ms a call); its speed is measured in bench/, not here."""
    import keras

    def no_predict(*args, **kwargs):
        raise AssertionError("Predictor must not call keras.Model.predict")

    monkeypatch.setattr(keras.Model, "predict", no_predict)
    calls = []
    serve = predictor._serve
    monkeypatch.setattr(predictor, "_serve", lambda **kw: calls.append(kw["text"].shape) or serve(**kw))
    assert predictor.predict("这家店的服务很好") in predictor.classes_
    assert [list(shape) for shape in calls] == [[1]]
