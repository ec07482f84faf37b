"""Multi-label benchmark on the car-review topics set: every model against a TF-IDF baseline, in one run.

    python bench/multilabel.py --data ../shared/data/car_topics [--models textcnn,...] [--set key=value ...]

Each model trains from config/car_topics/<model>.json on train.txt, is tuned on dev.txt (best
checkpoint by micro-F1, one threshold per label), and is scored once on test.txt through its
export (``Predictor.predict``: the thresholds in the graph decide). The baseline, character 1-3-gram
TF-IDF (sublinear tf) + one-vs-rest LinearSVC (C=0.5), trains on train.txt in the same run.
Writes bench/results/multilabel.json and the "Multi-label" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.demo import keep_earlier_rows, measured_elsewhere, run_record, save_results, update_benchmarks  # noqa: E402
from bench.thucnews import percentiles  # noqa: E402

MODELS = ("textcnn", "bilstm", "bilstm_atten", "transformer", "fasttext")


def read(path: str, names: list[str]):
    from data_helpers.reader import read_examples

    ex = read_examples(path, label_sep=",", log=lambda *a: None)
    return ex.texts, [set(labels) for labels in ex.labels]


def scores(truth: list[set], pred: list, names: list[str]) -> dict:
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score

    def hot(sets):
        return np.array([[n in s for n in names] for s in sets], bool)

    y, p = hot(truth), hot([set(x) for x in pred])
    return {
        "micro_f1": round(float(f1_score(y, p, average="micro", zero_division=0)), 4),
        "macro_f1": round(float(f1_score(y, p, average="macro", zero_division=0)), 4),
        "subset_accuracy": round(float(accuracy_score(y, p)), 4),
        "labels_per_text_predicted": round(float(p.sum(1).mean()), 3),
    }


def baseline(files: dict, names: list[str]) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import MultiLabelBinarizer
    from sklearn.svm import LinearSVC

    train_x, train_y = read(files["train"], names)
    test_x, test_y = read(files["test"], names)
    t = time.time()
    mlb = MultiLabelBinarizer(classes=names)
    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)
    clf = OneVsRestClassifier(LinearSVC(C=0.5)).fit(vec.fit_transform(train_x), mlb.fit_transform(train_y))
    pred = mlb.inverse_transform(clf.predict(vec.transform(test_x)))
    return {**scores(test_y, pred, names), "seconds": round(time.time() - t, 1)}


def run_model(name: str, files: dict, names: list[str], overrides: list[str], out_root: str) -> dict:
    from data_helpers.config import load_config
    from predictors import Predictor
    from trainers.trainer import Trainer

    sets = [f"train_data={files['train']}", f"eval_data={files['dev']}", f"class_names={files['class']}",
            f"output_path={out_root}/outputs/{name}", f"ckpt_model_path={out_root}/ckpt/{name}", f"pb_model_path={out_root}/pb/{name}"]
    cfg = load_config(os.path.join(REPO, "config", "car_topics", f"{name}.json"), sets + list(overrides))
    report = Trainer(cfg, verbose=0, restart=True).train()
    p = Predictor.from_saved_model(report["export"])
    test_x, test_y = read(files["test"], names)
    result = {
        **scores(test_y, p.predict(test_x), names),
        "dev_micro_f1": round(report["micro_f1"], 4),
        "train_seconds": report["train_seconds"],
        "epochs": cfg.epochs,
    }
    for t in test_x[:50]:
        p.predict(t)
    times = []
    for t in test_x[:500]:
        s = time.perf_counter()
        p.predict(t)
        times.append((time.perf_counter() - s) * 1000)
    result["predictor_single"] = percentiles(times)
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "car_topics"))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--set", action="append", default=[], help="config override for every model")
    ap.add_argument("--out", default=os.path.join(REPO, "outputs", "bench_multilabel"), help="folder for run artifacts")
    ap.add_argument("--results", default=os.path.join(REPO, "bench", "results", "multilabel.json"))
    ap.add_argument("--no-benchmarks-md", action="store_true", help="leave BENCHMARKS.md alone")
    args = ap.parse_args(argv)

    from data_helpers.reader import read_class_names

    files = {k: os.path.join(args.data, f"{k}.txt") for k in ("train", "dev", "test", "class")}
    for p in files.values():
        if not os.path.isfile(p):
            raise SystemExit(f"error: {p} not found (--data should name the car_topics folder)")
    names = read_class_names(files["class"], ",")
    base = baseline(files, names)
    print(json.dumps({"baseline": base}, ensure_ascii=False), flush=True)
    results = {}
    for name in args.models.split(","):
        t = time.time()
        results[name] = run_model(name, files, names, args.set, args.out)
        results[name]["wall_seconds"] = round(time.time() - t, 1)
        print(json.dumps({name: results[name]}, ensure_ascii=False), flush=True)
    out = {**run_record("multilabel.py", argv), "baseline": base, "models": results}
    out["models"] = keep_earlier_rows(args.results, out, order=MODELS)
    save_results(args.results, out)
    if not args.no_benchmarks_md:
        update_benchmarks("Multi-label", section(out))
    return out


def section(out: dict) -> str:
    b = out["baseline"]
    rows = [
        "| model | test micro-F1 | vs baseline | test macro-F1 | subset accuracy | labels / text | dev micro-F1 | train s | Predictor 1 text p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in out["models"].items():
        rows.append(
            f"| {name}{measured_elsewhere(r, out)} | {r['micro_f1']:.4f} | {100 * (r['micro_f1'] - b['micro_f1']):+.2f} pts | {r['macro_f1']:.4f} | "
            f"{r['subset_accuracy']:.4f} | {r['labels_per_text_predicted']} | {r['dev_micro_f1']:.4f} | {r['train_seconds']} | "
            f"{r['predictor_single']['p50_ms']} / {r['predictor_single']['p99_ms']} |"
        )
    rows.append(f"| baseline: char 1-3-gram TF-IDF + one-vs-rest LinearSVC | {b['micro_f1']:.4f} | | {b['macro_f1']:.4f} | "
                f"{b['subset_accuracy']:.4f} | {b['labels_per_text_predicted']} | | {b['seconds']} | |")
    models = out["models"]
    best = max(models, key=lambda k: models[k]["micro_f1"])
    worst = min(models, key=lambda k: models[k]["micro_f1"])
    gap_best = 100 * (models[best]["micro_f1"] - b["micro_f1"])
    gap_worst = 100 * (models[worst]["micro_f1"] - b["micro_f1"])
    targets = [
        "| target | this run | met |",
        "|---|---|---|",
        f"| best model's test micro-F1 >= the baseline's | {best} {models[best]['micro_f1']:.4f} vs {b['micro_f1']:.4f} | "
        + ("yes" if gap_best >= 0 else f"no ({gap_best:+.2f} pts)") + " |",
        f"| every model within 2 points of the baseline | lowest: {worst} {models[worst]['micro_f1']:.4f} | "
        + ("yes" if gap_worst >= -2 else f"no ({gap_worst:+.2f} pts)") + " |",
    ]
    return "\n".join([
        "## Multi-label (car-review topics: 10 labels, 5,969 train, tuned on 663 dev, reported on 1,658 test)",
        "",
        f"Command: `{out['command']}` on {out['date']}; {out['machine']['cores']} cores, {out['machine']['cpu']}; "
        f"TensorFlow {out['versions']['tensorflow']}, Python {out['versions']['python']}. Each model trains from "
        "`config/car_topics/<model>.json` (sigmoid per label, binary cross-entropy, one threshold per label tuned "
        "on dev, `at_least_one`), is selected by dev micro-F1, and is scored once on test through `Predictor.predict` "
        "(the thresholds in the export decide). The baseline trains on train in the same run and is scored on test. "
        "Latency: 500 test texts one at a time after warm-up. A row measured by another run names that run's command, "
        "date and, where it differs, machine; the gap is to this run's baseline (deterministic: the same in every run).",
        "",
        *rows,
        "",
        *targets,
    ])


if __name__ == "__main__":
    main()
