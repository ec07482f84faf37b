"""Multi-label classification end to end, and the losses for rare classes.

A tiny multi-label run learns; the thresholds tuned on eval are the ones the export applies
(the Predictor, ``tf.saved_model.load`` in a new process and the server agree label for
label); ``at_least_one``; every model builds a sigmoid head; class weights change the loss as
computed by hand; focal loss equals Keras's; the graph parser reads label lists as the Python
reader does; every new data error has its message.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from data_helpers.config import ConfigError, load_config
from data_helpers.reader import DataError, read_class_names, read_examples
from tests.conftest import quiet, tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Four topics, each with its own words; a text mentions one to three topics, or none.
TOPICS = {
    "价格": ["便宜", "贵了", "优惠", "价钱"],
    "油耗": ["费油", "省油", "油耗", "加油"],
    "空间": ["宽敞", "后排", "后备箱", "拥挤"],
    "外观": ["好看", "颜值", "造型", "大气"],
}
FILLER = ["这车", "开了", "一年", "感觉", "还是", "朋友说", "总体", "今天"]


def make_multilabel_lines(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    names = list(TOPICS)
    lines = []
    for i in range(n):
        k = [0, 1, 1, 1, 2, 2, 3][i % 7]
        on = sorted(rng.sample(names, k), key=names.index)
        words = [rng.choice(FILLER)] + [w for t in on for w in rng.sample(TOPICS[t], 2)] + [rng.choice(FILLER)]
        rng.shuffle(words)
        lines.append("".join(words) + "\t" + ",".join(on))
    return lines


@pytest.fixture(scope="module")
def ml_corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("ml_corpus")
    (d / "train.txt").write_text("\n".join(make_multilabel_lines(350, 1)) + "\n", encoding="utf-8")
    (d / "eval.txt").write_text("\n".join(make_multilabel_lines(120, 2)) + "\n", encoding="utf-8")
    return d


def ml_config(root, corpus, **overrides) -> str:
    settings = dict(multi_label=True, epochs=4, eval_every=10, checkpoint_every=10, learning_rate=0.02)
    return tiny_config(root, corpus, **{**settings, **overrides})


@pytest.fixture(scope="module")
def ml_trained(tmp_path_factory, ml_corpus):
    from trainers.trainer import Trainer

    path = ml_config(tmp_path_factory.mktemp("ml"), ml_corpus, tune_thresholds=True)
    report = Trainer(load_config(path, log=quiet), log=quiet, verbose=0).train()
    return path, report


def true_sets(path) -> list[tuple]:
    return read_examples(path, label_sep=",", log=quiet).labels


# ---- training and the export ------------------------------------------------------------------
def test_a_multilabel_run_learns_and_reports_sklearn_metrics(ml_trained, ml_corpus):
    _, report = ml_trained
    assert report["multi_label"] and report["select_by"] == "micro_f1"
    # Chance level here is about 0.4 (labels on ~30% of the time); a learnt model is far above it.
    assert report["micro_f1"] > 0.8 and report["macro_f1"] > 0.75, report["table"] if "table" in report else report
    for key in ("weighted_f1", "subset_accuracy", "hamming_loss", "labels_per_text_predicted", "labels_per_text_true"):
        assert key in report
    assert set(report["per_class"]) == set(TOPICS) and set(report["thresholds"]) == set(TOPICS)
    truth = true_sets(ml_corpus / "eval.txt")
    assert report["labels_per_text_true"] == pytest.approx(np.mean([len(t) for t in truth]))
    assert report["examples"] == len(truth)
    # The best step's metrics are those in the history, and the history chose by micro-F1.
    best = max(report["history"], key=lambda h: h["micro_f1"])
    assert report["micro_f1"] == pytest.approx(best["micro_f1"]) and report["best_step"] == best["step"]


def test_tuned_thresholds_are_the_ones_every_consumer_applies(ml_trained, ml_corpus, tmp_path):
    from predictors import Predictor
    from serving.server import BackgroundServer
    from tests.test_server import call

    path, report = ml_trained
    cfg = load_config(path, log=quiet)
    p = Predictor(path)
    assert p.multi_label and p.classes_ == sorted(TOPICS)
    assert p.thresholds_ == pytest.approx(report["thresholds"])
    assert any(abs(t - 0.5) > 1e-6 for t in p.thresholds_.values()), "tuning kept every default"
    texts = [line.split("\t")[0] for line in (ml_corpus / "eval.txt").read_text(encoding="utf-8").splitlines()[:40]]
    texts += ["", "便宜又省油", "完全无关的一句话"]
    got = p.predict(texts)
    probs = p.predict_proba_array(texts)
    thresholds = np.array([p.thresholds_[c] for c in p.classes_], np.float32)
    want = [[c for c, on in zip(p.classes_, row >= thresholds) if on] for row in probs]
    assert got == want
    assert p.predict("便宜又省油") == got[-2] and isinstance(got[-2], list)
    # Texts batched together are padded to the longer one: the same up to float rounding (which is CPU-dependent).
    for i, c in enumerate(p.classify(texts[:2])):
        assert c["labels"] == got[i] and c["probabilities"] == pytest.approx(p.predict_proba(texts[i]), abs=1e-6)
    # The same export in a new process, through plain tf.saved_model.load.
    code = (
        "import json, sys, tensorflow as tf\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "out = m.signatures['serving_default'](text=tf.constant(json.loads(sys.argv[2])))\n"
        "print(json.dumps({'predicted': out['predicted'].numpy().tolist(),"
        " 'label': [x.decode() for x in out['label'].numpy()]}))\n"
    )
    r = subprocess.run([sys.executable, "-c", code, p.export_dir, json.dumps(texts, ensure_ascii=False)],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert [[c for c, on in zip(p.classes_, row) if on] for row in out["predicted"]] == got
    assert out["label"] == [",".join(labels) for labels in got]
    # The server answers the same labels per instance.
    srv = BackgroundServer(cfg.pb_model_path, "topics", poll_seconds=0.1)
    try:
        status, body = call(f"{srv.url}/v1/models/topics:predict", {"instances": texts})
    finally:
        srv.close()
    assert status == 200
    assert [row["label"] for row in body["predictions"]] == [",".join(labels) for labels in got]
    assert [[c for c, on in zip(p.classes_, row["predicted"]) if on] for row in body["predictions"]] == got
    decision = json.load(open(os.path.join(p.export_dir, "assets", "decision.json"), encoding="utf-8"))
    assert decision["label_sep"] == "," and decision["at_least_one"] is False
    # predict.py prints the list.
    r = subprocess.run([sys.executable, os.path.join(REPO, "predict.py"), f"--config_path={path}", "便宜又省油"],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    line = json.loads(r.stdout.strip().splitlines()[-1])
    assert line["labels"] == got[-2] and set(line["probabilities"]) == set(TOPICS)


def test_at_least_one_gives_the_likeliest_label_when_none_passes(tmp_path, ml_corpus):
    from data_helpers.dataset import prepare_data
    from models import build_model
    from predictors import Predictor
    from predictors.export import export_model

    cfg = load_config(ml_config(tmp_path, ml_corpus), log=quiet)
    data = prepare_data(cfg, log=quiet)
    model = build_model(cfg, len(data.artifacts.tokens), len(data.artifacts.labels))
    texts = ["便宜又省油", "后排宽敞", "", "今天"]
    high = [0.999] * 4
    plain = Predictor.from_saved_model(export_model(model, data.artifacts, str(tmp_path / "a"), log=quiet, explain=False,
                                                    decision={"thresholds": high, "at_least_one": False}))
    forced = Predictor.from_saved_model(export_model(model, data.artifacts, str(tmp_path / "b"), log=quiet, explain=False,
                                                     decision={"thresholds": high, "at_least_one": True}))
    probs = plain.predict_proba_array(texts)
    assert probs.max() < 0.999  # an untrained model: nothing passes
    assert plain.predict(texts) == [[], [], [], []]
    assert forced.predict(texts) == [[plain.classes_[int(np.argmax(row))]] for row in probs]
    # An empty batch still answers, with every output's shape (TensorFlow Serving sends those).
    import tensorflow as tf

    out = forced.signatures["serving_default"](text=tf.constant([], tf.string))
    assert out["label"].shape == (0,) and out["predicted"].shape == (0, 4) and out["probabilities"].shape == (0, 4)


@pytest.mark.parametrize("model_name", ["bilstm", "bilstm_atten", "transformer", "fasttext"])
def test_every_model_gets_a_sigmoid_head(model_name, ml_corpus, tmp_path):
    import keras

    from models import build_model

    cfg = load_config(ml_config(tmp_path, ml_corpus, model_name=model_name), log=quiet)
    model = build_model(cfg, 50, 4)
    p = keras.ops.convert_to_numpy(model(np.array([[3, 4, 5, 0]], np.int32)))
    assert p.shape == (1, 4) and model.get_layer("probabilities").activation.__name__ == "sigmoid"


# ---- losses -----------------------------------------------------------------------------------
def test_class_weights_change_the_loss_as_computed_by_hand():
    import tensorflow as tf

    from trainers.losses import per_example_loss

    w = np.array([0.5, 2.0, 3.0], np.float32)
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]], np.float32)
    y = np.array([0, 2, 2])
    got = per_example_loss(tf.constant(y), tf.constant(probs), kind="softmax", num_labels=3, weights=w).numpy()
    np.testing.assert_allclose(got, -np.log(probs[np.arange(3), y]) * w[y], rtol=1e-5)
    # Binary: the weight of each example's class.
    p1 = np.array([[0.8], [0.3]], np.float32)
    got = per_example_loss(tf.constant([1, 0]), tf.constant(p1), kind="binary", num_labels=2, weights=np.array([1.0, 4.0], np.float32)).numpy()
    np.testing.assert_allclose(got, [-4.0 * np.log(0.8), -np.log(0.7)], rtol=1e-5)
    # Multi-label: each label's positive term times its weight, negatives unweighted, mean over labels.
    yt = np.array([[1, 0, 1], [0, 0, 1]], np.float32)
    pm = np.array([[0.9, 0.2, 0.4], [0.3, 0.1, 0.8]], np.float32)
    got = per_example_loss(tf.constant(yt), tf.constant(pm), kind="multi_label", num_labels=3, weights=w).numpy()
    want = -(w * yt * np.log(pm) + (1 - yt) * np.log(1 - pm)).mean(axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    unweighted = per_example_loss(tf.constant(yt), tf.constant(pm), kind="multi_label", num_labels=3).numpy()
    np.testing.assert_allclose(unweighted, -(yt * np.log(pm) + (1 - yt) * np.log(1 - pm)).mean(axis=1), rtol=1e-5)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_focal_loss_equals_keras(smoothing):
    import keras
    import tensorflow as tf

    from trainers.losses import per_example_loss

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4)).astype(np.float32)
    soft = tf.nn.softmax(logits).numpy()
    y = rng.integers(0, 4, 6)
    got = per_example_loss(tf.constant(y), tf.constant(soft), kind="softmax", num_labels=4, loss="focal", gamma=2.0,
                           label_smoothing=smoothing).numpy()
    ref = keras.losses.CategoricalFocalCrossentropy(alpha=1.0, gamma=2.0, label_smoothing=smoothing, reduction=None)
    np.testing.assert_allclose(got, ref(np.eye(4, dtype=np.float32)[y], soft).numpy(), rtol=1e-5)
    sig = tf.sigmoid(logits).numpy()
    hot = (rng.random((6, 4)) < 0.4).astype(np.float32)
    ref = keras.losses.BinaryFocalCrossentropy(gamma=1.5, label_smoothing=smoothing, reduction=None)(hot, sig).numpy()
    for weights in (None, np.ones(4, np.float32)):  # Keras's path, and our weighted path with weights of 1
        got = per_example_loss(tf.constant(hot), tf.constant(sig), kind="multi_label", num_labels=4, loss="focal",
                               gamma=1.5, label_smoothing=smoothing, weights=weights).numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-4)


def test_balanced_weights_are_sklearns():
    from sklearn.utils.class_weight import compute_class_weight

    from data_helpers.class_weights import class_weights

    y = np.array([0] * 50 + [1] * 7 + [2] * 3)
    got = class_weights("balanced", ["a", "b", "c"], {"a": 50, "b": 7, "c": 3}, 60, multi_label=False)
    np.testing.assert_allclose(got, compute_class_weight("balanced", classes=np.arange(3), y=y), rtol=1e-6)
    # Multi-label: the ratio of the two weights sklearn gives each label's binary column.
    hot = np.zeros((60, 2), int)
    hot[:12, 0] = 1
    hot[:3, 1] = 1
    got = class_weights("balanced", ["x", "y"], {"x": 12, "y": 3}, 60, multi_label=True)
    for j in range(2):
        neg, pos = compute_class_weight("balanced", classes=np.array([0, 1]), y=hot[:, j])
        assert got[j] == pytest.approx(pos / neg)
    assert list(class_weights({"b": 5.0}, ["a", "b"], {}, 1, False)) == [1.0, 5.0]
    with pytest.raises(ConfigError, match="key 'class_weight' names 'z'"):
        class_weights({"z": 2.0}, ["a", "b"], {}, 1, False, "c.json")


def test_weighted_and_focal_runs_train(tmp_path, ml_corpus, corpus):
    from trainers.trainer import Trainer

    path = tiny_config(tmp_path / "single", corpus, class_weight="balanced", loss="focal", select_by="accuracy", epochs=1)
    logs = []
    r = Trainer(load_config(path, log=quiet), log=logs.append, verbose=0).train()
    assert r["select_by"] == "accuracy" and any(m.startswith("class weights:") for m in logs)
    path = ml_config(tmp_path / "multi", ml_corpus, class_weight={"空间": 3.0}, at_least_one=True, epochs=1, select_by="macro_f1")
    logs = []
    r = Trainer(load_config(path, log=quiet), log=logs.append, verbose=0).train()
    assert r["select_by"] == "macro_f1" and r["labels_per_text_predicted"] >= 1.0
    assert any("空间 3" in m for m in logs if m.startswith("class weights (positive term"))


# ---- reading the data -------------------------------------------------------------------------
EDGE = [
    "两个标签\t价格,油耗",
    "没有标签\t",
    "重复标签\t价格, 价格 ,外观",
    "数字标签\t0,3",
    "空名字\t价格,,油耗",
    "未知标签\t价格,内饰",
    "<SEP>分隔<SEP>空间",
]


def test_graph_parser_reads_label_lists_as_the_reader_does(tmp_path):
    from data_helpers.pipeline import parse_lines, read_lines

    names = ["价格", "油耗", "空间", "外观"]
    f = tmp_path / "edge.txt"
    f.write_text("\n".join(EDGE) + "\n", encoding="utf-8")
    py = read_examples(str(f), id_to_name=names, label_sep=",", max_bad_fraction=1.0, log=quiet)
    want = [(t, tuple(sorted(names.index(x) for x in labels))) for t, labels in zip(py.texts, py.labels) if set(labels) <= set(names)]
    got = [(t.decode(), tuple(np.flatnonzero(hot))) for t, hot in
           parse_lines(read_lines([str(f)]), names, names, label_sep=",").as_numpy_iterator()]
    assert got == want
    assert ("没有标签", ()) in got and ("数字标签", (0, 3)) in got and ("重复标签", (0, 3)) in got
    assert py.skipped == 1  # the empty name; the unknown label is dropped by the graph only (not in names)


def write(tmp_path, name, lines):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(p)


def run_train(path):
    return subprocess.run([sys.executable, os.path.join(REPO, "train.py"), f"--config_path={path}"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def test_data_errors_each_get_one_line(tmp_path, ml_corpus):
    # A label in eval_data never seen in training.
    ev = write(tmp_path, "eval.txt", ["便宜\t价格", "新的\t价格,内饰"])
    r = run_train(ml_config(tmp_path / "a", ml_corpus, eval_data=ev))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "label '内饰' never occurs in" in r.stderr, r.stderr
    # No line with any label.
    tr = write(tmp_path, "nolabels.txt", ["一句话\t", "两句话\t"])
    r = run_train(ml_config(tmp_path / "b", ml_corpus, train_data=tr, eval_data=tr))
    assert r.returncode == 2 and "no line has any label" in r.stderr, r.stderr
    # An unknown class_weight label, named with its key.
    r = run_train(ml_config(tmp_path / "c", ml_corpus, class_weight={"内饰": 2.0}))
    assert r.returncode == 2 and "key 'class_weight' names '内饰'" in r.stderr, r.stderr
    # An empty label field is malformed in single-label mode only.
    r = run_train(tiny_config(tmp_path / "d", ml_corpus))
    assert r.returncode == 2 and "empty label" in r.stderr, r.stderr


def test_class_name_with_the_separator_and_repeated_labels(tmp_path):
    names = write(tmp_path, "class.txt", ["价格", "油耗,空间"])
    with pytest.raises(DataError, match=r"class.txt:2: class name '油耗,空间' contains label_sep ','"):
        read_class_names(names, ",")
    assert read_class_names(names) == ["价格", "油耗,空间"]  # single-label: any name
    logs = []
    f = write(tmp_path, "dup.txt", ["a\t价格,价格", "b\t油耗", "c\t油耗,油耗"])
    ex = read_examples(f, label_sep=",", log=logs.append)
    assert ex.labels == [("价格",), ("油耗",), ("油耗",)]
    assert logs == [f"{f}:1: a label repeated on one line; merged (said once per file)"]


def test_config_rules(tmp_path, ml_corpus, corpus):
    with pytest.raises(ConfigError, match="'select_by' micro_f1 is for multi_label"):
        load_config(tiny_config(tmp_path, corpus, select_by="micro_f1"), log=quiet)
    with pytest.raises(ConfigError, match="'select_by' accuracy is for single-label"):
        load_config(ml_config(tmp_path, ml_corpus, select_by="accuracy"), log=quiet)
    with pytest.raises(ConfigError, match="key 'class_weight' must be"):
        load_config(tiny_config(tmp_path, corpus, class_weight={"好评": -1}), log=quiet)
    with pytest.raises(ConfigError, match="key 'threshold' must be in"):
        load_config(ml_config(tmp_path, ml_corpus, threshold=1.0), log=quiet)
    assert load_config(ml_config(tmp_path, ml_corpus), log=quiet).select_by == "micro_f1"
    assert load_config(tiny_config(tmp_path, corpus), log=quiet).select_by == "macro_f1"


# ---- deciding ---------------------------------------------------------------------------------
def test_tuned_threshold_maximises_each_labels_f1():
    from sklearn.metrics import f1_score

    from trainers.evaluation import decide, tune_thresholds

    rng = np.random.default_rng(3)
    for _ in range(20):
        y = (rng.random((60, 3)) < 0.3).astype(int)
        probs = np.clip(y * rng.uniform(0.2, 1, (60, 3)) + rng.uniform(0, 0.6, (60, 3)), 0, 1).astype(np.float32)
        t = tune_thresholds(probs, y, 0.5)
        for j in range(3):
            if y[:, j].sum() == 0:
                assert t[j] == 0.5
                continue
            best = f1_score(y[:, j], probs[:, j] >= t[j], zero_division=0)
            for c in np.unique(probs[:, j]):
                assert f1_score(y[:, j], probs[:, j] >= c, zero_division=0) <= best + 1e-12
        pred = decide(probs, t, at_least_one=True)
        assert pred.any(axis=1).all()


def test_word_models_cache_label_lists(tmp_path, ml_corpus):
    from data_helpers.dataset import prepare_data
    from data_helpers.pipeline import parse_lines, read_lines

    cfg = load_config(ml_config(tmp_path, ml_corpus, tokenizer="word"), log=quiet)
    first = prepare_data(cfg, log=quiet)
    labels = first.artifacts.labels
    got = [tuple(np.flatnonzero(hot)) for _, hot in
           parse_lines(read_lines(first.train_files), labels, None, "tab", ",").as_numpy_iterator()]
    assert got == [tuple(sorted(labels.index(x) for x in t)) for t in true_sets(ml_corpus / "train.txt")]
    logs = []
    again = prepare_data(cfg, log=logs.append)  # read back from the complete cache
    assert any(m.startswith("segmented text: reusing") for m in logs)
    assert again.scan.train_label_counts == first.scan.train_label_counts and sum(first.scan.train_label_counts.values()) > 300
