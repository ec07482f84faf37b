"""Tuning runs: a config with overrides, trained on part of its train_data and scored on the rest,
beside the character TF-IDF baseline on the same split; every run is appended to a log.

    python bench/tune.py --config config/textcnn_config.json --name "ema 0.99" --set ema_momentum=0.99

The demo corpus has no dev file, and its eval file is what the benchmark reports on, so tuning
happens on a seeded split of train_data (`--dev-share`, 10%): the run trains on the rest, keeps its
best checkpoint on the split and is scored there through its export (the Predictor). With
``--dev FILE`` (THUCNews' dev.txt, say) it trains on all of train_data and is scored on FILE.
Appends to bench/results/tuning.jsonl and rewrites TUNING.md from it, so what was tried stays
on record with its command, machine and figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.demo import run_record, tfidf_baseline  # noqa: E402

LOG = os.path.join(REPO, "bench", "results", "tuning.jsonl")
TUNING_MD = os.path.join(REPO, "TUNING.md")


def split_lines(path: str, share: float, seed: int, workdir: str) -> tuple[str, str]:
    """(train part, dev part) of a text file's non-empty lines: a seeded `share` goes to dev."""
    lines = [line for line in open(path, encoding="utf-8").read().split("\n") if line.strip()]
    order = list(range(len(lines)))
    random.Random(seed).shuffle(order)
    n_dev = max(1, round(share * len(lines)))
    dev = set(order[:n_dev])
    parts = {}
    for name, keep in (("train", lambda i: i not in dev), ("dev", lambda i: i in dev)):
        parts[name] = os.path.join(workdir, f"{name}.txt")
        with open(parts[name], "w", encoding="utf-8") as f:
            f.write("\n".join(line for i, line in enumerate(lines) if keep(i)) + "\n")
    return parts["train"], parts["dev"]


def baseline(train_path: str, dev_path: str, names: list[str] | None = None) -> dict:
    """The demo benchmark's baseline (character 1-3-gram TF-IDF + LinearSVC), on the same split."""
    from data_helpers.reader import read_examples

    return tfidf_baseline(*(read_examples(p, id_to_name=names, log=lambda *a: None) for p in (train_path, dev_path)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--name", required=True, help="what this run tries, for the log")
    ap.add_argument("--set", action="append", default=[], help="config override")
    ap.add_argument("--dev", help="score on this file (and train on all of train_data)")
    ap.add_argument("--dev-share", type=float, default=0.1, help="without --dev: the share of train_data held out")
    ap.add_argument("--seed", type=int, default=13, help="the split's seed")
    ap.add_argument("--log", default=LOG)
    ap.add_argument("--markdown", default=TUNING_MD)
    args = ap.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="tune-")
    try:
        return tune(args, workdir, argv)
    finally:  # checkpoints of large n-gram tables take gigabytes
        shutil.rmtree(workdir, ignore_errors=True)


def tune(args, workdir: str, argv) -> dict:
    """Train on the split, score on dev, log the row."""
    from sklearn.metrics import accuracy_score, f1_score

    from data_helpers.config import load_config
    from data_helpers.reader import read_class_names, read_examples
    from predictors import Predictor
    from trainers.trainer import Trainer

    cfg = load_config(args.config, args.set)
    if args.dev:
        train_path, dev_path, split = cfg.train_data, args.dev, f"train_data, scored on {args.dev}"
    else:
        train_path, dev_path = split_lines(cfg.train_data, args.dev_share, args.seed, workdir)
        split = f"{1 - args.dev_share:.0%} of train_data, scored on the other {args.dev_share:.0%} (seed {args.seed})"
    runs = [f"train_data={train_path}", f"eval_data={dev_path}", f"output_path={workdir}/out", f"ckpt_model_path={workdir}/ckpt",
            f"pb_model_path={workdir}/pb"]
    cfg = load_config(args.config, args.set + runs)
    report = Trainer(cfg, verbose=0, restart=True, log=lambda *a: None).train()
    names = read_class_names(cfg.class_names) if cfg.class_names else None  # label ids in the file -> the export's names
    dev = read_examples(dev_path, id_to_name=names, log=lambda *a: None)
    pred = Predictor.from_saved_model(report["export"]).predict(dev.texts)
    row = {
        **run_record("tune.py", argv),
        "config": args.config,
        "name": args.name,
        "overrides": args.set,
        "split": split,
        "dev_accuracy": round(float(accuracy_score(dev.labels, pred)), 4),
        "dev_macro_f1": round(float(f1_score(dev.labels, pred, average="macro")), 4),
        "best_step": report["best_step"],
        "train_seconds": report["train_seconds"],
        "baseline": baseline(train_path, dev_path, names),
    }
    print(json.dumps(row, ensure_ascii=False), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.log)), exist_ok=True)
    with open(args.log, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
    write_markdown(args.log, args.markdown)
    return row


def write_markdown(log: str, path: str) -> None:
    rows = [json.loads(line) for line in open(log, encoding="utf-8") if line.strip()]
    out = ["# Tuning log", "",
           "Every tuning run, appended by `bench/tune.py` (never on a test or reporting file): the config, what was "
           "changed, where it was scored, and the character TF-IDF + LinearSVC baseline on the same split in the same run.",
           ""]
    for config in dict.fromkeys(r["config"] for r in rows):
        out += [f"## {config}", "",
                "| tried | overrides | dev accuracy | vs baseline | dev macro-F1 | best step | train s | scored on | command, date, machine |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if r["config"] != config:
                continue
            sets = " ".join(f"`{s}`" for s in r["overrides"]) or "-"
            gap = 100 * (r["dev_accuracy"] - r["baseline"]["accuracy"])
            out.append(f"| {r['name']} | {sets} | {r['dev_accuracy']:.4f} | {gap:+.2f} pts ({r['baseline']['accuracy']:.4f}) | "
                       f"{r['dev_macro_f1']:.4f} | {r['best_step']} | {r['train_seconds']} | {r['split']} | "
                       f"`{r['command']}`, {r['date']}, {r['machine']['cores']} cores {r['machine']['cpu']} |")
        out.append("")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    main()
