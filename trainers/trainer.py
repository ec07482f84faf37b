"""The one trainer every model uses, on one CPU, several GPUs or several machines alike.

config -> strategy (trainers.strategy) -> data (data_helpers.dataset, data_helpers.pipeline)
-> model (models) -> training loop (trainers.loop: ``strategy.run`` in a ``tf.function``), with
evaluation every eval_every steps (trainers.evaluation) and checkpoints every checkpoint_every
steps (trainers.run_state) -> report of the best model -> SavedModel export (predictors.export).
Only the chief logs and writes.
"""

from __future__ import annotations

import math
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from data_helpers.dataset import PreparedData, prepare_data, save_vocab
from data_helpers.io_utils import atomic_write_json, atomic_write_text, fault_point, read_json
from data_helpers.long_text import config_tokens_read, head_tail_split
from data_helpers.pipeline import eval_batches, shards_by_file, training_batches
from data_helpers.reader import scan_all
from data_helpers.tokenizer import Tokenizer
from data_helpers.vocab import TextEncoder
from data_helpers.word_vectors import load_word_vectors
from models import build_model, window_model
from predictors.export import export_model
from trainers.evaluation import (eval_metrics, evaluation_report, multilabel_metrics, multilabel_report, predict_dataset,
                                 report_examples, tune_thresholds)
from data_helpers.class_weights import class_weights
from trainers.losses import head_kind, per_example_loss
from trainers.loop import TrainStep
from trainers.optimizers import LazyAdam, LazyAdamW, pre_reduced
from trainers.report_html import render as render_report
from trainers.run_state import ResumeError, RunLock, RunState, metric_name
from trainers.strategy import describe, strategy_from_env, worker_info
from trainers.weight_average import averaged_weights, optimizer_options

__all__ = ["OPTIMIZERS", "ClusterError", "ResumeError", "Trainer", "TrainingInterrupted", "set_seed"]

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "lazy_adam": LazyAdam,
    "lazy_adamw": LazyAdamW,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}


