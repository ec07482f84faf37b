"""``ensemble_size`` > 1: one config trained several times and exported as one SavedModel.

Member k (1, 2, ...) is the config with ``seed + k - 1``: its own initial weights, data order and
dropout, on the same data, vocabulary and settings. Each member is an ordinary run of
:class:`trainers.trainer.Trainer` in its own folders, ``output_path/members/k`` (its report and
its export, ``output_path/members/k/export/<version>``) and ``ckpt_model_path/members/k`` (its
checkpoints), so a member resumes as any run does; a member that completed with the same
settings and data is not trained again. Then the chief writes the members' in-graph ensemble
(:func:`predictors.ensemble.export_ensemble`: the mean of their probabilities, with an
``explain`` signature) as the next version in ``pb_model_path``, scores it on eval_data through
the Predictor and writes ``output_path/report.json``.

Averaging independently trained copies removes the part of each copy's errors that comes from
its own initialisation and data order (Lakshminarayanan et al. 2017 call such ensembles "deep
ensembles"); it costs ensemble_size times the training and the serving compute.
"""

from __future__ import annotations

import os
import time

import numpy as np

from data_helpers.io_utils import atomic_write_json, atomic_write_text
from data_helpers.reader import read_class_names, scan_all
from trainers.evaluation import EXAMPLES_EACH, REPORT_TEXTS, evaluation_report
from trainers.report_html import render as render_report
from trainers.run_state import RunLock, metric_name
from trainers.strategy import worker_info

__all__ = ["member_config", "train_ensemble", "wrong_examples"]


def member_config(cfg, k: int):
    """The config of member ``k`` (1-based) of ``cfg``'s ensemble."""
    out = os.path.join(cfg.output_path, "members", str(k))
    return cfg.replace(ensemble_size=1, seed=cfg.seed + k - 1, output_path=out,
                       ckpt_model_path=os.path.join(cfg.ckpt_model_path, "members", str(k)),
                       pb_model_path=os.path.join(out, "export"), keep_exports=1)


def _eval_examples(cfg) -> tuple[list[str], list[str]]:
    """eval_data's texts and label names, as the user wrote them (the Predictor segments word text)."""
    names = read_class_names(cfg.class_names) if cfg.class_names else None
    pairs = list(scan_all(cfg.eval_data, id_to_name=names, log=lambda *a: None))
    return [text for text, _ in pairs], [label for _, label in pairs]


def wrong_examples(texts, labels, probs, classes, limit: int = REPORT_TEXTS, each: int = EXAMPLES_EACH) -> dict:
    """report.html's examples, as :func:`trainers.evaluation.report_examples` gives them for one
    model: ``{(true, predicted): [texts]}`` among the first ``limit`` texts, at most ``each`` per pair."""
    out: dict = {}
    for text, label, row in list(zip(texts, labels, probs))[:limit]:
        predicted = classes[int(np.argmax(row))]
        if predicted != label and len(out.setdefault((label, predicted), [])) < each:
            out[(label, predicted)].append(text)
    return out


def train_ensemble(trainer) -> dict:
    """Train ``trainer.cfg``'s members one after the other, then export and score their ensemble."""
    from predictors import Predictor
    from predictors.ensemble import export_ensemble
    from trainers.trainer import Trainer

    cfg = trainer.cfg
    info = worker_info()
    log = trainer.log if info.is_chief else (lambda *a, **k: None)
    lock = RunLock(cfg.ckpt_model_path) if info.is_chief else None
    try:
        reports = []
        for k in range(1, cfg.ensemble_size + 1):
            member = member_config(cfg, k)
            log(f"\nensemble member {k} of {cfg.ensemble_size} (seed {member.seed}): {member.output_path}")
            member_trainer = Trainer(member, log=trainer.log, verbose=trainer.verbose, restart=trainer.restart,
                                     stop_event=trainer.stop_event, reuse_completed=True)
            reports.append(member_trainer.train())
        if not info.is_chief:
            return {"worker": info.index, "members": reports}
        t0 = time.time()
        export_dir = export_ensemble([r["export"] for r in reports], cfg.pb_model_path, keep=cfg.keep_exports, log=log)
        texts, labels = _eval_examples(cfg)
        predictor = Predictor.from_saved_model(export_dir)
        classes = predictor.classes_
        probs = predictor.predict_proba_array(texts)
        report = evaluation_report(probs, np.array([classes.index(label) for label in labels]), classes)
    finally:
        if lock is not None:
            lock.release()
    table = report.pop("table")
    shown = ("accuracy", "macro_f1")
    report = {
        "model_name": cfg.model_name,
        "config": cfg.source,
        "eval_data": cfg.eval_data,
        "ensemble_size": cfg.ensemble_size,
        "best_step": [r["best_step"] for r in reports],
        "select_by": cfg.select_by,
        "multi_label": False,
        "train_seconds": round(sum(r["train_seconds"] for r in reports), 1),
        "export_and_eval_seconds": round(time.time() - t0, 1),  # the ensemble export, then scoring it
        "export": export_dir,
        **report,
        "members": [{"seed": cfg.seed + k, "best_step": r["best_step"], "train_seconds": r["train_seconds"],
                     "export": r["export"], **{key: r[key] for key in shown}} for k, r in enumerate(reports)],
    }
    atomic_write_json(os.path.join(cfg.output_path, "report.json"), report)
    atomic_write_text(os.path.join(cfg.output_path, "report.html"), render_report(report, wrong_examples(texts, labels, probs, classes)))
    log(f"\nensemble of {cfg.ensemble_size} members (" + ", ".join(
        f"{metric_name(cfg.select_by)} {r[cfg.select_by]:.4f}" for r in reports) + f") on {cfg.eval_data}:\n{table}")
    log("  ".join(f"{metric_name(key)} {report[key]:.4f}" for key in shown) + f"  exported to {export_dir}; "
        f"report: {cfg.output_path}/report.json")
    return report
