"""Shared fixtures: a tiny synthetic corpus, tiny configs, and one tiny trained model per
model kind (trained once per test session and reused by the export and Predictor tests)."""

from __future__ import annotations

import json
import os
import random

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODELS = ("textcnn", "bilstm", "bilstm_atten", "transformer", "fasttext")

# Three classes of short reviews with clearly different words, so a tiny model learns them.
_WORDS = {
    "好评": ["很好", "满意", "喜欢", "推荐", "不错", "精彩", "开心", "完美"],
    "差评": ["很差", "失望", "糟糕", "退货", "难用", "垃圾", "生气", "后悔"],
    "中性": ["一般", "还行", "普通", "凑合", "正常", "马马虎虎", "可以吧", "中规中矩"],
}
_FILLER = ["这本书", "这家店", "手机", "服务", "物流", "价格", "质量", "东西", "iPhone12", "app"]


def make_lines(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        label = list(_WORDS)[i % 3]
        words = [rng.choice(_FILLER), rng.choice(_WORDS[label]), rng.choice(_FILLER), rng.choice(_WORDS[label])]
        lines.append("".join(words) + "\t" + label)
    return lines


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    (d / "train.txt").write_text("\n".join(make_lines(240, 1)) + "\n", encoding="utf-8")
    (d / "eval.txt").write_text("\n".join(make_lines(60, 2)) + "\n", encoding="utf-8")
    return d


def tiny_config(root, corpus, model_name="textcnn", **overrides) -> str:
    """Write a tiny, fast config under root and return its path."""
    root = str(root)
    cfg = {
        "model_name": model_name,
        "train_data": str(corpus / "train.txt"),
        "eval_data": str(corpus / "eval.txt"),
        "tokenizer": "char",
        "sequence_length": 24,
        "embedding_size": 16,
        "num_filters": 8,
        "filter_sizes": [2, 3],
        "hidden_sizes": [8],
        "filters": 16,
        "num_heads": 2,
        "num_blocks": 1,
        "epochs": 2,
        "batch_size": 16,
        "learning_rate": 0.01,
        "keep_prob": 0.9,
        "eval_every": 10,
        "checkpoint_every": 10,
        "output_path": os.path.join(root, "outputs"),
        "ckpt_model_path": os.path.join(root, "ckpt"),
        "pb_model_path": os.path.join(root, "pb"),
        # Explanations cost seconds of tracing per export; the tests that need them ask for them.
        "export_explain": False,
    }
    cfg.update(overrides)
    path = os.path.join(root, f"{model_name}.json")
    os.makedirs(root, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False)
    return path


def quiet(*args, **kwargs):
    pass


def assert_export_scores_as_trained(export_dir, corpus, report) -> None:
    """The SavedModel in ``export_dir``, through a Predictor, scores the corpus's eval file as the
    trainer's report did: what is served is what was trained and evaluated."""
    import numpy as np

    from predictors import Predictor

    texts, labels = zip(*(l.split("\t") for l in (corpus / "eval.txt").read_text(encoding="utf-8").splitlines()))
    predicted = Predictor.from_saved_model(str(export_dir)).predict(list(texts))
    assert np.mean(np.array(predicted) == np.array(labels)) == pytest.approx(report["accuracy"])


def shared_trainer(tmp_path_factory, make_config, kind: str):
    """name -> (config path, report): ``make_config(root, name)`` written and trained once per test
    run, tiny. Under pytest-xdist the worker processes share one copy: the first to ask trains the
    model in the run's common temporary folder under a lock, the others read it. The models are
    read-only for the tests."""
    import fcntl

    from data_helpers.config import load_config
    from trainers.trainer import Trainer

    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "trained-models"
    shared.mkdir(exist_ok=True)
    cache = {}

    def get(name):
        if name not in cache:
            root = shared / f"{kind}-{name}"
            with open(shared / f"{kind}-{name}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                done = root / "done.json"
                if done.exists():
                    path, report = json.loads(done.read_text(encoding="utf-8"))
                else:
                    path = make_config(root, name)
                    report = Trainer(load_config(path, log=quiet), log=quiet, verbose=0).train()
                    done.write_text(json.dumps([path, report]), encoding="utf-8")
            cache[name] = (path, report)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def trained(tmp_path_factory, corpus):
    """model_name -> (config path, report): each model trained once, tiny, for 2 epochs."""
    return shared_trainer(tmp_path_factory, lambda root, name: tiny_config(root, corpus, name), "tiny")


KEYWORDS = {"red": "红组", "blue": "蓝组", "green": "绿组"}
FILLER = list("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理府研质")


def planted_lines(n: int, seed: int) -> list[str]:
    """Random filler with one keyword at a random place; the label is the keyword's."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        key = list(KEYWORDS)[i % 3]
        words = [rng.choice(FILLER) for _ in range(rng.randint(6, 14))]
        words.insert(rng.randint(0, len(words)), f" {key} ")
        lines.append("".join(words) + "\t" + KEYWORDS[key])
    return lines


@pytest.fixture(scope="session")
def planted(tmp_path_factory):
    """The planted-keyword task (test_explain, test_page): train and eval files."""
    root = tmp_path_factory.mktemp("planted")
    (root / "train.txt").write_text("\n".join(planted_lines(360, 1)) + "\n", encoding="utf-8")
    (root / "eval.txt").write_text("\n".join(planted_lines(60, 2)) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def planted_trained(tmp_path_factory, planted):
    """model_name -> (config path, report): a tiny model trained once on the planted task and
    exported with its explain signatures (test_explain, test_page)."""
    return shared_trainer(tmp_path_factory, lambda root, name: tiny_config(
        root / "planted", planted, name, export_explain=True, epochs=4, learning_rate=0.02, keep_prob=1.0,
        eval_every=50, checkpoint_every=50), "planted")
