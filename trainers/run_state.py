"""A run's checkpoints and bookkeeping in ckpt_model_path: crash-safe, exact to resume, one run at a time.

- ``ckpt-<step>`` (tf.train.CheckpointManager): the model, the optimizer (its step counter, moments
  and learning-rate schedule), the input iterator (shuffle buffer and position) and the best weights
  so far with their score. Resuming from it continues exactly as the run would have gone on.
  The manager names a checkpoint in its index only once it is complete, so a kill mid-write leaves
  the previous one in charge.
- ``train_state.json``: which run the checkpoints belong to (a fingerprint of the vocab and every
  setting that changes the computation), the eval history, whether it completed.
- ``best.weights.h5`` + ``best.json``: the best weights by the eval metric `select_by` (macro-F1 by default), for people and tools.
- ``.lock``: held (``fcntl``) by the chief of a live run; a second run on the same folder stops.

Only the chief writes here. Other workers of a multi-worker run save their checkpoints into a
temporary folder, as tf.distribute needs every worker to save, and delete it at once.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tempfile

import tensorflow as tf

from data_helpers.io_utils import atomic_write_json, fault_point, read_json
from data_helpers.vocab import fingerprint

# Keys that do not change what a run computes: changing them between a kill and the resume is fine.
RESUME_FREE_KEYS = {"eval_every", "checkpoint_every", "max_checkpoints", "keep_exports", "output_path", "pb_model_path", "ckpt_model_path"}


class ResumeError(RuntimeError):
    """ckpt_model_path holds checkpoints that this config cannot resume, or a live run (one clear line)."""


class RunLock:
    """An exclusive ``fcntl`` lock on ``folder/.lock`` for as long as this process lives (or ``release``)."""

    def __init__(self, folder: str):
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, ".lock")
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(self._fd)
            raise ResumeError(
                f"{folder} is in use by a training run that is still going ({holder}); "
                "wait for it to finish, stop it, or point ckpt_model_path elsewhere"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:300]}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def metric_name(key: str) -> str:
    """How logs name a select_by metric."""
    return {"macro_f1": "macro-F1", "micro_f1": "micro-F1"}.get(key, key)


class BestWeights(tf.Module):
    """A copy of the model's weights at its best eval step, with that step and score, kept in the
    checkpoint: a resumed run knows the best of the steps before it, and forgets those after it."""

    def __init__(self, model, n_thresholds: int = 0, threshold: float = 0.5):
        super().__init__(name="best")
        self.weights = [tf.Variable(tf.zeros_like(w), trainable=False) for w in model.weights]
        self.score = tf.Variable(-1.0, dtype=tf.float64, trainable=False)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        # Multi-label: the per-label thresholds the best step was scored with.
        self.thresholds = tf.Variable(tf.fill([n_thresholds], tf.constant(threshold, tf.float32)), trainable=False)

    def keep(self, model, score: float, step: int, thresholds=None) -> None:
        for copy, w in zip(self.weights, model.weights):
            copy.assign(w.value)
        self.score.assign(score)
        self.step.assign(step)
        if thresholds is not None:
            self.thresholds.assign(thresholds)

    def put_into(self, model) -> None:
        for copy, w in zip(self.weights, model.weights):
            w.assign(copy)


class RunState:
    """Checkpoints, best weights and the run's state file (see the module docstring)."""

    def __init__(self, cfg, model, optimizer, iterator, vocab_fingerprint: str, is_chief: bool = True, log=print,
                 n_thresholds: int = 0):
        self.cfg, self.model, self.optimizer, self.log = cfg, model, optimizer, log
        self.is_chief = is_chief
        self.dir = cfg.ckpt_model_path
        settings = {k: v for k, v in cfg.to_dict().items() if k not in RESUME_FREE_KEYS}
        self.fingerprint = fingerprint({"vocab": vocab_fingerprint, "config": settings})
        self.select_by = cfg.select_by
        self.best_weights = BestWeights(model, n_thresholds, cfg.threshold)
        # model.variables includes the dropout layers' seed-generator states: without them a resumed
        # run would draw other dropout masks than an uninterrupted one.
        self.ckpt = tf.train.Checkpoint(
            model=model, variables=list(model.variables), optimizer=optimizer, data=iterator, best=self.best_weights
        )
        self.state_path = os.path.join(self.dir, "train_state.json")
        self.best_path = os.path.join(self.dir, "best.weights.h5")
        self.best = {"score": -1.0, "step": 0}
        self.history: list[dict] = []
        self.manager = self._manager()

    def _manager(self, where: str | None = None):
        return tf.train.CheckpointManager(self.ckpt, where or self.dir, max_to_keep=self.cfg.max_checkpoints)

    def _clear(self) -> None:
        for name in os.listdir(self.dir):
            if name.startswith(("ckpt-", "checkpoint", "best.", ".best.", "train_state.json", ".train_state.json")):
                os.remove(os.path.join(self.dir, name))
        self.manager = self._manager()

    def start(self, restart: bool = False) -> int:
        """Resume from the last complete checkpoint (returns its step) or start afresh (0).

        Refuses (ResumeError) before writing anything when the checkpoints belong to another run.
        """
        latest = tf.train.latest_checkpoint(self.dir) if os.path.isdir(self.dir) else None
        state = self._read_state()
        fresh_reason = None
        if restart:
            fresh_reason = f"{self.dir}: --restart: previous checkpoints removed, starting afresh"
        elif latest and state and state.get("completed"):
            fresh_reason = f"{self.dir}: the previous run there completed; starting a new one"
        elif latest:
            if not state or state.get("run") != self.fingerprint:
                raise ResumeError(
                    f"{self.dir} holds checkpoints of a run with other settings or data; "
                    "use --restart to start afresh (they will be deleted) or point ckpt_model_path elsewhere"
                )
            self.ckpt.restore(latest).assert_existing_objects_matched()
            step = int(self.optimizer.iterations.numpy())
            self.history = [h for h in state.get("history", []) if h["step"] <= step]
            self.best = self._best_from_weights()
            if self.is_chief:
                best_json = os.path.join(self.dir, "best.json")
                saved = read_json(best_json) if os.path.exists(best_json) else {}
                if saved.get("step") != self.best["step"]:  # best files from after the checkpoint: forget them
                    self._write_best({**next((h for h in self.history if h["step"] == self.best["step"]), {}), **self.best})
            self.log(f"resuming from {latest}: step {step}, best eval {metric_name(self.select_by)} so far {self.best['score']:.4f}")
            return step
        if self.is_chief:
            if fresh_reason:
                self.log(fresh_reason)
            if os.listdir(self.dir):
                self._clear()  # earlier checkpoints, or leftovers without a complete checkpoint
            self._write_state(completed=False)
        return 0

    def completed(self) -> bool:
        """Whether a run with these settings and data completed in this folder (its state says so
        and its checkpoints are there)."""
        state = self._read_state()
        return (state is not None and bool(state.get("completed")) and state.get("run") == self.fingerprint
                and bool(tf.train.latest_checkpoint(self.dir)))

    def _read_state(self) -> dict | None:
        """The state file's contents; None where it is missing or unreadable."""
        if not os.path.exists(self.state_path):
            return None
        try:
            return read_json(self.state_path)
        except ValueError:
            return None

    def _best_from_weights(self) -> dict:
        best = {"score": float(self.best_weights.score.numpy()), "step": int(self.best_weights.step.numpy())}
        if self.best_weights.thresholds.shape[0]:
            best["thresholds"] = self.best_weights.thresholds.numpy().tolist()
        return best

    def _write_state(self, completed: bool) -> None:
        if self.is_chief:
            atomic_write_json(self.state_path, {"run": self.fingerprint, "completed": completed, "history": self.history})

    def checkpoint(self, step: int) -> None:
        """Every worker calls this at the same step (tf.distribute may need them all to save)."""
        if self.is_chief and self.manager.latest_checkpoint and self.manager.latest_checkpoint.endswith(f"-{step}"):
            return
        self._write_state(completed=False)
        fault_point(f"checkpoint:{step}")
        if self.is_chief:
            self.manager.save(checkpoint_number=step)
            return
        # Other workers save into a folder of their own, deleted at once.
        tmp = tempfile.mkdtemp(prefix="textcls-worker-ckpt-")
        try:
            self._manager(tmp).save(checkpoint_number=step)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def save_best(self, metrics: dict) -> None:
        """The model's weights now are the best so far: keep them (in memory for the next
        checkpoint, and on disk for people)."""
        self.best_weights.keep(self.model, metrics[self.select_by], metrics["step"], metrics.get("thresholds"))
        self.best = self._best_from_weights()
        if self.is_chief:
            self._write_best_files(metrics)

    def _write_best_files(self, metrics: dict) -> None:
        """best.weights.h5 from the model's weights now, and best.json, each written crash-safely."""
        tmp = os.path.join(self.dir, ".best.tmp.weights.h5")
        self.model.save_weights(tmp)
        os.replace(tmp, self.best_path)
        atomic_write_json(os.path.join(self.dir, "best.json"), metrics)

    def _write_best(self, metrics: dict) -> None:
        """Rewrite the best files from the restored best weights (the model holds other weights)."""
        for name in ("best.weights.h5", "best.json"):
            if os.path.exists(os.path.join(self.dir, name)):
                os.remove(os.path.join(self.dir, name))
        if self.best["score"] < 0:  # nothing evaluated before the checkpoint
            return
        current = [w.numpy() for w in self.model.weights]
        self.best_weights.put_into(self.model)
        try:
            self._write_best_files(metrics)
        finally:
            for w, value in zip(self.model.weights, current):
                w.assign(value)

    def restore_best(self) -> bool:
        """Put the best weights into the model (False when nothing was evaluated yet)."""
        if self.best["score"] < 0:
            return False
        self.best_weights.put_into(self.model)
        return True

    def complete(self) -> None:
        self._write_state(completed=True)
