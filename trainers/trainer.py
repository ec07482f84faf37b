"""The one trainer every model uses: ``model.fit`` with callbacks, inside a tf.distribute scope.

config -> data (data_helpers.dataset) -> model (models) -> fit (evaluation every eval_every
steps, checkpoints every checkpoint_every steps, the best weights by eval macro-F1,
TensorBoard) -> report of the best model -> SavedModel export (predictors.export).
"""

from __future__ import annotations

import math
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

from data_helpers.dataset import LoadedExamples, PreparedData, prepare_data
from data_helpers.io_utils import atomic_write_json, fault_point, read_json
from data_helpers.vocab import fingerprint
from data_helpers.word_vectors import load_word_vectors
from models import build_model
from predictors.export import export_model
from trainers.optimizers import LazyAdam, LazyAdamW

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


def _inference_fn(model: keras.Model):
    fn = getattr(model, "_textcls_infer", None)
    if fn is None:
        fn = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec([None, None], tf.int32)])
        model._textcls_infer = fn
    return fn


def predict_probabilities(model: keras.Model, x: np.ndarray, binary: bool, batch_size: int = 256) -> np.ndarray:
    """[n, n_labels] probabilities (a binary model's one sigmoid output becomes two columns).

    Texts go in length order, each batch cut to its longest text: the models ignore
    padding, so this only saves time.
    """
    fn = _inference_fn(model)
    lengths = (x != 0).sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    width_out = 1 if binary else model.output_shape[-1]
    out = np.zeros((len(x), width_out), np.float32)
    for i in range(0, len(x), batch_size):
        idx = order[i : i + batch_size]
        out[idx] = fn(tf.constant(x[idx, : max(1, int(lengths[idx].max()))])).numpy()
    return np.concatenate([1.0 - out, out], axis=1) if binary else out


def bucket_boundaries(sequence_length: int) -> list[int]:
    """Length buckets for training batches: 8, 12, 18, 27, ... below sequence_length."""
    out, b = [], 8
    while b < sequence_length:
        out.append(b)
        b = int(b * 1.5)
    return out


def eval_metrics(probs: np.ndarray, y: np.ndarray) -> dict:
    pred = probs.argmax(axis=1)
    p_true = np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)
    return {
        "loss": float(-np.log(p_true).mean()),
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro", labels=np.arange(probs.shape[1]), zero_division=0)),
    }