def set_seed(seed: int) -> None:
    """Same config, same CPU -> same weights, same data order, same metrics."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()



class TrainingInterrupted(RuntimeError):
    """Training stopped on request (SIGINT/SIGTERM) after writing a checkpoint."""


class ClusterError(RuntimeError):
    """Another worker of a multi-worker run stopped; this one stops too (one clear line)."""


# What a collective op raises once TensorFlow's health check has found a peer down.
_PEER_LOST = (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.DeadlineExceededError,
              tf.errors.InternalError, tf.errors.FailedPreconditionError, tf.errors.AbortedError)


def _silent(*args, **kwargs):
    pass


class Trainer:
    """Trains, evaluates and exports the model a config describes.

    The strategy comes from the environment (see :mod:`trainers.strategy`); ``batch_size`` is
    the global batch, split over every replica of every worker.

    Example:
        >>> from data_helpers.config import load_config
        >>> report = Trainer(load_config("config/textcnn_config.json")).train()
        >>> report["accuracy"]
    """

    def __init__(self, cfg, log=print, verbose: int | None = None, restart: bool = False, stop_event=None,
                 reuse_completed: bool = False):
        """``restart``: ignore and delete checkpoints in ckpt_model_path instead of resuming.
        ``stop_event`` (a threading.Event): when set, training stops after the current step,
        writes a checkpoint and raises :class:`TrainingInterrupted`.
        ``verbose``: 0 silent, 1 a progress bar, 2 one line per epoch (default: 1 on a terminal).
        ``reuse_completed``: when a run with the same settings and data already completed in
        ckpt_model_path and its report and export are still there, return that report instead of
        training again (one process only; an ensemble's members use it)."""
        self.cfg = cfg
        self.log = log
        self.verbose = verbose if verbose is not None else (1 if sys.stdout.isatty() else 2)
        self.restart = restart
        self.stop_event = stop_event
        self.reuse_completed = reuse_completed

    # ---- building -------------------------------------------------------------------
    def _learning_rate(self, total_steps: int):
        cfg = self.cfg
        if cfg.lr_schedule == "constant":
            return cfg.learning_rate
        warmup = min(cfg.warmup_steps, total_steps - 1)
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else cfg.learning_rate,
            decay_steps=max(1, total_steps - warmup),
            warmup_target=cfg.learning_rate if warmup else None,
            warmup_steps=warmup,
        )

    def _build(self, data: PreparedData, total_steps: int, log):
        """The model and its optimizer (clipping is the training step's: see trainers.loop)."""
        cfg = self.cfg
        num_outputs = 1 if data.artifacts.binary else len(data.artifacts.labels)
        model = build_model(cfg, len(data.artifacts.tokens), num_outputs)
        if cfg.word_vectors_path:
            rows, vecs = load_word_vectors(cfg.word_vectors_path, data.artifacts.tokens, cfg.embedding_size)
            emb = window_model(model).get_layer("embedding").embeddings
            table = keras.ops.convert_to_numpy(emb)
            table[rows] = vecs
            emb.assign(table)
            log(
                f"word vectors: {len(rows)} of {len(data.artifacts.tokens) - 2} vocabulary tokens "
                f"initialised from {cfg.word_vectors_path}"
            )
        cls = OPTIMIZERS[cfg.optimization]
        extra = {"weight_decay": cfg.weight_decay} if issubclass(cls, keras.optimizers.AdamW) else {}
        optimizer = pre_reduced(cls)(learning_rate=self._learning_rate(total_steps), **extra, **optimizer_options(cfg.ema_momentum))
        optimizer.ema_every = cfg.ema_every
        optimizer.build(model.trainable_variables)
        return model, optimizer

    # ---- evaluation -------------------------------------------------------------------
    def _metrics(self, probs, y, labels, report: bool = False, thresholds=None) -> dict:
        """Single-label: accuracy, macro-F1 ...; multi-label: with per-label thresholds (tuned on
        this eval set when tune_thresholds, unless given)."""
        cfg = self.cfg
        if not cfg.multi_label:
            return evaluation_report(probs, y, labels) if report else eval_metrics(probs, y)
        if thresholds is None:
            thresholds = tune_thresholds(probs, y, cfg.threshold) if cfg.tune_thresholds else np.full(len(labels), cfg.threshold, np.float32)
        if report:
            return multilabel_report(probs, y, labels, thresholds, cfg.at_least_one)
        return {**multilabel_metrics(probs, y, thresholds, cfg.at_least_one), "thresholds": np.asarray(thresholds).tolist()}

    def _write_html_report(self, report, model, encoder, data: PreparedData, binary, label_sep, thresholds) -> None:
        """report.html beside report.json, with example texts read again from the first eval texts."""
        cfg = self.cfg

        # the user's own texts (a word model's eval_files are its segmented cache)
        eval_texts = scan_all(cfg.eval_data, id_to_name=data.id_to_name, log=lambda *a: None, label_sep=label_sep)
        examples = report_examples(model, encoder, eval_texts, data.artifacts.labels, binary, multi_label=cfg.multi_label,
                                   thresholds=thresholds, at_least_one=cfg.at_least_one)
        atomic_write_text(os.path.join(cfg.output_path, "report.html"), render_report(report, examples))

    def _evaluate(self, model, optimizer, evals, binary, labels, run: RunState, step: int, writer, log) -> None:
        key = self.cfg.select_by
        with averaged_weights(optimizer):  # ema_momentum: the average is what is evaluated, kept and exported
            m = self._metrics(*predict_dataset(model, evals, binary), labels)
            better = m[key] > run.best["score"]
            if better:
                run.save_best({**m, "step": step})
        m.pop("thresholds", None)
        run.history.append({"step": step, **m})
        with writer.as_default(step=step):
            for k, v in m.items():
                tf.summary.scalar(k, v)
        shown = ("micro_f1", "macro_f1", "subset_accuracy") if self.cfg.multi_label else ("accuracy", "macro_f1")
        log(
            f"\nstep {step}: eval loss {m['loss']:.4f}  " + "  ".join(f"{metric_name(k)} {m[k]:.4f}" for k in shown)
            + (f"  (best {metric_name(key)} so far)" if better else "")
        )

    def _completed_report(self, run: RunState) -> dict | None:
        """The report of the run that completed in ckpt_model_path with these settings and data,
        when its report and export are still there; else None."""
        path = os.path.join(self.cfg.output_path, "report.json")
        if not run.completed() or not os.path.isfile(path):
            return None
        try:
            report = read_json(path)
        except ValueError:
            return None
        export = report.get("export")
        if not export or not os.path.isfile(os.path.join(export, "saved_model.pb")):
            return None
        return report

    # ---- the run --------------------------------------------------------------------------
    def train(self) -> dict:
        """Train, evaluate and export."""
        cfg = self.cfg
        strategy = strategy_from_env()  # before any other TensorFlow op
        if cfg.ensemble_size > 1:
            from trainers.ensemble import train_ensemble

            return train_ensemble(self)
        info = worker_info()
        log = self.log if info.is_chief else _silent
        set_seed(cfg.seed)
        lock = RunLock(cfg.ckpt_model_path) if info.is_chief else None
        try:
            return self._train(strategy, info, log)
        finally:
            if lock is not None:
                lock.release()

    def _train(self, strategy, info, log) -> dict:
        cfg = self.cfg
        t0 = time.time()
        data = prepare_data(cfg, log=log, save=False, cache_writer=info.is_chief)
        try:
            return self._train_on(strategy, info, data, log, t0)
        finally:
            data.cleanup()

    def _train_on(self, strategy, info, data: PreparedData, log, t0) -> dict:
        cfg = self.cfg
        scan = data.scan
        log(f"data: {scan.train_examples} training and {scan.eval_examples} eval examples ({time.time() - t0:.1f} s)")
        read = config_tokens_read(cfg)
        if scan.longer_than_read:
            how = {"truncate": f"their first {read}",
                   "head_tail": "their first {} and last {}".format(*head_tail_split(read, cfg.head_share)),
                   "chunks": f"their first {read} in {cfg.max_chunks} windows of {cfg.sequence_length}"}[cfg.long_text]
            log(f"long texts: {scan.longer_than_read:,} of {scan.train_examples:,} training texts have more than "
                f"{read} tokens; long_text {cfg.long_text} reads {how}")
        log(f"strategy: {describe(strategy, info)}; global batch {cfg.batch_size}")
        if info.count > 1:
            how = ("by file: this worker reads every {n}th of {f} training files".format(n=info.count, f=len(data.train_files))
                   if shards_by_file(len(data.train_files), info.count)
                   else f"by record: {len(data.train_files)} training file(s) for {info.count} workers, each keeps its rows of every global batch")
            log(f"data sharding {how}")

        steps = math.ceil(scan.train_examples / cfg.batch_size)
        total = steps * cfg.epochs if cfg.max_steps is None else min(steps * cfg.epochs, cfg.max_steps)
        with strategy.scope():
            model, optimizer = self._build(data, total, log)
        encoder = TextEncoder(Tokenizer.from_config(data.artifacts.tokenizer), os.path.join(data.vocab_dir, "vocab.txt"), read)
        labels, binary = data.artifacts.labels, data.artifacts.binary
        label_sep = cfg.label_sep if cfg.multi_label else None
        kind = head_kind(binary, cfg.multi_label)
        weights = class_weights(cfg.class_weight, labels, scan.train_label_counts, scan.train_examples, cfg.multi_label, cfg.source)
        if weights is not None:
            log("class weights" + (" (positive term of each label)" if cfg.multi_label else "") + ": "
                + ", ".join(f"{name} {w:.3g}" for name, w in zip(labels, weights)))
        fits = lambda n: n * read * 4 <= cfg.in_memory_mb << 20  # noqa: E731
        batches = training_batches(
            data.train_files, labels, data.id_to_name, encoder, batch_size=cfg.batch_size, sequence_length=read,
            # A buffer larger than the data holds nothing more, but costs time in every checkpoint.
            seed=cfg.seed, shuffle_buffer=min(cfg.shuffle_buffer, scan.train_examples), worker=info.index, workers=info.count,
            separator=data.separator, in_memory=fits(scan.train_examples), label_sep=label_sep,
        )
        mb = scan.train_examples * read * 4 / 2**20
        log(f"training data: tokenized once and held in memory ({mb:.0f} MB of token ids)" if fits(scan.train_examples)
            else f"training data: streamed from {len(data.train_files)} file(s) every epoch, shuffle buffer "
                 f"{min(cfg.shuffle_buffer, scan.train_examples):,} ({mb:.0f} MB of token ids > in_memory_mb {cfg.in_memory_mb})")
        evals = eval_batches(
            data.eval_files, labels, data.id_to_name, encoder, sequence_length=read, separator=data.separator,
            in_memory=fits(scan.eval_examples), label_sep=label_sep,  # evaluated every eval_every steps
        )
        iterator = iter(batches)
        run = RunState(cfg, model, optimizer, iterator, data.artifacts.fingerprint, info.is_chief, log,
                       n_thresholds=len(labels) if cfg.multi_label else 0)
        if self.reuse_completed and not self.restart and info.count == 1:
            done = self._completed_report(run)
            if done is not None:
                log(f"{cfg.ckpt_model_path}: completed before with these settings and data; "
                    f"reusing its export {done['export']} ({metric_name(cfg.select_by)} {done[cfg.select_by]:.4f})")
                return done
        start = run.start(self.restart)  # refuses other runs' checkpoints before anything is written
        if info.is_chief:
            save_vocab(data.artifacts, cfg.output_path, log)
        def loss_fn(y, probs):
            return per_example_loss(y, probs, kind=kind, num_labels=len(labels), label_smoothing=cfg.label_smoothing,
                                    loss=cfg.loss, gamma=cfg.focal_gamma, weights=weights)

        train_step = TrainStep(strategy, model, optimizer, loss_fn, kind, cfg.batch_size, cfg.max_grad_norm,
                               rdrop_alpha=cfg.rdrop_alpha, adversarial_epsilon=cfg.adversarial_epsilon)
        logs = os.path.join(cfg.output_path, "logs")
        eval_writer = tf.summary.create_file_writer(os.path.join(logs, "eval")) if info.is_chief else tf.summary.create_noop_writer()
        train_writer = tf.summary.create_file_writer(os.path.join(logs, "train")) if info.is_chief else tf.summary.create_noop_writer()
        log(f"training {cfg.model_name}: {model.count_params():,} parameters, {cfg.epochs} epochs x {steps} steps"
            + (f", stopping at step {total}" if total < steps * cfg.epochs else "")
            + (f"; evaluating and exporting the weights' moving average (ema_momentum {cfg.ema_momentum}"
               + (f", every {cfg.ema_every} steps" if cfg.ema_every > 1 else "") + ")" if cfg.ema_momentum else "")
            + (f"; R-Drop: each batch twice, loss + {cfg.rdrop_alpha} x the two predictions' symmetric KL" if cfg.rdrop_alpha else "")
            + (f"; adversarial training: loss + the loss with the embeddings moved {cfg.adversarial_epsilon} against it"
               if cfg.adversarial_epsilon else ""))

        t1 = time.time()
        step, last_eval = start, -1
        window = np.zeros(3)  # loss sum, correct, examples since the last report
        bar = None
        while step < total:
            if self.stop_event is not None and self.stop_event.is_set():
                run.checkpoint(step)
                raise TrainingInterrupted(
                    f"stopped at step {step}; checkpoint saved in {cfg.ckpt_model_path}. Run the same command again to resume"
                )
            if self.verbose == 1 and info.is_chief and bar is None:
                bar = keras.utils.Progbar(total, stateful_metrics=["loss", "accuracy"])
                bar.update(step)
            try:
                window += train_step(iterator)
            except _PEER_LOST as e:
                if info.count == 1:
                    raise
                lines = [ln.strip() for ln in (e.message or "").splitlines() if ln.strip()]
                telling = [ln for ln in lines if any(w in ln.lower() for w in ("down", "closed", "unavailable", "abort", "connect", "timed out"))]
                reason = f"{type(e).__name__}: {(telling or lines or ['-'])[0][:160]}"
                raise ClusterError(
                    f"worker {info.index} of {info.count}: the cluster lost a worker at step {step + 1} ({reason}); "
                    f"start every worker's command again to resume from the last checkpoint in {cfg.ckpt_model_path}"
                ) from None
            step += 1
            fault_point(f"step:{step}")
            epoch_end = step % steps == 0
            if step % cfg.eval_every == 0 or epoch_end or step == total:
                loss, acc = window[0] / max(window[2], 1), window[1] / max(window[2], 1)
                with train_writer.as_default(step=step):
                    tf.summary.scalar("loss", loss)
                    tf.summary.scalar("accuracy", acc)
                if bar is not None:
                    bar.update(step, [("loss", loss), ("accuracy", acc)])
                if epoch_end and self.verbose == 2:
                    log(f"epoch {step // steps}/{cfg.epochs}: train loss {loss:.4f}  accuracy {acc:.4f}  ({time.time() - t1:.1f} s)")
                window[:] = 0
                if info.is_chief and step != last_eval:
                    self._evaluate(model, optimizer, evals, binary, labels, run, step, eval_writer, log)
                    last_eval = step
            if step % cfg.checkpoint_every == 0:
                run.checkpoint(step)
        train_seconds = time.time() - t1
        run.checkpoint(step)
        if not info.is_chief:
            return {"worker": info.index, "step": step, "train_seconds": round(train_seconds, 1)}

        if not run.restore_best():  # resumed at the very end: nothing evaluated yet
            self._evaluate(model, optimizer, evals, binary, labels, run, step, eval_writer, log)
            run.restore_best()
        thresholds = run.best.get("thresholds")
        report = self._metrics(*predict_dataset(model, evals, binary), labels, report=True, thresholds=thresholds)
        decision = {"thresholds": thresholds, "at_least_one": cfg.at_least_one} if cfg.multi_label else None
        explain = cfg.export_explain and cfg.long_text != "chunks"
        if cfg.export_explain and not explain:
            log("export: no explain signatures for long_text chunks (the explanations read one window)")
        export_dir = export_model(model, data.artifacts, cfg.pb_model_path, keep=cfg.keep_exports, log=log, decision=decision,
                                  explain=explain)
        run.complete()
        table = report.pop("table")
        report = {
            "model_name": cfg.model_name,
            "config": cfg.source,
            "eval_data": cfg.eval_data,
            "best_step": run.best["step"],
            "select_by": cfg.select_by,
            "multi_label": cfg.multi_label,
            "train_seconds": round(train_seconds, 1),
            "train_examples_per_second": round((total - start) * cfg.batch_size / max(train_seconds, 1e-9), 1),
            "resumed_from_step": start,
            "workers": info.count,
            "replicas": strategy.num_replicas_in_sync,
            "export": export_dir,
            **report,
            "history": run.history,
        }
        atomic_write_json(os.path.join(cfg.output_path, "report.json"), report)
        self._write_html_report(report, model, encoder, data, binary, label_sep, thresholds)
        log(f"\nbest model (step {report['best_step']}) on {cfg.eval_data}:\n{table}")
        shown = ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss") if cfg.multi_label else ("accuracy", "macro_f1")
        log("  ".join(f"{metric_name(k)} {report[k]:.4f}" for k in shown) + f"  report: {cfg.output_path}/report.json, report.html")
        return report
