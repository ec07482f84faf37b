"""Rare classes: TextCNN on a long-tail THUCNews, unweighted against class_weight balanced and focal loss.

    python bench/longtail.py --data ../shared/data/thucnews

Class i (line i of class.txt) keeps its first 4,500 x 0.6^i training lines (4,500 down to 45, about
11,200 in all); dev.txt (model selection) and test.txt (reported once) are unchanged. The three
runs train config/thucnews/textcnn.json with the same settings but `class_weight` / `loss`, in one
run. Writes bench/results/longtail.json and the "Rare classes" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.demo import run_record, save_results, update_benchmarks  # noqa: E402

VARIANTS = {
    "unweighted": [],
    "class_weight balanced": ["class_weight=balanced"],
    "loss focal (gamma 2)": ["loss=focal"],
}


def long_tail(train: str, out: str, n_classes: int, top: int = 4500, ratio: float = 0.6) -> dict:
    """Write the long-tail training file; returns lines kept per class id."""
    keep = {i: int(top * ratio**i) for i in range(n_classes)}
    kept: collections.Counter = collections.Counter()
    with open(train, encoding="utf-8") as f, open(out, "w", encoding="utf-8") as g:
        for line in f:
            label = int(line.rstrip("\n").rsplit("\t", 1)[1])
            if kept[label] < keep[label]:
                kept[label] += 1
                g.write(line)
    return dict(sorted(kept.items()))


def run(overrides: list[str], files: dict, out: str) -> dict:
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    from data_helpers.config import load_config
    from data_helpers.reader import read_class_names, read_examples
    from predictors import Predictor
    from trainers.trainer import Trainer

    sets = [f"train_data={files['train']}", f"eval_data={files['dev']}", f"class_names={files['class']}",
            f"output_path={out}/outputs", f"ckpt_model_path={out}/ckpt", f"pb_model_path={out}/pb"]
    cfg = load_config(os.path.join(REPO, "config", "thucnews", "textcnn.json"), sets + overrides)
    report = Trainer(cfg, verbose=0, restart=True).train()
    names = read_class_names(files["class"])
    test = read_examples(files["test"], id_to_name=names, log=lambda *a: None)
    pred = Predictor.from_saved_model(report["export"]).predict(test.texts)
    recall = recall_score(test.labels, pred, labels=names, average=None, zero_division=0)
    return {
        "test_macro_f1": round(float(f1_score(test.labels, pred, average="macro")), 4),
        "test_accuracy": round(float(accuracy_score(test.labels, pred)), 4),
        "recall_rarest_3": round(float(np.mean(recall[-3:])), 4),
        "train_seconds": report["train_seconds"],
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "thucnews"))
    ap.add_argument("--set", action="append", default=[], help="config override for every run")
    ap.add_argument("--results", default=os.path.join(REPO, "bench", "results", "longtail.json"))
    ap.add_argument("--no-benchmarks-md", action="store_true")
    args = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="longtail-")
    files = {k: os.path.join(args.data, f"{k}.txt") for k in ("train", "dev", "test", "class")}
    for p in files.values():
        if not os.path.isfile(p):
            raise SystemExit(f"error: {p} not found (--data should name the THUCNews folder)")
    n_classes = sum(1 for line in open(files["class"], encoding="utf-8") if line.strip())
    kept = long_tail(files["train"], os.path.join(work, "train.txt"), n_classes)
    files["train"] = os.path.join(work, "train.txt")
    results = {}
    for name, extra in VARIANTS.items():
        t = time.time()
        results[name] = {**run(extra + args.set, files, os.path.join(work, name.split()[0])), "wall_seconds": round(time.time() - t, 1)}
        print(json.dumps({name: results[name]}), flush=True)
    out = {**run_record("longtail.py", argv), "train_lines_per_class": kept, "runs": results}
    save_results(args.results, out)
    if not args.no_benchmarks_md:
        update_benchmarks("Rare classes", section(out))
    return out


def section(out: dict) -> str:
    runs = out["runs"]
    base = runs["unweighted"]["test_macro_f1"]
    rows = ["| run | test macro-F1 | vs unweighted | test accuracy | recall of the 3 rarest classes | train s |", "|---|---|---|---|---|---|"]
    for name, r in runs.items():
        rows.append(f"| {name} | {r['test_macro_f1']:.4f} | {100 * (r['test_macro_f1'] - base):+.2f} pts | {r['test_accuracy']:.4f} | "
                    f"{r['recall_rarest_3']:.4f} | {r['train_seconds']} |")
    best = max((k for k in runs if k != "unweighted"), key=lambda k: runs[k]["test_macro_f1"])
    gain = 100 * (runs[best]["test_macro_f1"] - base)
    kept = ", ".join(str(v) for v in out["train_lines_per_class"].values())
    return "\n".join([
        "## Rare classes (long-tail THUCNews, TextCNN)",
        "",
        f"Command: `{out['command']}` on {out['date']}; {out['machine']['cores']} cores, {out['machine']['cpu']}; "
        f"TensorFlow {out['versions']['tensorflow']}. Training lines per class (class.txt order): {kept}; dev and "
        "test unchanged (10,000 each, balanced). Each run trains `config/thucnews/textcnn.json`, selects its best "
        "checkpoint by dev macro-F1 and is scored once on test through `Predictor.predict`; the unweighted run is "
        "the baseline, measured in the same run.",
        "",
        *rows,
        "",
        "| target | this run | met |",
        "|---|---|---|",
        f"| class_weight or focal raises macro-F1 by >= 1 point | {best}: {gain:+.2f} pts | {'yes' if gain >= 1 else 'no'} |",
    ])


if __name__ == "__main__":
    main()
