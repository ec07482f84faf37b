"""THUCNews headline benchmark: every model against scikit-learn baselines, in one run.

    python bench/thucnews.py --data ../shared/data/thucnews [--models textcnn,bilstm,...] [--set key=value ...]

Each model trains from config/thucnews/<model>.json on train.txt, is tuned (best checkpoint) on
dev.txt, and is evaluated once on test.txt through the exported model. When two or more models
run, their in-graph ensembles (``python -m predictors.ensemble``: the mean of their probabilities in
one SavedModel) are scored the same way: one of all of them, one of those chosen on dev.txt. Each
model runs in its own process, so its peak RSS is its own. Writes bench/results/thucnews.json and
the "THUCNews" section of BENCHMARKS.md. ``--limit N`` reads only the first N lines of each file (the test suite's smoke run).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.demo import cpu_model, keep_earlier_rows, measured_elsewhere, peak_rss_mb, update_benchmarks  # noqa: E402

MODELS = ("textcnn", "bilstm", "bilstm_atten", "transformer", "fasttext")


def limited(path: str, limit: int | None, workdir: str) -> str:
    """path itself, or a copy of its first `limit` lines."""
    if not limit:
        return path
    out = os.path.join(workdir, os.path.basename(path))
    if not os.path.exists(out):
        with open(path, encoding="utf-8") as f, open(out, "w", encoding="utf-8") as g:
            for i, line in enumerate(f):
                if i >= limit:
                    break
                g.write(line)
    return out


def data_files(data: str, limit: int | None, workdir: str, corpus: str = "THUCNews") -> dict:
    """train, dev, test and class.txt of a corpus folder (the first `limit` lines of the first three)."""
    files = {k: os.path.join(data, f"{k}.txt") for k in ("train", "dev", "test", "class")}
    for k, p in files.items():
        if not os.path.isfile(p):
            raise SystemExit(f"error: {p} not found (--data should name the {corpus} folder)")
    return {k: (p if k == "class" else limited(p, limit, workdir)) for k, p in files.items()}


def percentiles(times_ms: list[float]) -> dict:
    import numpy as np

    return {"p50_ms": round(float(np.percentile(times_ms, 50)), 3), "p99_ms": round(float(np.percentile(times_ms, 99)), 3)}


def run_model(name: str, files: dict, overrides: list[str], out_root: str | None) -> dict:
    """Train one model, evaluate its export on test.txt, time the Predictor and the SavedModel."""
    from data_helpers.config import load_config
    from trainers.trainer import Trainer

    sets = [f"train_data={files['train']}", f"eval_data={files['dev']}", f"class_names={files['class']}"]
    if out_root:
        sets += [f"output_path={out_root}/outputs/{name}", f"ckpt_model_path={out_root}/ckpt/{name}", f"pb_model_path={out_root}/pb/{name}"]
    cfg = load_config(os.path.join(REPO, "config", "thucnews", f"{name}.json"), sets + list(overrides))
    report = Trainer(cfg, verbose=0, restart=True).train()  # a benchmark always starts afresh
    # Only the export is used from here on; the checkpoints of a 1,000,000-row n-gram table take ~10 GB.
    shutil.rmtree(cfg.ckpt_model_path, ignore_errors=True)
    return {
        "tokenizer": cfg.tokenizer,
        **score_export(report["export"], files),
        "dev_accuracy": round(report["accuracy"], 4),
        "train_seconds": report["train_seconds"],
        "train_examples_per_second": report["train_examples_per_second"],
        "epochs": cfg.epochs,
    }


ENSEMBLES = ("ensemble", "ensemble_selected")


def run_ensemble(name: str, members: dict, files: dict, out_root: str | None) -> dict:
    """The in-graph ensemble (predictors.ensemble) of the members' exports, scored like a model:
    ``ensemble`` averages all of them, ``ensemble_selected`` those chosen on dev.txt by greedy
    forward selection."""
    from data_helpers.reader import read_class_names, read_examples
    from predictors.ensemble import export_ensemble, select_members

    exports = list(members.values())
    if name == "ensemble_selected":
        dev = read_examples(files["dev"], id_to_name=read_class_names(files["class"]), log=lambda *a: None)
        exports = select_members(exports, dev.texts, dev.labels)
    export = export_ensemble(exports, os.path.join(out_root or "pb_model/thucnews", name), log=lambda *a: None)
    model_of = {e: m for m, e in members.items()}
    return {"tokenizer": "char", "members": [model_of[e] for e in exports], **score_export(export, files)}


def score_export(export: str, files: dict) -> dict:
    """Test accuracy and macro-F1 of an export through the Predictor, its one-sentence latency, its
    batch throughput and this process's peak RSS."""
    import tensorflow as tf
    from sklearn.metrics import accuracy_score, f1_score

    from data_helpers.reader import read_class_names, read_examples
    from predictors import Predictor

    names = read_class_names(files["class"])
    test = read_examples(files["test"], id_to_name=names, log=lambda *a: None)
    p = Predictor.from_saved_model(export)
    pred = p.predict(test.texts)
    result = {
        "export": export,
        "test_accuracy": round(float(accuracy_score(test.labels, pred)), 4),
        "test_macro_f1": round(float(f1_score(test.labels, pred, average="macro")), 4),
    }
    one = test.texts[:1000]
    for t in one[:50]:
        p.predict(t)
    times = []
    for t in one:
        s = time.perf_counter()
        p.predict(t)
        times.append((time.perf_counter() - s) * 1000)
    result["predictor_single"] = percentiles(times)

    serve = tf.saved_model.load(export).signatures["serving_default"]
    segmented = p.tokenizer.segment(test.texts)  # word models take segmented text; timed apart
    batches = [tf.constant(segmented[i : i + 256]) for i in range(0, len(segmented), 256)]
    serve(text=batches[0])
    s = time.perf_counter()
    for b in batches:
        serve(text=b)
    result["savedmodel_batch_sentences_per_second"] = round(len(segmented) / (time.perf_counter() - s), 1)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def baselines(files: dict) -> dict:
    """Character 1-3-gram and word (jieba) 1-2-gram TF-IDF + LinearSVC, trained on train, scored on test."""
    import jieba
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.svm import LinearSVC

    from data_helpers.reader import read_examples

    train = read_examples(files["train"], log=lambda *a: None)
    test = read_examples(files["test"], log=lambda *a: None)
    out = {}
    for key, vec in (
        ("tfidf_char_1_3_linearsvc", TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)),
        ("tfidf_word_1_2_linearsvc", TfidfVectorizer(tokenizer=jieba.lcut, token_pattern=None, ngram_range=(1, 2), sublinear_tf=True)),
    ):
        t = time.time()
        clf = LinearSVC().fit(vec.fit_transform(train.texts), train.labels)
        pred = clf.predict(vec.transform(test.texts))
        out[key] = {
            "test_accuracy": round(float(accuracy_score(test.labels, pred)), 4),
            "test_macro_f1": round(float(f1_score(test.labels, pred, average="macro")), 4),
            "seconds": round(time.time() - t, 1),
        }
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "thucnews"))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--set", action="append", default=[], help="config override for every model")
    ap.add_argument("--limit", type=int, default=None, help="read only the first N lines of each file")
    ap.add_argument("--out", default=None, help="folder for run artifacts (default: the configs' own paths)")
    ap.add_argument("--results", default=os.path.join(REPO, "bench", "results", "thucnews.json"))
    ap.add_argument("--no-benchmarks-md", action="store_true", help="leave BENCHMARKS.md alone")
    ap.add_argument("--inline", action="store_true", help="train in this process (faster; RSS then is the whole run's)")
    ap.add_argument("--no-ensemble", action="store_true", help="no ensemble row (default: one when two or more models ran)")
    ap.add_argument("--members", help=argparse.SUPPRESS)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--one-result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    workdir = tempfile.mkdtemp(prefix="thucnews-")
    files = data_files(args.data, args.limit, workdir)
    if args.one:  # child process: one model, or the ensemble of --members
        if args.one in ENSEMBLES:
            result = run_ensemble(args.one, json.loads(args.members), files, args.out)
        else:
            result = run_model(args.one, files, args.set, args.out)
        with open(args.one_result, "w", encoding="utf-8") as f:
            json.dump(result, f)
        return result

    results = {}
    names = args.models.split(",")
    if len(names) > 1 and not args.no_ensemble:
        names += ENSEMBLES
    for name in names:
        t = time.time()
        members = {m: results[m]["export"] for m in names if m in results and m not in ENSEMBLES} if name in ENSEMBLES else None
        if args.inline:
            results[name] = run_ensemble(name, members, files, args.out) if members else run_model(name, files, args.set, args.out)
        else:
            res_file = os.path.join(workdir, f"{name}.json")
            cmd = [sys.executable, os.path.abspath(__file__), "--one", name, "--one-result", res_file, "--data", args.data]
            cmd += ["--members", json.dumps(members)] if members else []
            cmd += [f"--set={s}" for s in args.set] + (["--limit", str(args.limit)] if args.limit else [])
            cmd += ["--out", args.out] if args.out else []
            subprocess.run(cmd, check=True, cwd=REPO)
            results[name] = json.load(open(res_file, encoding="utf-8"))
        results[name]["wall_seconds"] = round(time.time() - t, 1)
        print(json.dumps({name: results[name]}, ensure_ascii=False), flush=True)

    base = baselines(files)
    print(json.dumps(base), flush=True)
    import tensorflow as tf

    out = {
        "command": "python bench/thucnews.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.date.today().isoformat(),
        "machine": {"cores": os.cpu_count(), "cpu": cpu_model()},
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__},
        "data": {"train": files["train"], "dev": files["dev"], "test": files["test"], "limit": args.limit},
        "baselines": base,
        "models": results,
    }
    for r in results.values():
        r["command"] = out["command"]
    out["models"] = keep_earlier_rows(args.results, out, order=MODELS)
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    with open(args.results, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=2)
    if not args.no_benchmarks_md:
        update_benchmarks("THUCNews", benchmarks_section(out))
    return out


