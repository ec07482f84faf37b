"""Fudan long-document benchmark: each model with long_text truncate, head_tail and chunks, against
the character TF-IDF baseline on full documents and on their first 512 and 128 characters, in one run.

    python bench/fudan.py --data ../shared/data/fudan [--models textcnn,...] [--modes truncate,chunks] [--set key=value ...]

Each (model, long_text) pair trains from config/fudan/<model>.json with that long_text on train.txt,
keeps its best checkpoint on dev.txt, and is scored once on test.txt through its export (the Predictor),
in its own process. The baseline (character 1-3-gram TF-IDF, sublinear tf, LinearSVC C=0.5, as in
the data's README) trains and scores in the same run. Writes bench/results/fudan.json and the
"Fudan" section of BENCHMARKS.md. ``--limit N`` reads the first N lines of each file (a smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.demo import keep_earlier_rows, measured_elsewhere, peak_rss_mb, run_record, save_results, update_benchmarks  # noqa: E402
from bench.thucnews import data_files  # noqa: E402

MODELS = ("textcnn", "bilstm", "bilstm_atten", "transformer", "fasttext")
MODES = ("truncate", "head_tail", "chunks")
BASELINE_CHARS = (None, 512, 128)  # full text, first 512, first 128 characters
TITLE = "Fudan (20-class long documents"


def run_one(name: str, mode: str, files: dict, overrides: list[str], out_root: str) -> dict:
    """Train one model with one long_text, score its export on test.txt."""
    from sklearn.metrics import accuracy_score, f1_score

    from data_helpers.config import load_config
    from data_helpers.long_text import config_tokens_read
    from data_helpers.reader import read_examples
    from predictors import Predictor
    from trainers.trainer import Trainer

    tag = f"{name}-{mode}"
    sets = [f"train_data={files['train']}", f"eval_data={files['dev']}", f"class_names={files['class']}", f"long_text={mode}",
            f"output_path={out_root}/outputs/{tag}", f"ckpt_model_path={out_root}/ckpt/{tag}", f"pb_model_path={out_root}/pb/{tag}"]
    cfg = load_config(os.path.join(REPO, "config", "fudan", f"{name}.json"), sets + list(overrides))
    logs = []
    report = Trainer(cfg, verbose=0, restart=True, log=logs.append).train()

    p = Predictor.from_saved_model(report["export"])
    test = read_examples(files["test"], log=lambda *a: None)
    t = time.time()
    pred = p.predict(test.texts)
    predict_seconds = time.time() - t
    longer = next((line for line in logs if "training texts have more than" in line), "")
    return {
        "model": name,
        "long_text": mode,
        "tokens_read": config_tokens_read(cfg),
        "sequence_length": cfg.sequence_length,
        "max_chunks": cfg.max_chunks if mode == "chunks" else None,
        "test_accuracy": round(float(accuracy_score(test.labels, pred)), 4),
        "test_macro_f1": round(float(f1_score(test.labels, pred, average="macro")), 4),
        "dev_accuracy": round(report["accuracy"], 4),
        "epochs": cfg.epochs,
        "train_seconds": report["train_seconds"],
        "test_docs_per_second": round(len(test.texts) / predict_seconds, 1),
        "peak_rss_mb": peak_rss_mb(),
        "long_text_log": longer.strip(),
    }


def baselines(files: dict) -> dict:
    """Character 1-3-gram TF-IDF (sublinear tf) + LinearSVC (C=0.5) on the full text, its first 512 and first 128 characters."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.svm import LinearSVC

    from data_helpers.reader import read_examples

    train, dev, test = (read_examples(files[k], log=lambda *a: None) for k in ("train", "dev", "test"))
    out = {}
    for chars in BASELINE_CHARS:
        cut = (lambda ts: ts) if chars is None else (lambda ts, n=chars: [t[:n] for t in ts])
        t = time.time()
        vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)
        clf = LinearSVC(C=0.5).fit(vec.fit_transform(cut(train.texts)), train.labels)
        pred = clf.predict(vec.transform(cut(test.texts)))
        dev_pred = clf.predict(vec.transform(cut(dev.texts)))
        out["full text" if chars is None else f"first {chars} characters"] = {
            "test_accuracy": round(float(accuracy_score(test.labels, pred)), 4),
            "test_macro_f1": round(float(f1_score(test.labels, pred, average="macro")), 4),
            "dev_accuracy": round(float(accuracy_score(dev.labels, dev_pred)), 4),
            "seconds": round(time.time() - t, 1),
        }
        print(json.dumps({"baseline": chars, **out[list(out)[-1]]}), flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "fudan"))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--modes", default=",".join(MODES), help="long_text values to run each model with")
    ap.add_argument("--set", action="append", default=[], help="config override for every run")
    ap.add_argument("--limit", type=int, default=None, help="read only the first N lines of each file")
    ap.add_argument("--out", default=None, help="folder for run artifacts (default: a temporary folder)")
    ap.add_argument("--results", default=os.path.join(REPO, "bench", "results", "fudan.json"))
    ap.add_argument("--no-benchmarks-md", action="store_true", help="leave BENCHMARKS.md alone")
    ap.add_argument("--inline", action="store_true", help="train in this process (faster; RSS then is the whole run's)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--one-result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    workdir = tempfile.mkdtemp(prefix="fudan-")
    out_root = args.out or os.path.join(workdir, "runs")
    files = data_files(args.data, args.limit, workdir, corpus="Fudan")
    if args.one:  # child process: one model with one long_text
        name, mode = args.one.split(":")
        result = run_one(name, mode, files, args.set, out_root)
        with open(args.one_result, "w", encoding="utf-8") as f:
            json.dump(result, f)
        return result

    for mode in args.modes.split(","):
        if mode not in MODES:
            raise SystemExit(f"error: --modes: {mode!r} is not one of {', '.join(MODES)}")
    out = {**run_record("fudan.py", argv), "data": {k: files[k] for k in ("train", "dev", "test")}, "limit": args.limit}
    out["baselines"] = baselines(files)
    runs = out["runs"] = {}
    run_order = [f"{m}:{mode}" for m in MODELS for mode in MODES]
    for name in args.models.split(","):
        for mode in args.modes.split(","):
            t = time.time()
            if args.inline:
                row = run_one(name, mode, files, args.set, out_root)
            else:
                res_file = os.path.join(workdir, f"{name}-{mode}.json")
                cmd = [sys.executable, os.path.abspath(__file__), "--one", f"{name}:{mode}", "--one-result", res_file,
                       "--data", args.data, "--out", out_root]
                cmd += [f"--set={s}" for s in args.set] + (["--limit", str(args.limit)] if args.limit else [])
                subprocess.run(cmd, check=True, cwd=REPO)
                row = json.load(open(res_file, encoding="utf-8"))
            row["wall_seconds"] = round(time.time() - t, 1)
            runs[f"{name}:{mode}"] = row
            print(json.dumps(row, ensure_ascii=False), flush=True)
            # Written after every run: a run cut short keeps the rows it measured, and a run of some
            # models or modes keeps an earlier run's other rows.
            out["runs"] = keep_earlier_rows(args.results, {**out, "runs": runs}, field="runs", order=run_order)
            save_results(args.results, out)
            if not args.no_benchmarks_md:
                update_benchmarks(TITLE, benchmarks_section(out))
    return out


def benchmarks_section(out: dict) -> str:
    base = out["baselines"]
    best_base = max(base, key=lambda k: base[k]["test_accuracy"])
    ref = base[best_base]["test_accuracy"]
    rows = [
        "| model | long_text | tokens read | test accuracy | vs best baseline | test macro-F1 | dev accuracy | epochs | train s | test docs/s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in out["runs"].values():
        read = f"{r['tokens_read']}" + (f" ({r['max_chunks']} x {r['sequence_length']})" if r["max_chunks"] else "")
        rows.append(
            f"| {r['model']}{measured_elsewhere(r, out)} | {r['long_text']} | {read} | {r['test_accuracy']:.4f} | {100 * (r['test_accuracy'] - ref):+.2f} pts | "
            f"{r['test_macro_f1']:.4f} | {r['dev_accuracy']:.4f} | {r['epochs']} | {r['train_seconds']} | {r['test_docs_per_second']} | "
            f"{r['peak_rss_mb'] if r.get('peak_rss_mb') else '-'} |"
        )
    for key, b in base.items():
        rows.append(f"| baseline: char TF-IDF + LinearSVC, {key} | - | - | {b['test_accuracy']:.4f} | | {b['test_macro_f1']:.4f} | "
                    f"{b['dev_accuracy']:.4f} | - | {b['seconds']} | | |")
    lines = [
        "## Fudan (20-class long documents; 3,762 train, tuned on 419 dev, reported on 4,184 test; about 5,300 characters each)",
        "",
        f"Command: `{out['command']}` on {out['date']}; {out['machine']['cores']} cores, {out['machine']['cpu']}; "
        f"TensorFlow {out['versions']['tensorflow']}, Python {out['versions']['python']}. "
        "Each model trains from `config/fudan/<model>.json` with the long_text of its row, keeps its best checkpoint on dev, "
        "and is scored once on test through its export (`Predictor.predict`). The baselines (character 1-3-gram TF-IDF, "
        "sublinear tf, LinearSVC C=0.5, as in the data's README) train and score in the same run; \"train s\" is the training "
        f"loop's time, \"test docs/s\" the Predictor over all test documents. Best baseline: {best_base} ({ref:.4f}). "
        "A row measured by another run names that run's command, date and, where it differs, machine; the gap is to "
        "this run's baselines (deterministic: the same in every run). Peak RSS \"-\": that run did not measure the "
        "training process's own.",
        "",
        *rows,
        "",
    ]
    if out.get("note"):
        lines += [f"Note: {out['note']}", ""]
    if out["runs"]:
        best = max(out["runs"].values(), key=lambda r: r["test_accuracy"])
        met = best["test_accuracy"] > ref
        lines += [
            "| target | this run | met |",
            "|---|---|---|",
            f"| best model above the best baseline row | {best['model']} {best['long_text']} {best['test_accuracy']:.4f} vs {ref:.4f} | "
            f"{'yes' if met else 'no'} ({100 * (best['test_accuracy'] - ref):+.2f} pts) |",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
