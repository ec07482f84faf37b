"""Crash safety: a run killed with SIGKILL at any point resumes from its last complete
checkpoint; SIGTERM stops cleanly; checkpoints of another run are never mixed in."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from data_helpers.config import load_config
from tests.conftest import quiet, tiny_config
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


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, corpus):
    path = tiny_config(tmp_path_factory.mktemp("whole"), corpus, **SMALL)
    return Trainer(load_config(path, log=quiet), log=quiet, verbose=0).train()


def test_killed_mid_epoch_resumes_where_it_was(tmp_path, corpus, uninterrupted):
    path = tiny_config(tmp_path, corpus, **SMALL)
    killed = train(path, kill_at="step:22")  # mid second epoch, last checkpoint at 20
    assert killed.returncode == -signal.SIGKILL
    again = train(path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming from" in again.stdout and "step 20" in again.stdout
    r = report(path)
    assert r["resumed_from_step"] == 20 and r["history"][-1]["step"] == 30
    assert abs(r["accuracy"] - uninterrupted["accuracy"]) <= 0.005
    assert abs(r["loss"] - uninterrupted["loss"]) < 0.05


def test_killed_while_writing_a_checkpoint_uses_the_last_complete_one(tmp_path, corpus):
    path = tiny_config(tmp_path, corpus, **SMALL)
    assert train(path, kill_at="checkpoint:10").returncode == -signal.SIGKILL
    ckpt = load_config(path, log=quiet).ckpt_model_path
    # What a write cut short leaves: files of ckpt-10 that the index never names.
    for name in ("ckpt-10.index", "ckpt-10.data-00000-of-00001"):
        with open(os.path.join(ckpt, name), "wb") as f:
            f.write(b"\x00half written")
    again = train(path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "step 5," in again.stdout and report(path)["resumed_from_step"] == 5


def test_killed_during_export_keeps_old_exports_and_finishes_on_rerun(tmp_path, corpus):
    path = tiny_config(tmp_path, corpus, epochs=1)
    pb = load_config(path, log=quiet).pb_model_path
    assert train(path).returncode == 0
    assert train(path, kill_at="export").returncode == -signal.SIGKILL
    assert sorted(d for d in os.listdir(pb) if not d.startswith(".")) == ["1"]  # version 1 intact
    assert any(d.startswith(".tmp-export-") for d in os.listdir(pb))
    again = train(path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "interrupted export" in again.stdout
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


def test_other_settings_are_refused_until_restart(tmp_path, corpus):
    path = tiny_config(tmp_path, corpus, **SMALL)
    assert train(path, kill_at="step:12").returncode == -signal.SIGKILL
    changed = train(path, "--set", "learning_rate=0.5")
    assert changed.returncode == 2
    assert "other settings or data; use --restart" in changed.stderr
    assert "Traceback" not in changed.stderr
    fresh = train(path, "--set", "learning_rate=0.5", "--restart")
    assert fresh.returncode == 0 and "--restart: previous checkpoints removed" in fresh.stdout
    assert report(path)["resumed_from_step"] == 0


def test_a_completed_run_is_not_resumed(tmp_path, corpus):
    path = tiny_config(tmp_path, corpus, epochs=1)
    assert train(path).returncode == 0
    again = train(path)
    assert again.returncode == 0 and "previous run there completed" in again.stdout
    assert report(path)["resumed_from_step"] == 0