def benchmarks_section(out: dict) -> str:
    char = out["baselines"]["tfidf_char_1_3_linearsvc"]["test_accuracy"]
    rows = [
        "| model | tokenizer | test accuracy | vs char TF-IDF | test macro-F1 | train s | train ex/s | Predictor 1 sentence p50 / p99 ms | SavedModel batch sent/s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in out["models"].items():
        name = key + measured_elsewhere(r, out)
        if "members" in r:  # an ensemble of the models trained above
            how = "chosen on dev by greedy forward selection, `--select-on`" if key == "ensemble_selected" else "all"
            name = f"{name} (mean of {', '.join(r['members'])}: {how}; `python -m predictors.ensemble`)"
        rows.append(
            f"| {name} | {r['tokenizer']} | {r['test_accuracy']:.4f} | {100 * (r['test_accuracy'] - char):+.2f} pts | "
            f"{r['test_macro_f1']:.4f} | {r.get('train_seconds', '-')} | {r.get('train_examples_per_second', '-')} | "
            f"{r['predictor_single']['p50_ms']} / {r['predictor_single']['p99_ms']} | "
            f"{r['savedmodel_batch_sentences_per_second']} | {r['peak_rss_mb']} |"
        )
    for key, b in out["baselines"].items():
        rows.append(f"| baseline: {key.replace('_', ' ')} | - | {b['test_accuracy']:.4f} | | {b['test_macro_f1']:.4f} | {b['seconds']} | | | | |")
    return "\n".join(
        [
            "## THUCNews (10-class headlines; 45,000 train, tuned on dev, reported on 10,000 test)",
            "",
            f"Command: `{out['command']}` on {out['date']}; {out['machine']['cores']} cores, {out['machine']['cpu']}; "
            f"TensorFlow {out['versions']['tensorflow']}, Python {out['versions']['python']}. "
            "Baselines are trained and scored in the same run. Predictor latency: 1,000 test headlines one at a time "
            "after warm-up (jieba included for word models). SavedModel batch: all test headlines through "
            "`serving_default` in batches of 256 (word models: segmentation not timed). "
            "A row measured by another run (same data) names that run's command, date and, where it differs, machine; "
            "the gap is to this run's baseline.",
            "",
            *rows,
            "",
            *targets_table(out, char),
        ]
    )


def targets_table(out: dict, char: float) -> list[str]:
    """The issue's targets against this run's figures, with the gap where one is missed."""
    every = out["models"]  # the ensemble counts for the best model; "every model" is each trained one
    models = {k: v for k, v in every.items() if "members" not in v}
    if not models:
        return []
    worst = min(models, key=lambda m: models[m]["test_accuracy"])
    best = max(every, key=lambda m: every[m]["test_accuracy"])
    slowest = max(models, key=lambda m: models[m]["train_seconds"])
    p50 = max(models, key=lambda m: models[m]["predictor_single"]["p50_ms"])
    rows = [
        ("every model's test accuracy >= char TF-IDF", f"lowest: {worst} {models[worst]['test_accuracy']:.4f} vs {char:.4f}",
         models[worst]["test_accuracy"] >= char, f"{100 * (models[worst]['test_accuracy'] - char):+.2f} pts"),
        ("best model >= 0.915", f"{best} {every[best]['test_accuracy']:.4f}",
         every[best]["test_accuracy"] >= 0.915, f"{100 * (every[best]['test_accuracy'] - 0.915):+.2f} pts"),
        ("every model trains in <= 900 s", f"slowest: {slowest} {models[slowest]['train_seconds']} s",
         models[slowest]["train_seconds"] <= 900, ""),
        ("Predictor 1 sentence p50 <= 2 ms", f"highest: {p50} {models[p50]['predictor_single']['p50_ms']} ms",
         models[p50]["predictor_single"]["p50_ms"] <= 2.0, ""),
    ]
    if "textcnn" in models:
        t = models["textcnn"]
        rows.insert(2, ("TextCNN trains in <= 300 s", f"{t['train_seconds']} s", t["train_seconds"] <= 300, ""))
        rows.append(("TextCNN SavedModel batch >= 5,000 sentences/s", f"{t['savedmodel_batch_sentences_per_second']}",
                     t["savedmodel_batch_sentences_per_second"] >= 5000, ""))
    lines = ["| target | this run | met |", "|---|---|---|"]
    for target, measured, met, gap in rows:
        lines.append(f"| {target} | {measured} | {'yes' if met else 'no' + (f' ({gap})' if gap else '')} |")
    return lines + [""]


if __name__ == "__main__":
    main()
