"""Explanation speed: Predictor.explain one sentence at a time, against Predictor.predict on the same export.

Trains nothing: takes the newest export of each example config (run ``python bench/demo.py`` or
``train.py`` first; exports need ``export_explain: true``, the default) and times, over the first
``--n`` eval sentences one at a time after warm-up, ``predict`` (the baseline), ``explain`` with
attention (where the model has it) and with integrated gradients (32 steps, more for texts whose
scores do not add up: predictors.explanation.IG_REFINE). Also reports the
largest and median integrated-gradients gap |f(text) - f(baseline) - sum(scores)|. Writes
bench/results/explain.json and the "Explanations" section of BENCHMARKS.md.

    python bench/explain.py [--n 300] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.demo import MODELS, cpu_model, keep_earlier_rows, measured_elsewhere, update_benchmarks  # noqa: E402


def timed(fn, texts, warmup: int = 5) -> dict:
    for t in texts[:warmup]:
        fn(t)
    times = []
    for t in texts:
        start = time.perf_counter()
        fn(t)
        times.append(time.perf_counter() - start)
    times.sort()
    return {"p50_ms": round(1000 * times[len(times) // 2], 2), "p99_ms": round(1000 * times[int(0.99 * (len(times) - 1))], 2)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="eval sentences timed, one at a time")
    ap.add_argument("--no-write", action="store_true", help="print only; leave bench/results and BENCHMARKS.md alone")
    args = ap.parse_args(argv)

    from data_helpers.config import load_config
    from data_helpers.reader import read_examples
    from predictors import Predictor

    results = {}
    for name in MODELS:
        path = os.path.join("config", f"{name}_config.json")
        cfg = load_config(path, log=lambda *a: None, check_files=False)
        try:
            p = Predictor(path)
        except Exception as e:  # noqa: BLE001 - a model not trained yet is skipped, and said so
            print(f"{name}: skipped ({e})", file=sys.stderr)
            continue
        if "explain" not in p.signatures:
            print(f"{name}: skipped (its export has no explain signature; train it again)", file=sys.stderr)
            continue
        texts = read_examples(cfg.eval_data, log=lambda *a: None).texts[: args.n]
        row = {"export": p.export_dir, "tokenizer": cfg.tokenizer, "predict": timed(p.predict, texts)}
        if name in ("bilstm_atten", "transformer"):
            row["attention"] = timed(lambda t: p.explain(t, method="attention"), texts)
        row["integrated_gradients"] = timed(lambda t: p.explain(t, method="integrated_gradients"), texts)
        gaps = sorted(abs(r["ig_gap"]) for r in p.explain(texts, method="integrated_gradients"))
        row["ig_gap_max"], row["ig_gap_median"] = round(gaps[-1], 5), round(gaps[len(gaps) // 2], 6)
        results[name] = row
        print(json.dumps({name: row}, ensure_ascii=False), flush=True)

    import tensorflow as tf

    out = {
        "command": "python bench/explain.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.date.today().isoformat(),
        "machine": {"cores": os.cpu_count(), "cpu": cpu_model()},
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__},
        "sentences": args.n,
        "models": results,
    }
    if not args.no_write and results:
        os.makedirs("bench/results", exist_ok=True)
        out["models"] = keep_earlier_rows("bench/results/explain.json", out, order=MODELS)  # models not trained here
        with open("bench/results/explain.json", "w", encoding="utf-8") as f:
            json.dump(out, f, ensure_ascii=False, indent=2)
        write_benchmarks_section(out)
    return out


def write_benchmarks_section(out: dict) -> None:
    def ms(r):
        return f"{r['p50_ms']} / {r['p99_ms']}" if r else "-"

    rows = ["| model | export | predict p50 / p99 ms (baseline) | attention p50 / p99 ms | integrated gradients p50 / p99 ms | IG gap max / median |",
            "|---|---|---|---|---|---|"]
    for name, r in out["models"].items():
        rows.append(f"| {name}{measured_elsewhere(r, out)} | `{r['export']}` | {ms(r['predict'])} | {ms(r.get('attention'))} | {ms(r['integrated_gradients'])} | "
                    f"{r['ig_gap_max']} / {r['ig_gap_median']} |")
    att = [f"{n} {r['attention']['p50_ms']} ms" for n, r in out["models"].items() if r.get("attention")]
    ig = [f"{n} {r['integrated_gradients']['p50_ms']} ms" for n, r in out["models"].items()]
    met = (f"Attention p50 against the 5 ms target: {', '.join(att) or '-'} "
           f"({'met' if all(r['attention']['p50_ms'] < 5 for r in out['models'].values() if r.get('attention')) else 'not met'}). "
           f"Integrated gradients p50 against 50 ms: {', '.join(ig)} "
           f"({'met' if all(r['integrated_gradients']['p50_ms'] < 50 for r in out['models'].values()) else 'not met'}, "
           "at 32 steps, refined where the gap stays above 0.01).")
    section = "\n".join([
        "## Explanations (Predictor.explain, one sentence at a time)",
        "",
        f"Command: `{out['command']}` on {out['date']}; {out['machine']['cores']} cores, {out['machine']['cpu']}; "
        f"TensorFlow {out['versions']['tensorflow']}, Python {out['versions']['python']}. The first {out['sentences']} demo "
        "eval sentences, one call each after 5 warm-up calls, through the export's `explain` signature; `predict` on the "
        "same export in the same run is the baseline. Integrated gradients: 32 midpoint steps, and a text whose gap "
        "stays above 0.01 is integrated again at 256, then 1024 steps (that is the p99); the gap is "
        "|f(text) - f(baseline) - sum(scores)| in probability. Targets (issue 13): attention under 5 ms, integrated "
        "gradients (32 steps) under 50 ms. A row measured by another run names that run's command, date and, where it "
        "differs, machine.",
        "",
        *rows,
        "",
        met,
        "",
    ])
    update_benchmarks("Explanations", section)


if __name__ == "__main__":
    if sys.argv[1:] == ["--render-only"]:  # rewrite the section from bench/results/explain.json
        write_benchmarks_section(json.load(open("bench/results/explain.json", encoding="utf-8")))
    else:
        sys.exit(0 if main() is not None else 1)
