"""Crash safety: a run killed at any point resumes from its last complete checkpoint and ends
exactly where an uninterrupted run ends; SIGTERM stops cleanly; checkpoints of another run are
never mixed in; two runs never share a folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from data_helpers import io_utils
from data_helpers.config import load_config
from tests.conftest import quiet, tiny_config
from trainers.run_state import ResumeError, RunLock
from trainers.trainer import Trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 240 examples / batch 16 = 15 steps an epoch, 2 epochs = 30 steps.
SMALL = dict(eval_every=5, checkpoint_every=5, epochs=2)


def train(path, *args, kill_at=None, **popen):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("TEXTCLS_KILL_AT", None)
    if kill_at:
        env["TEXTCLS_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, os.path.join(REPO, "train.py"), f"--config_path={path}", *args],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def report(path):
    cfg = load_config(path, log=quiet)
    return json.load(open(os.path.join(cfg.output_path, "report.json"), encoding="utf-8"))


def final_state(path) -> dict:
    """The last checkpoint's model and optimizer tensors (not the input iterator's state)."""
    import tensorflow as tf

    ckpt = load_config(path, log=quiet).ckpt_model_path
    reader = tf.train.load_checkpoint(os.path.join(ckpt, "ckpt-30"))
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(os.path.join(ckpt, "ckpt-30"))
            if not name.startswith(("data/", "_CHECKPOINTABLE", "save_counter"))}


def assert_same_run(path, reference_path):
    got, want = final_state(path), final_state(reference_path)
    assert sorted(got) == sorted(want) and len(got) > 20
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-6, err_msg=name)
    a, b = report(path), report(reference_path)
    assert a["history"] == b["history"] and a["best_step"] == b["best_step"] and a["accuracy"] == b["accuracy"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, corpus):
    path = tiny_config(tmp_path_factory.mktemp("whole"), corpus, **SMALL)
    Trainer(load_config(path, log=quiet), log=quiet, verbose=0).train()
    return path


def test_killed_mid_epoch_resumes_exactly(tmp_path, corpus, uninterrupted):
    path = tiny_config(tmp_path, corpus, **SMALL)
    killed = train(path, kill_at="step:22")  # mid second epoch, last checkpoint at 20
    assert killed.returncode == -signal.SIGKILL
    again = train(path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming from" in again.stdout and "step 20" in again.stdout
    r = report(path)
    assert r["resumed_from_step"] == 20 and r["history"][-1]["step"] == 30
    assert_same_run(path, uninterrupted)


# 15 steps an epoch: a crash just before, at and just after the epoch boundary, and while a
# checkpoint is written; with checkpoints every 10 steps, a crash at 17 also falls after a best
# step (15) that the checkpoint it resumes from (10) never saw.
@pytest.mark.parametrize("fault,checkpoint_every,resumes_at", [
    ("step:14", 5, 10), ("step:15", 5, 10), ("step:16", 5, 15), ("checkpoint:15", 5, 10), ("step:17", 10, 10),
])
def test_crash_anywhere_then_resume_ends_as_an_uninterrupted_run(tmp_path, corpus, uninterrupted, monkeypatch,
                                                                  fault, checkpoint_every, resumes_at):
    path = tiny_config(tmp_path, corpus, **{**SMALL, "checkpoint_every": checkpoint_every})
    cfg = load_config(path, log=quiet)
    crash_in_process(cfg, fault, monkeypatch)
    logs = train_in_process(cfg)
    resumed = [m for m in logs if m.startswith("resuming from")]
    assert resumed and f"step {resumes_at}," in resumed[0], logs[:5]
    # The best so far is the best of the steps the checkpoint saw, not of the lost ones.
    seen = [h["macro_f1"] for h in report(uninterrupted)["history"] if h["step"] <= resumes_at]
    assert f"best eval macro-F1 so far {max(seen):.4f}" in resumed[0]
    assert_same_run(path, uninterrupted)


@pytest.fixture(scope="module")
def uninterrupted_streamed(tmp_path_factory, corpus):
    path = tiny_config(tmp_path_factory.mktemp("streamed"), corpus, **SMALL, in_memory_mb=0, shuffle_buffer=100)
    logs = train_in_process(load_config(path, log=quiet))
    assert any(m.startswith("training data: streamed") for m in logs)
    return path


# The same, for a training set streamed from its file every epoch: the checkpoint then holds a
# shuffle buffer (100 of the 240 examples) part-way through a pass.
@pytest.mark.parametrize("fault,resumes_at", [("step:14", 10), ("step:16", 15)])
def test_streamed_data_resumes_exactly_too(tmp_path, corpus, uninterrupted_streamed, monkeypatch, fault, resumes_at):
    path = tiny_config(tmp_path, corpus, **SMALL, in_memory_mb=0, shuffle_buffer=100)
    cfg = load_config(path, log=quiet)
    crash_in_process(cfg, fault, monkeypatch)
    logs = train_in_process(cfg)
    assert any(m.startswith("resuming from") and f"step {resumes_at}," in m for m in logs), logs[:5]
    assert_same_run(path, uninterrupted_streamed)


def crash_in_process(cfg, fault, monkeypatch):
    """Train until the fault point ``fault``, where it raises (a kill's cheap stand-in)."""
    monkeypatch.setattr(io_utils, "RAISE_AT", {fault})
    with pytest.raises(io_utils.InjectedFault):
        Trainer(cfg, log=quiet, verbose=0).train()
    monkeypatch.setattr(io_utils, "RAISE_AT", set())


def train_in_process(cfg, restart=False) -> list[str]:
    logs = []
    Trainer(cfg, log=logs.append, verbose=0, restart=restart).train()
    return logs


def test_killed_while_writing_a_checkpoint_uses_the_last_complete_one(tmp_path, corpus, monkeypatch):
    path = tiny_config(tmp_path, corpus, **SMALL)
    cfg = load_config(path, log=quiet)
    crash_in_process(cfg, "checkpoint:10", monkeypatch)
    ckpt = cfg.ckpt_model_path
    # What a write cut short leaves: files of ckpt-10 that the index never names.
    for name in ("ckpt-10.index", "ckpt-10.data-00000-of-00001"):
        with open(os.path.join(ckpt, name), "wb") as f:
            f.write(b"\x00half written")
    logs = train_in_process(cfg)
    assert any(m.startswith("resuming from") and "step 5," in m for m in logs) and report(path)["resumed_from_step"] == 5


def test_killed_during_export_keeps_old_exports_and_finishes_on_rerun(tmp_path, corpus):
    path = tiny_config(tmp_path, corpus, epochs=1)
    cfg = load_config(path, log=quiet)
    pb = cfg.pb_model_path
    train_in_process(cfg)
    assert train(path, kill_at="export").returncode == -signal.SIGKILL
    assert sorted(d for d in os.listdir(pb) if not d.startswith(".")) == ["1"]  # version 1 intact
    assert any(d.startswith(".tmp-export-") for d in os.listdir(pb))
    assert any("interrupted export" in m for m in train_in_process(cfg))
    assert sorted(os.listdir(pb)) == ["1", "2"]
    assert os.path.isfile(os.path.join(pb, "2", "saved_model.pb"))


def test_sigterm_checkpoints_and_says_how_to_resume(tmp_path, corpus):
    path = tiny_config(tmp_path, corpus, eval_every=5, checkpoint_every=1000, epochs=200)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "train.py"), f"--config_path={path}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    deadline = time.time() + 120
    for line in proc.stdout:
        if line.startswith("step 10:") or time.time() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "checkpoint saved" in err and f"python train.py --config_path={path}" in err
    state = json.load(open(os.path.join(load_config(path, log=quiet).ckpt_model_path, "train_state.json")))
    assert state["completed"] is False and state["history"]


