"""Explanations: a planted-keyword task every model and method must get right, what the scores
promise (attention sums to 1 over real tokens, integrated gradients add up to f(text) -
f(baseline)), spans into the original text, and the same scores from the Predictor, a new
process with plain tf.saved_model.load, and the REST server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import KEYWORDS, MODELS

IG_TOLERANCE = 0.05  # |f(text) - f(baseline) - sum(scores)|, in probability
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def explained(planted_trained):
    """model_name -> Predictor of a tiny model trained on the planted task, exported with explain."""
    from predictors import Predictor

    cache = {}

    def get(model_name):
        if model_name not in cache:
            cache[model_name] = Predictor(planted_trained(model_name)[0])
        return cache[model_name]

    return get


def eval_texts(planted) -> list[tuple[str, str]]:
    lines = (planted / "eval.txt").read_text(encoding="utf-8").splitlines()
    return [tuple(line.split("\t")) for line in lines]


METHODS = [(m, "integrated_gradients") for m in MODELS] + [("bilstm_atten", "attention"), ("transformer", "attention")]


@pytest.mark.parametrize("model_name,method", METHODS, ids=[f"{m}-{k}" for m, k in METHODS])
def test_the_planted_keyword_scores_highest(explained, planted, model_name, method):
    predictor = explained(model_name)
    data = eval_texts(planted)
    texts = [t for t, _ in data]
    results = predictor.explain(texts, method=method)
    hits, gaps = 0, []
    for text, r in zip(texts, results):
        assert r["method"] == method
        tokens = r["tokens"]
        for t in tokens:  # spans point into the original text
            assert t["start"] >= 0 and text[t["start"]:t["end"]].lower() == t["token"]
        scores = np.array([t["score"] for t in tokens])
        if method == "attention":
            assert np.all(scores >= 0) and abs(scores.sum() - 1.0) < 1e-4
        else:
            gaps.append(abs(r["ig_gap"]))
        best = tokens[int(np.argmax(scores))]["token"]
        hits += best in KEYWORDS
    print(f"{model_name}/{method}: keyword first in {hits}/{len(texts)}")
    assert hits >= 0.9 * len(texts), f"{model_name}/{method}: the keyword scored highest in {hits} of {len(texts)}"
    # The scores add up to f(text) - f(baseline), up to the 64-step midpoint rule's error.
    assert max(gaps, default=0) < IG_TOLERANCE, f"{model_name}: integrated gradients gap up to {max(gaps):.4f}"


def test_explain_a_given_label_and_refuse_bad_requests(explained):
    import tensorflow as tf

    predictor = explained("textcnn")
    text = "的是 red 在不了"
    r = predictor.explain(text)
    assert r["label"] == predictor.predict(text) == "红组" and r["method"] == "integrated_gradients"
    assert abs(r["probability"] - predictor.predict_proba(text)["红组"]) < 1e-5
    other = predictor.explain(text, label="蓝组")
    assert other["label"] == "蓝组" and abs(other["probability"] - predictor.predict_proba(text)["蓝组"]) < 1e-5
    assert [t["token"] for t in other["tokens"]] == [t["token"] for t in r["tokens"]]
    assert predictor.explain([]) == []
    with pytest.raises(ValueError, match="label"):
        predictor.explain(text, label="nope")
    with pytest.raises(ValueError, match="method"):
        predictor.explain(text, method="lime")
    with pytest.raises(tf.errors.InvalidArgumentError, match="has no attention"):
        predictor.explain(text, method="attention")
    with pytest.raises(ValueError, match="attention_maps"):
        predictor.explain(text, attention_maps=True)


def test_transformer_maps_and_the_same_scores_in_a_new_process_and_over_rest(explained, planted):
    from serving.server import BackgroundServer
    from tests.test_server import call

    predictor = explained("transformer")
    texts = [t for t, _ in eval_texts(planted)[:4]] + [""]
    mine = predictor.explain(texts, attention_maps=True)
    r = mine[0]
    n = len(r["tokens"])
    maps = r["attention_maps"]
    assert maps.shape[2:] == (n, n) and np.allclose(maps.sum(-1), 1.0, atol=1e-5)
    assert mine[-1]["tokens"] == []
    script = (
        "import json, sys, tensorflow as tf\n"
        "fn = tf.saved_model.load(sys.argv[1]).signatures['explain']\n"
        "texts = json.loads(sys.argv[2])\n"
        "out = fn(text=tf.constant(texts), method=tf.constant(['auto', 'integrated_gradients'] * 2 + ['auto']),\n"
        "         label=tf.constant([''] * len(texts)))\n"
        "print(json.dumps({k: v.numpy().tolist() for k, v in out.items() if v.dtype != tf.string}))\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", script, predictor.export_dir, json.dumps(texts)], capture_output=True,
                          text=True, timeout=120, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    plain = json.loads(proc.stdout.strip().splitlines()[-1])
    both = [predictor.explain(t, method=m) for t, m in zip(texts, ["auto", "integrated_gradients"] * 2 + ["auto"])]
    for i, r in enumerate(both):
        np.testing.assert_allclose([t["score"] for t in r["tokens"]], plain["scores"][i][: len(r["tokens"])], atol=1e-5)
        assert abs(r["probability"] - plain["probability"][i]) < 1e-5
    base = os.path.dirname(predictor.export_dir)
    with BackgroundServer(base, "planted", poll_seconds=30) as srv:
        status, out = call(f"{srv.url}/v1/models/planted:predict", {
            "signature_name": "explain",
            "instances": [{"text": texts[0], "method": "integrated_gradients", "label": ""}]})
        assert status == 200, out
        got = out["predictions"][0]
        assert got["label"] == predictor.predict(texts[0]) and got["method"] == "integrated_gradients"
        np.testing.assert_allclose(got["scores"][: len(mine[0]["tokens"])],
                                   [t["score"] for t in predictor.explain(texts[0], method="integrated_gradients")["tokens"]],
                                   atol=1e-5)


def test_binary_heads_explain_both_labels():
    from types import SimpleNamespace

    import tensorflow as tf

    from models import textcnn
    from models.explain import Explainer

    cfg = SimpleNamespace(embedding_size=8, ngram_buckets=20, ngram_max=2, num_filters=4, filter_sizes=[2, 3],
                          keep_prob=1.0, l2_reg_lambda=0.0, multi_label=False)
    explainer = Explainer(textcnn.build(cfg, 20, 1), binary=True)  # one sigmoid: P(label 1)
    ids = tf.constant([[3, 4, 5, 0], [6, 7, 0, 0]], tf.int32)
    f = {}
    for target in (0, 1):
        scores, f_text, f_base = explainer.integrated_gradients(ids, tf.constant([target, target]), steps=64)
        np.testing.assert_allclose(tf.reduce_sum(scores, 1), f_text - f_base, atol=1e-3)
        assert np.all(scores.numpy()[ids.numpy() == 0] == 0)
        f[target] = f_text.numpy()
    np.testing.assert_allclose(f[0] + f[1], 1.0, atol=1e-6)


def test_word_spans_map_back_to_the_raw_text():
    from data_helpers.tokenizer import Tokenizer

    tok = Tokenizer("word")
    text = "这家店的服务很好，  iPhone12 真不错！"
    (segmented, where), = tok.segment_with_offsets([text])
    assert segmented == tok.segment([text])[0]
    for i, c in enumerate(segmented):
        assert where[i] == -1 and c == " " or text[where[i]] == c


@pytest.mark.parametrize("attention,num_outputs", [("per_label", 3), ("per_label", 1), ("shared", 3)])
def test_bilstm_atten_attention_for_each_label(attention, num_outputs):
    """Per-label attention gives the asked-for label's weights (the likeliest label's by default);
    a binary model's one attention and the shared one are the same whatever the label."""
    from data_helpers.config import validate
    from models import build_model
    from models.explain import Explainer

    cfg = validate({"train_data": "x", "eval_data": "y", "model_name": "bilstm_atten", "embedding_size": 8,
                    "hidden_sizes": [4], "attention": attention})
    model = build_model(cfg, vocab_size=30, num_outputs=num_outputs)
    ex = Explainer(model, binary=num_outputs == 1)
    ids = np.array([[5, 6, 7, 8, 0, 0], [9, 10, 0, 0, 0, 0]], np.int32)
    per_label = [ex.attention(ids, np.array([c, c], np.int32)).numpy() for c in range(max(num_outputs, 2))]
    for w in per_label:
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(w[ids == 0], 0.0)
    if attention == "per_label" and num_outputs > 1:
        assert np.abs(per_label[0] - per_label[1]).max() > 1e-4
        likeliest = model(ids).numpy().argmax(axis=1)
        np.testing.assert_allclose(ex.attention(ids).numpy(), np.stack([per_label[c][i] for i, c in enumerate(likeliest)]))
    else:
        np.testing.assert_allclose(per_label[0], per_label[1])