def evaluation_report(probs: np.ndarray, y: np.ndarray, labels: list[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1 by class name, confusion matrix."""
    pred = probs.argmax(axis=1)
    ids = list(range(len(labels)))
    per_class = classification_report(y, pred, labels=ids, target_names=labels, output_dict=True, zero_division=0)
    return {
        **eval_metrics(probs, y),
        "examples": int(len(y)),
        "per_class": {name: per_class[name] for name in labels},
        "confusion_matrix": {"labels": labels, "rows_true_cols_predicted": confusion_matrix(y, pred, labels=ids).tolist()},
        "table": classification_report(y, pred, labels=ids, target_names=labels, digits=4, zero_division=0),
    }


class EvalAndCheckpoint(keras.callbacks.Callback):
    """Every eval_every steps (and at each epoch's end): loss, accuracy and macro-F1 on the
    eval data, the best weights by macro-F1 saved apart. Every checkpoint_every steps: a
    checkpoint (model and optimizer) through a CheckpointManager that keeps the last few."""

    def __init__(self, data: PreparedData, cfg, run: "RunState", log=print, stop_event=None):
        super().__init__()
        self.data, self.cfg, self.run, self.log = data, cfg, run, log
        self.stop_event = stop_event
        self.stopped_at = None
        self.writer = tf.summary.create_file_writer(os.path.join(cfg.output_path, "logs", "eval"))
        self._last_eval_step = -1

    @property
    def best(self) -> dict:
        return self.run.best

    @property
    def history(self) -> list:
        return self.run.history

    def step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        step = self.step()
        fault_point(f"step:{step}")
        if step % self.cfg.eval_every == 0:
            self.evaluate(step)
        if step % self.cfg.checkpoint_every == 0:
            self.run.checkpoint(step)
        if self.stop_event is not None and self.stop_event.is_set():
            self.run.checkpoint(step)
            self.stopped_at = step
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.evaluate(self.step())

    def evaluate(self, step: int) -> None:
        if step == self._last_eval_step:
            return
        self._last_eval_step = step
        probs = predict_probabilities(self.model, self.data.x_eval, self.data.artifacts.binary)
        m = eval_metrics(probs, self.data.y_eval)
        better = m["macro_f1"] > self.best["macro_f1"]
        if better:
            self.run.save_best(self.model, {**m, "step": step})
        self.history.append({"step": step, **m})
        with self.writer.as_default(step=step):
            for k, v in m.items():
                tf.summary.scalar(k, v)
        self.log(
            f"\nstep {step}: eval loss {m['loss']:.4f}  accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}"
            + ("  (best so far)" if better else "")
        )


class ResumeError(RuntimeError):
    """ckpt_model_path holds checkpoints that this config cannot resume (one clear line)."""


class TrainingInterrupted(RuntimeError):
    """Training stopped on request (SIGINT/SIGTERM) after writing a checkpoint."""


# Keys that do not change what a run computes: changing them between a kill and the resume is fine.
_RESUME_FREE_KEYS = {"eval_every", "checkpoint_every", "max_checkpoints", "keep_exports", "output_path", "pb_model_path", "ckpt_model_path"}


class RunState:
    """A run's checkpoints and bookkeeping in ckpt_model_path, all crash-safe.

    - ``ckpt-<step>`` (tf.train.CheckpointManager: model, optimizer with its step counter and
      learning-rate schedule); the manager updates its index file only after a checkpoint is
      complete, so a kill mid-write leaves the previous one in charge.
    - ``train_state.json``: which run the checkpoints belong to (a fingerprint of the vocab and
      every config key that changes the computation), the eval history, whether it completed.
    - ``best.weights.h5`` + ``best.json``: the best weights by eval macro-F1 and their scores.
    Every file is written to a temporary name and renamed.
    """

    def __init__(self, cfg, model, vocab_fingerprint: str, log=print):
        self.cfg, self.model, self.log = cfg, model, log
        self.dir = cfg.ckpt_model_path
        os.makedirs(self.dir, exist_ok=True)
        settings = {k: v for k, v in cfg.to_dict().items() if k not in _RESUME_FREE_KEYS}
        self.fingerprint = fingerprint({"vocab": vocab_fingerprint, "config": settings})
        self.ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
        self.manager = tf.train.CheckpointManager(self.ckpt, self.dir, max_to_keep=cfg.max_checkpoints)
        self.state_path = os.path.join(self.dir, "train_state.json")
        self.best_path = os.path.join(self.dir, "best.weights.h5")
        self.best = {"macro_f1": -1.0, "step": 0}
        self.history: list[dict] = []

    def _clear(self) -> None:
        for name in os.listdir(self.dir):
            if name.startswith(("ckpt-", "checkpoint", "best.", ".best.", "train_state.json", ".train_state.json")):
                os.remove(os.path.join(self.dir, name))
        self.manager = tf.train.CheckpointManager(self.ckpt, self.dir, max_to_keep=self.cfg.max_checkpoints)

    def start(self, restart: bool = False) -> int:
        """Resume from the last complete checkpoint (returns its step) or start afresh (0)."""
        latest = self.manager.latest_checkpoint
        state = None
        if os.path.exists(self.state_path):
            try:
                state = read_json(self.state_path)
            except ValueError:
                state = None
        if restart:
            self._clear()
            self.log(f"{self.dir}: --restart: previous checkpoints removed, starting afresh")
        elif latest and state and state.get("completed"):
            self._clear()
            self.log(f"{self.dir}: the previous run there completed; starting a new one")
        elif latest:
            if not state or state.get("run") != self.fingerprint:
                raise ResumeError(
                    f"{self.dir} holds checkpoints of a run with other settings or data; "
                    "use --restart to start afresh (they will be deleted) or point ckpt_model_path elsewhere"
                )
            self.model.optimizer.build(self.model.trainable_variables)
            self.ckpt.restore(latest).assert_existing_objects_matched()
            step = int(self.model.optimizer.iterations.numpy())
            self.history = [h for h in state.get("history", []) if h["step"] <= step]
            best_json = os.path.join(self.dir, "best.json")
            if os.path.exists(best_json) and os.path.exists(self.best_path):
                self.best = read_json(best_json)
            self.log(f"resuming from {latest}: step {step}, best eval macro-F1 so far {self.best['macro_f1']:.4f}")
            return step
        elif os.listdir(self.dir):
            self._clear()  # leftovers without a complete checkpoint
        self._write_state(completed=False)
        return 0

    def _write_state(self, completed: bool) -> None:
        atomic_write_json(self.state_path, {"run": self.fingerprint, "completed": completed, "history": self.history})

    def checkpoint(self, step: int) -> None:
        if self.manager.latest_checkpoint and self.manager.latest_checkpoint.endswith(f"-{step}"):
            return
        self._write_state(completed=False)
        fault_point(f"checkpoint:{step}")
        self.manager.save(checkpoint_number=step)

    def save_best(self, model, metrics: dict) -> None:
        tmp = os.path.join(self.dir, ".best.tmp.weights.h5")
        model.save_weights(tmp)
        os.replace(tmp, self.best_path)
        atomic_write_json(os.path.join(self.dir, "best.json"), metrics)
        self.best = metrics

    def complete(self) -> None:
        self._write_state(completed=True)


class Trainer:
    """Trains, evaluates and exports the model a config describes.

    Example:
        >>> from data_helpers.config import load_config
        >>> report = Trainer(load_config("config/textcnn_config.json")).train()
        >>> report["accuracy"]
    """

    def __init__(self, cfg, log=print, verbose: int | None = None, restart: bool = False, stop_event=None):
        """``restart``: ignore and delete checkpoints in ckpt_model_path instead of resuming.
        ``stop_event`` (a threading.Event): when set, training stops after the current step,
        writes a checkpoint and raises :class:`TrainingInterrupted`."""
        self.cfg = cfg
        self.log = log
        self.verbose = verbose if verbose is not None else (1 if sys.stdout.isatty() else 2)
        self.restart = restart
        self.stop_event = stop_event

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

    def _build(self, data: PreparedData, total_steps: int):
        cfg = self.cfg
        num_outputs = 1 if data.artifacts.binary else len(data.artifacts.labels)
        model = build_model(cfg, len(data.artifacts.tokens), num_outputs)
        if cfg.word_vectors_path:
            rows, vecs = load_word_vectors(cfg.word_vectors_path, data.artifacts.tokens, cfg.embedding_size)
            emb = model.get_layer("embedding").embeddings
            table = keras.ops.convert_to_numpy(emb)
            table[rows] = vecs
            emb.assign(table)
            self.log(
                f"word vectors: {len(rows)} of {len(data.artifacts.tokens) - 2} vocabulary tokens "
                f"initialised from {cfg.word_vectors_path}"
            )
        cls = OPTIMIZERS[cfg.optimization]
        extra = {"weight_decay": cfg.weight_decay} if issubclass(cls, keras.optimizers.AdamW) else {}
        optimizer = cls(learning_rate=self._learning_rate(total_steps), global_clipnorm=cfg.max_grad_norm, **extra)
        if num_outputs == 1:
            loss = keras.losses.BinaryCrossentropy(label_smoothing=cfg.label_smoothing)
            metrics = [keras.metrics.BinaryAccuracy(name="accuracy")]
        else:
            loss = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
            metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
        return model

    def _dataset(self, data: PreparedData) -> tf.data.Dataset:
        cfg = self.cfg
        if data.artifacts.binary:
            y = data.y_train.astype(np.float32)[:, None]
        else:
            y = np.eye(len(data.artifacts.labels), dtype=np.float32)[data.y_train]
        lengths = (data.x_train != 0).sum(axis=1).astype(np.int32)
        ds = tf.data.Dataset.from_tensor_slices((data.x_train, y, lengths))
        # An endless stream cut into epochs of a fixed number of steps (fit's steps_per_epoch):
        # bucketing makes the batch count vary a little from pass to pass.
        ds = ds.shuffle(len(y), seed=cfg.seed, reshuffle_each_iteration=True).repeat()
        # Batches of texts of similar length, each cut to its longest text: the models
        # ignore padding, so this changes nothing but the time a step takes.
        boundaries = bucket_boundaries(cfg.sequence_length)
        ds = ds.bucket_by_sequence_length(
            lambda x, y, n: n, boundaries, [cfg.batch_size] * (len(boundaries) + 1), no_padding=True
        )
        ds = ds.map(lambda x, y, n: (x[:, : tf.maximum(1, tf.reduce_max(n))], y))
        return ds.prefetch(tf.data.AUTOTUNE)

    def train(self, examples: LoadedExamples | None = None) -> dict:
        """Train, evaluate and export; ``examples`` from :func:`load_examples` if already read."""
        cfg, log = self.cfg, self.log
        set_seed(cfg.seed)
        t0 = time.time()
        data = prepare_data(cfg, examples, log=log)
        log(f"data: {len(data.y_train)} training and {len(data.y_eval)} eval examples ({time.time() - t0:.1f} s)")

        steps = math.ceil(len(data.y_train) / cfg.batch_size)
        strategy = tf.distribute.get_strategy()
        with strategy.scope():
            model = self._build(data, steps * cfg.epochs)
        run = RunState(cfg, model, data.artifacts.fingerprint, log)
        start = run.start(self.restart)
        evaluator = EvalAndCheckpoint(data, cfg, run, log, self.stop_event)
        evaluator.set_model(model)  # also used when a resumed run has no step left to train
        callbacks = [
            evaluator,
            keras.callbacks.TensorBoard(os.path.join(cfg.output_path, "logs"), write_graph=False, update_freq=cfg.eval_every),
        ]
        log(f"training {cfg.model_name}: {model.count_params():,} parameters, {cfg.epochs} epochs x {steps} steps")
        t1 = time.time()
        # The batch stream is fixed by the seed, so the step is the position in the data: a
        # resumed run skips the batches already trained on, finishes the interrupted epoch,
        # then runs the rest.
        dataset = self._dataset(data)
        fit = dict(shuffle=False, callbacks=callbacks, verbose=self.verbose)
        first = start
        if first % steps:  # finish the interrupted epoch
            epoch = first // steps
            model.fit(dataset.skip(first), initial_epoch=epoch, epochs=epoch + 1, steps_per_epoch=steps - first % steps, **fit)
            first = (epoch + 1) * steps
        if first // steps < cfg.epochs and evaluator.stopped_at is None:
            model.fit(dataset.skip(first), initial_epoch=first // steps, epochs=cfg.epochs, steps_per_epoch=steps, **fit)
        train_seconds = time.time() - t1
        if evaluator.stopped_at is not None:
            raise TrainingInterrupted(
                f"stopped at step {evaluator.stopped_at}; checkpoint saved in {cfg.ckpt_model_path}. "
                f"Run the same command again to resume"
            )
        run.checkpoint(evaluator.step())
        best_path = run.best_path
        if not os.path.exists(best_path):  # resumed at the very end: nothing evaluated yet
            evaluator.evaluate(evaluator.step())
        model.load_weights(best_path)
        report = evaluation_report(predict_probabilities(model, data.x_eval, data.artifacts.binary), data.y_eval, data.artifacts.labels)
        export_dir = export_model(model, data.artifacts, cfg.pb_model_path, keep=cfg.keep_exports, log=log)
        run.complete()
        table = report.pop("table")
        report = {
            "model_name": cfg.model_name,
            "config": cfg.source,
            "eval_data": cfg.eval_data,
            "best_step": evaluator.best["step"],
            "train_seconds": round(train_seconds, 1),
            "train_examples_per_second": round((cfg.epochs * steps - start) * cfg.batch_size / max(train_seconds, 1e-9), 1),
            "resumed_from_step": start,
            "export": export_dir,
            **report,
            "history": evaluator.history,
        }
        atomic_write_json(os.path.join(cfg.output_path, "report.json"), report)
        log(f"\nbest model (step {report['best_step']}) on {cfg.eval_data}:\n{table}")
        log(f"accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}  report: {cfg.output_path}/report.json")
        return report