def test_other_settings_are_refused_until_restart(tmp_path, corpus, monkeypatch):
    path = tiny_config(tmp_path, corpus, **SMALL)
    cfg = load_config(path, log=quiet)
    crash_in_process(cfg, "step:12", monkeypatch)
    before = {d: snapshot(getattr(cfg, d)) for d in ("output_path", "ckpt_model_path")}
    changed = train(path, "--set", "vocab_size=20")  # another vocabulary too
    assert changed.returncode == 2
    assert "other settings or data; use --restart" in changed.stderr
    assert "Traceback" not in changed.stderr
    assert {d: snapshot(getattr(cfg, d)) for d in before} == before  # nothing on disk changed, the vocab included
    logs = train_in_process(load_config(path, ["vocab_size=20"], log=quiet), restart=True)
    assert any("--restart: previous checkpoints removed" in m for m in logs)
    assert report(path)["resumed_from_step"] == 0


def test_a_completed_run_is_not_resumed(tmp_path, corpus):
    cfg = load_config(tiny_config(tmp_path, corpus, epochs=1), log=quiet)
    train_in_process(cfg)
    assert any("previous run there completed" in m for m in train_in_process(cfg))
    assert report(tiny_config(tmp_path, corpus, epochs=1))["resumed_from_step"] == 0


def snapshot(folder) -> dict:
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            if name != ".lock" and not root.split(os.sep)[-1] == "logs":
                with open(os.path.join(root, name), "rb") as f:
                    out[os.path.relpath(os.path.join(root, name), folder)] = f.read()
    return out


def test_a_second_run_on_the_same_folder_stops_at_once(tmp_path, corpus):
    path = tiny_config(tmp_path, corpus, epochs=1)
    cfg = load_config(path, log=quiet)
    live = RunLock(cfg.ckpt_model_path)  # a run that is still going
    try:
        with pytest.raises(ResumeError, match=rf"is in use by a training run that is still going \(pid {os.getpid()}"):
            Trainer(cfg, log=quiet, verbose=0).train()
        assert not os.path.exists(cfg.output_path) and not os.path.exists(cfg.pb_model_path)
    finally:
        live.release()
    Trainer(cfg, log=quiet, verbose=0).train()  # once it is gone, the folder is free
    assert report(path)["history"]
