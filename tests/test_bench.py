"""Smoke runs of the benchmark harnesses, so they cannot rot (the full runs stay out of CI)."""

from __future__ import annotations

import json
import os
import sys

import pytest

from tests.conftest import make_lines

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO, "..", "shared", "data", "thucnews")
TINY = ["--set=embedding_size=16", "--set=num_filters=8", "--set=hidden_sizes=[8]", "--set=filters=16",
        "--set=num_heads=2", "--set=num_blocks=1", "--set=epochs=1", "--set=batch_size=32", "--set=warmup_steps=0",
        "--set=export_explain=false"]


@pytest.fixture(scope="module")
def thucnews_like(tmp_path_factory):
    """THUCNews' layout and format (integer label ids, class.txt) with synthetic lines."""
    d = tmp_path_factory.mktemp("thuc")
    names = ["好评", "差评", "中性"]
    for split, n, seed in (("train", 150, 1), ("dev", 60, 2), ("test", 60, 3)):
        lines = [f"{t}\t{names.index(l)}" for t, l in (x.split("\t") for x in make_lines(n, seed))]
        (d / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (d / "class.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    return d


def test_thucnews_harness_smoke(thucnews_like, tmp_path):
    sys.path.insert(0, REPO)
    from bench import thucnews

    results = tmp_path / "thucnews.json"
    two = ["textcnn", "fasttext"]  # every model goes through the same code; two keep the smoke run short
    out = thucnews.main(["--data", str(thucnews_like), "--inline", "--out", str(tmp_path / "run"),
                         "--results", str(results), "--no-benchmarks-md", "--models", ",".join(two), *TINY])
    saved = json.loads(results.read_text(encoding="utf-8"))
    assert list(saved["models"]) == [*two, "ensemble", "ensemble_selected"]  # two or more models: their ensembles too
    assert saved["models"]["ensemble"]["members"] == two and sorted(saved["models"]["ensemble_selected"]["members"]) == sorted(two)
    for r in saved["models"].values():
        assert 0 <= r["test_accuracy"] <= 1 and r["predictor_single"]["p50_ms"] > 0
        assert r["savedmodel_batch_sentences_per_second"] > 0 and r["peak_rss_mb"] > 0
    assert set(saved["baselines"]) == {"tfidf_char_1_3_linearsvc", "tfidf_word_1_2_linearsvc"}
    section = thucnews.benchmarks_section(out)
    assert section.startswith("## THUCNews") and "| textcnn | char |" in section
    assert "| target | this run | met |" in section and "| best model >= 0.915 |" in section
    assert "| ensemble (mean of textcnn, fasttext: all; `python -m predictors.ensemble`) | char |" in section

    # Re-running one model keeps the others' rows, each naming the run that measured it.
    again = thucnews.main(["--data", str(thucnews_like), "--inline", "--out", str(tmp_path / "run"),
                           "--results", str(results), "--no-benchmarks-md", "--models", "fasttext", *TINY])
    merged = json.loads(results.read_text(encoding="utf-8"))["models"]
    assert list(merged) == [*two, "ensemble", "ensemble_selected"]
    assert merged["textcnn"] == {**saved["models"]["textcnn"], "date": saved["date"], "machine": saved["machine"]}
    assert merged["fasttext"]["command"] == again["command"] != saved["command"]
    section = thucnews.benchmarks_section(again)
    assert f"| textcnn (`{saved['command']}`, {saved['date']}) | char |" in section and "| fasttext | char |" in section


def test_a_partial_run_keeps_the_earlier_runs_other_rows(tmp_path):
    """keep_earlier_rows (every harness): rows this run did not measure are kept, naming their run;
    a run on other data or another --limit keeps nothing of it."""
    sys.path.insert(0, REPO)
    from bench.demo import keep_earlier_rows, measured_elsewhere

    machine = {"cores": 2, "cpu": "A"}
    earlier = {"command": "python bench/x.py", "date": "2026-01-01", "machine": {"cores": 2, "cpu": "B"},
               "data": "d", "limit": None, "runs": {"b:chunks": {"acc": 0.5}, "a:truncate": {"acc": 0.6}}}
    path = tmp_path / "x.json"
    path.write_text(json.dumps(earlier), encoding="utf-8")
    now = {"command": "python bench/x.py --models a", "date": "2026-02-02", "machine": machine, "data": "d", "limit": None,
           "runs": {"a:truncate": {"acc": 0.7}}}
    rows = keep_earlier_rows(str(path), now, field="runs", order=["a:truncate", "b:chunks"])
    assert list(rows) == ["a:truncate", "b:chunks"] and rows["a:truncate"] == {"acc": 0.7}
    assert rows["b:chunks"] == {"command": "python bench/x.py", "date": "2026-01-01", "machine": earlier["machine"], "acc": 0.5}
    assert measured_elsewhere(rows["b:chunks"], now) == " (`python bench/x.py`, 2026-01-01, 2 cores, B)"
    assert measured_elsewhere(rows["a:truncate"], now) == ""
    for other in ({"data": "elsewhere"}, {"limit": 100}):
        assert keep_earlier_rows(str(path), {**now, **other}, field="runs") == now["runs"]
    assert keep_earlier_rows(str(tmp_path / "none.json"), now, field="runs") == now["runs"]


def test_the_demo_targets_are_judged_on_the_example_configs_only():
    sys.path.insert(0, REPO)
    from bench.demo import targets_table

    def out(**acc):
        models = {k: {"eval_accuracy_predictor": v} for k, v in acc.items()}
        models["ensemble"] = {"eval_accuracy_predictor": 0.99, "members": ["a", "b"]}  # not an example config
        return {"baseline_tfidf_char_1_3_linearsvc": {"accuracy": 0.85}, "models": models}

    met = targets_table(out(a=0.8451, b=0.8501))
    assert met[2] == "| every example config within 0.5 points of the baseline | lowest: a 0.8451 vs 0.8500 | yes (-0.49 pts) |"
    assert met[3] == "| at least one example config above the baseline | highest: b 0.8501 vs 0.8500 | yes (+0.01 pts) |"
    missed = targets_table(out(a=0.8449, b=0.85))
    assert missed[2].endswith("| no (-0.51 pts) |") and missed[3].endswith("| no (+0.00 pts) |")
    assert targets_table({"baseline_tfidf_char_1_3_linearsvc": {"accuracy": 0.85}, "models": {}}) == []


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="../shared/data/thucnews is absent")
def test_thucnews_configs_read_the_shared_data():
    from data_helpers.config import load_config
    from data_helpers.reader import read_class_names

    for name in ("textcnn", "bilstm", "bilstm_atten", "transformer", "fasttext"):
        cfg = load_config(os.path.join(REPO, "config", "thucnews", f"{name}.json"), [
            f"train_data={SHARED}/train.txt", f"eval_data={SHARED}/dev.txt", f"class_names={SHARED}/class.txt"])
        assert cfg.model_name == name
    assert read_class_names(os.path.join(SHARED, "class.txt"))[0] == "finance"


def test_multilabel_and_longtail_harness_smoke(thucnews_like, tmp_path):
    sys.path.insert(0, REPO)
    from bench import longtail, multilabel
    from tests.test_multilabel import TOPICS, make_multilabel_lines

    d = tmp_path / "topics"
    d.mkdir()
    for split, n, seed in (("train", 200, 1), ("dev", 60, 2), ("test", 60, 3)):
        (d / f"{split}.txt").write_text("\n".join(make_multilabel_lines(n, seed)) + "\n", encoding="utf-8")
    (d / "class.txt").write_text("\n".join(TOPICS) + "\n", encoding="utf-8")
    tiny = [*TINY, "--set=sequence_length=24", "--set=max_steps=12", "--set=eval_every=6"]
    out = multilabel.main(["--data", str(d), "--models", "textcnn", "--out", str(tmp_path / "run"),
                           "--results", str(tmp_path / "ml.json"), "--no-benchmarks-md", *tiny])
    r = out["models"]["textcnn"]
    assert 0 <= r["micro_f1"] <= 1 and r["labels_per_text_predicted"] >= 1  # the configs set at_least_one
    assert 0 < out["baseline"]["micro_f1"] <= 1
    section = multilabel.section(out)
    assert section.startswith("## Multi-label") and "| textcnn |" in section and "within 2 points" in section

    out = longtail.main(["--data", str(thucnews_like), "--results", str(tmp_path / "lt.json"), "--no-benchmarks-md",
                         *TINY, "--set=max_steps=4", "--set=eval_every=2"])
    assert list(out["runs"]) == list(longtail.VARIANTS) and out["train_lines_per_class"] == {0: 50, 1: 50, 2: 50}
    assert "| class_weight balanced |" in longtail.section(out)


@pytest.mark.skipif(not os.path.isdir(os.path.join(REPO, "..", "shared", "data", "car_topics")), reason="../shared/data/car_topics is absent")
def test_car_topics_configs_read_the_shared_data():
    from data_helpers.config import load_config

    for name in ("textcnn", "bilstm", "bilstm_atten", "transformer", "fasttext"):
        cfg = load_config(os.path.join(REPO, "config", "car_topics", f"{name}.json"))
        assert cfg.model_name == name and cfg.multi_label and cfg.tune_thresholds


def test_fudan_harness_smoke(tmp_path):
    """Fudan's layout (label names, class.txt) with long synthetic documents; two long_text modes."""
    sys.path.insert(0, REPO)
    from bench import fudan
    from tests.test_long_text import KEYWORDS, long_lines

    d = tmp_path / "fudan"
    d.mkdir()
    for split, n, seed in (("train", 120, 1), ("dev", 30, 2), ("test", 30, 3)):
        (d / f"{split}.txt").write_text("\n".join(long_lines(n, seed)) + "\n", encoding="utf-8")
    (d / "class.txt").write_text("\n".join(KEYWORDS.values()) + "\n", encoding="utf-8")
    results = tmp_path / "fudan.json"
    out = fudan.main(["--data", str(d), "--inline", "--models", "textcnn", "--modes", "truncate,chunks", "--out",
                      str(tmp_path / "run"), "--results", str(results), "--no-benchmarks-md", *TINY,
                      "--set=sequence_length=16", "--set=max_chunks=2", "--set=eval_every=4", "--set=checkpoint_every=4"])
    saved = json.loads(results.read_text(encoding="utf-8"))
    assert list(saved["runs"]) == ["textcnn:truncate", "textcnn:chunks"]
    assert set(saved["baselines"]) == {"full text", "first 512 characters", "first 128 characters"}
    chunks = saved["runs"]["textcnn:chunks"]
    assert chunks["tokens_read"] == 32 and 0 <= chunks["test_accuracy"] <= 1 and chunks["train_seconds"] > 0
    assert "long_text chunks reads their first 32 in 2 windows of 16" in chunks["long_text_log"]
    section = fudan.benchmarks_section(out)
    assert section.startswith("## Fudan") and "| textcnn | chunks | 32 (2 x 16) |" in section
    assert "| best model above the best baseline row |" in section


@pytest.mark.skipif(not os.path.isdir(os.path.join(REPO, "..", "shared", "data", "fudan")), reason="../shared/data/fudan is absent")
def test_fudan_configs_read_the_shared_data():
    from data_helpers.config import load_config

    for name in ("textcnn", "bilstm", "bilstm_atten", "transformer", "fasttext"):
        cfg = load_config(os.path.join(REPO, "config", "fudan", f"{name}.json"))
        assert cfg.model_name == name and cfg.long_text == "truncate" and cfg.max_chunks == 8


def test_tuning_runs_score_on_a_held_out_split_and_are_logged(corpus, tmp_path):
    sys.path.insert(0, REPO)
    from bench import tune
    from tests.conftest import tiny_config

    train, dev = tune.split_lines(str(corpus / "train.txt"), 0.25, 13, str(tmp_path))
    lines = [open(p, encoding="utf-8").read().split("\n")[:-1] for p in (train, dev)]
    assert len(lines[1]) == 60 and len(lines[0]) == 180  # every line in one part or the other, once
    assert sorted(lines[0] + lines[1]) == sorted((corpus / "train.txt").read_text(encoding="utf-8").split("\n")[:-1])

    config = tiny_config(tmp_path / "cfg", corpus, "fasttext")
    log, md = tmp_path / "tuning.jsonl", tmp_path / "TUNING.md"
    for name, sets in (("plain", []), ("ema", ["--set=ema_momentum=0.9"])):
        row = tune.main(["--config", config, "--name", name, "--dev-share", "0.25", "--log", str(log), "--markdown", str(md), *sets])
        assert 0 <= row["dev_accuracy"] <= 1 and 0 <= row["baseline"]["accuracy"] <= 1
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert [r["name"] for r in rows] == ["plain", "ema"] and rows[1]["overrides"] == ["ema_momentum=0.9"]
    text = md.read_text(encoding="utf-8")
    assert f"## {config}" in text and "| ema | `ema_momentum=0.9` |" in text and "75% of train_data" in text
