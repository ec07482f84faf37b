"""Scale benchmark: memory and speed as the data grows, and one worker against two.

    python bench/scale.py [--sizes 1000000,4000000] [--steps 300] [--models fasttext,textcnn]

Generates N labelled lines (10 classes; 5-60 characters, about 22 on average, like news
headlines; each class favours its own characters), trains the THUCNews fastText and TextCNN
configs on them for a fixed number of steps, and records each run's peak RSS (GNU time) and
training examples/s. Then trains fastText on the smallest N with two workers on 127.0.0.1 (the
same global batch) against one. Each run is its own process. Writes bench/results/scale.json and
the "Scale" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.demo import cpu_model, update_benchmarks  # noqa: E402
from trainers.strategy import loopback_tf_configs  # noqa: E402


def generate(path: str, n: int, seed: int) -> None:
    """n lines ``text<TAB>cK``: text of 5-60 CJK characters, a third from class K's own 300."""
    import numpy as np

    rng = np.random.default_rng(seed)
    common = 0x4E00 + rng.permutation(6000)[:2000]
    topics = (0x4E00 + 6000 + np.arange(10 * 300)).reshape(10, 300)
    width = 64
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, n, 100_000):
            m = min(100_000, n - start)
            labels = rng.integers(0, 10, m)
            lengths = np.clip(rng.normal(22, 8, m).round().astype(int), 5, 60)
            own = rng.random((m, width)) < 0.33
            chars = np.where(own, topics[labels[:, None], rng.integers(0, 300, (m, width))], common[rng.integers(0, 2000, (m, width))])
            pos = np.arange(width)[None, :]
            chars = np.where(pos < lengths[:, None], chars, 0)
            rows = np.zeros((m, width + 4), np.uint32)
            rows[:, :width] = chars
            r = np.arange(m)
            rows[r, lengths] = ord("\t")
            rows[r, lengths + 1] = ord("c")
            rows[r, lengths + 2] = ord("0") + labels
            rows[r, lengths + 3] = ord("\n")
            f.write(rows.astype("<u4").tobytes().decode("utf-32-le").replace("\x00", ""))


def train(model: str, train_file: str, eval_file: str, steps: int, out: str, workers: int = 1) -> dict:
    """One run of train.py (each worker its own process); peak RSS by GNU time; the report."""
    sets = [f"train_data={train_file}", f"eval_data={eval_file}", "class_names=null", f"max_steps={steps}",
            f"eval_every={steps}", f"checkpoint_every={steps}", "epochs=1",
            "in_memory_mb=0",  # measure the streaming path at every size (1M lines would fit in 256 MB)
            f"output_path={out}/outputs", f"ckpt_model_path={out}/ckpt", f"pb_model_path={out}/pb"]
    cmd = [sys.executable, os.path.join(REPO, "train.py"), f"--config_path={REPO}/config/thucnews/{model}.json", "--restart"]
    for s in sets:
        cmd += ["--set", s]
    procs = []
    t = time.time()
    for tf_config in (loopback_tf_configs(workers) if workers > 1 else [None]):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        if tf_config:
            env["TF_CONFIG"] = tf_config
        procs.append(subprocess.Popen(["/usr/bin/time", "-f", "peak_rss_kb=%M"] + cmd, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=env, cwd=REPO))
    rss = []
    for p in procs:
        o, e = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"error: {' '.join(cmd)} failed:\n{e[-3000:]}")
        rss.append(int(e.rsplit("peak_rss_kb=", 1)[1].split()[0]) // 1024)
    report = json.load(open(f"{out}/outputs/report.json", encoding="utf-8"))
    return {
        "model": model, "workers": workers, "steps": steps, "wall_s": round(time.time() - t, 1),
        "train_s": report["train_seconds"], "examples_per_s": report["train_examples_per_second"],
        "accuracy": round(report["accuracy"], 4), "peak_rss_mb": max(rss), "train_examples": None,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,4000000")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--models", default="fasttext,textcnn")
    ap.add_argument("--workdir", default=None, help="where the generated data goes (default: a temporary folder)")
    ap.add_argument("--no-benchmarks-md", action="store_true")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    work = args.workdir or tempfile.mkdtemp(prefix="textcls-scale-")
    os.makedirs(work, exist_ok=True)
    eval_file = os.path.join(work, "eval.txt")
    generate(eval_file, 10_000, seed=1)
    rows = []
    for n in sizes:
        train_file = os.path.join(work, f"train-{n}.txt")
        t = time.time()
        generate(train_file, n, seed=2)
        mb = os.path.getsize(train_file) / 1e6
        print(f"generated {n:,} lines ({mb:.0f} MB) in {time.time() - t:.0f} s", flush=True)
        for model in args.models.split(","):
            r = train(model, train_file, eval_file, args.steps, os.path.join(work, f"run-{model}-{n}"))
            r.update(lines=n, data_mb=round(mb))
            rows.append(r)
            print(json.dumps(r), flush=True)
        if n == sizes[0]:
            r = train("fasttext", train_file, eval_file, args.steps, os.path.join(work, f"run-2w-{n}"), workers=2)
            r.update(lines=n, data_mb=round(mb))
            rows.append(r)
            print(json.dumps(r), flush=True)
        os.remove(train_file)
    out = {
        "command": "python bench/scale.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip(),
        "date": datetime.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, {cpu_model()}; Python {platform.python_version()}",
        "rows": rows,
    }
    os.makedirs(os.path.join(REPO, "bench", "results"), exist_ok=True)
    json.dump(out, open(os.path.join(REPO, "bench", "results", "scale.json"), "w"), indent=2)
    if not args.no_benchmarks_md:
        update_benchmarks("Scale", section(out))


def section(out: dict) -> str:
    rows = out["rows"]
    lines = [
        "## Scale (generated data: memory and speed as it grows, one worker against two)",
        "",
        f"Command: `{out['command']}` on {out['date']}; {out['machine']}. Generated 10-class lines of 5-60 "
        "characters (about 22 on average); each run trains the `config/thucnews/` config for a fixed number of steps "
        "(`--set max_steps=N`), streaming its data from the file (`in_memory_mb=0`), and evaluates once on 10,000 generated lines. Peak RSS: GNU time, the largest process. "
        "The one-worker rows are the baseline of the two-worker row (same data, steps and global batch).",
        "",
        "| model | lines | data MB | workers | steps | train s | examples/s | eval accuracy | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['lines']:,} | {r['data_mb']} | {r['workers']} | {r['steps']} | {r['train_s']} | "
                     f"{r['examples_per_s']:,} | {r['accuracy']} | {r['peak_rss_mb']} |")
    sizes = sorted({r["lines"] for r in rows})
    if len(sizes) > 1:
        for model in sorted({r["model"] for r in rows}):
            a = [r for r in rows if r["model"] == model and r["lines"] == sizes[0] and r["workers"] == 1]
            b = [r for r in rows if r["model"] == model and r["lines"] == sizes[-1] and r["workers"] == 1]
            if a and b:
                lines.append("")
                lines.append(f"{model}: peak RSS at {sizes[-1]:,} lines is {b[0]['peak_rss_mb'] / a[0]['peak_rss_mb']:.2f}x "
                             f"that at {sizes[0]:,} (target: at most 1.2x).")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
