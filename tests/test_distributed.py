"""Training on several workers (MultiWorkerMirroredStrategy over 127.0.0.1): the same weights as
one process with the same global batch, only the chief writes, a dead worker stops the others
and running every command again resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from data_helpers.config import load_config
from tests.conftest import quiet, tiny_config
from trainers.strategy import loopback_tf_configs
from trainers.trainer import Trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# No dropout (replicas would draw other masks than one process); lazy AdamW with hashed
# bigrams, so the sparse scatter updates run on mirrored variables too.
SETTINGS = dict(keep_prob=1.0, optimization="lazy_adamw", ngram_buckets=1000, eval_every=10, checkpoint_every=10)


def start_workers(path, tmpdir, n=2):
    procs = []
    for tf_config in loopback_tf_configs(n):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmpdir), "TF_CONFIG": tf_config}
        env.pop("TEXTCLS_KILL_AT", None)
        procs.append(subprocess.Popen([sys.executable, os.path.join(REPO, "train.py"), f"--config_path={path}"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO))
    return procs


def finish(procs, timeout=240):
    out = []
    for p in procs:
        try:
            o, e = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        out.append((p.returncode, o, e))
    return out


def checkpoint_tensors(ckpt_dir, step):
    import tensorflow as tf

    prefix = os.path.join(ckpt_dir, f"ckpt-{step}")
    reader = tf.train.load_checkpoint(prefix)
    return {n: reader.get_tensor(n) for n, _ in tf.train.list_variables(prefix) if not n.startswith(("data/", "_CHECK", "save_counter"))}


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(r, f), folder) for r, _, fs in os.walk(folder) for f in fs
                  if "logs" not in r.split(os.sep))


def one_process_and_two_workers(tmp_path, corpus, settings):
    """The same tiny config trained by one process and by two workers on 127.0.0.1: (the one
    process's config, the workers' config, each worker's (return code, stdout, stderr)), all succeeded."""
    one = tiny_config(tmp_path / "one", corpus, **settings)
    Trainer(load_config(one, log=quiet), log=quiet, verbose=0).train()
    two = tiny_config(tmp_path / "two", corpus, **settings)
    (tmp_path / "tmp").mkdir()
    results = finish(start_workers(two, tmp_path / "tmp"))
    for rc, out, err in results:
        assert rc == 0, err[-3000:]
    return load_config(one, log=quiet), load_config(two, log=quiet), results


def test_two_workers_train_exactly_as_one_process(tmp_path, corpus):
    # With a weight average updated every third step: the averages (in the checkpoint) match too.
    # With adversarial training: each text's perturbation is its own, however the batch is split.
    settings = {**SETTINGS, "ema_momentum": 0.9, "ema_every": 3, "adversarial_epsilon": 0.3}
    a, b, results = one_process_and_two_workers(tmp_path, corpus, settings)
    chief_out, worker_out = results[0][1], results[1][1]
    assert "2 replica(s) in sync" in chief_out and "by record" in chief_out
    assert worker_out.strip() == ""  # progress and logs on the chief only

    want, got = checkpoint_tensors(a.ckpt_model_path, 30), checkpoint_tensors(b.ckpt_model_path, 30)
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-5, err_msg=name)
    # The chief wrote what one process writes, once; the other worker's own checkpoints are gone.
    for key in ("output_path", "ckpt_model_path", "pb_model_path"):
        assert files_under(getattr(b, key)) == files_under(getattr(a, key)), key
    assert os.listdir(tmp_path / "tmp") == []
    ra = json.load(open(os.path.join(a.output_path, "report.json")))
    rb = json.load(open(os.path.join(b.output_path, "report.json")))
    assert rb["workers"] == 2 and ra["workers"] == 1
    assert [h["step"] for h in rb["history"]] == [h["step"] for h in ra["history"]]
    np.testing.assert_allclose([h["loss"] for h in rb["history"]], [h["loss"] for h in ra["history"]], atol=1e-4)


def test_a_dead_worker_stops_the_other_and_every_command_again_resumes(tmp_path, corpus):
    path = tiny_config(tmp_path, corpus, **{**SETTINGS, "epochs": 6, "eval_every": 5})
    (tmp_path / "tmp").mkdir()
    chief, worker = start_workers(path, tmp_path / "tmp")
    try:
        deadline = time.monotonic() + 120
        for line in chief.stdout:
            if line.startswith("step 20:") or time.monotonic() > deadline:
                break
        worker.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        _, err = chief.communicate(timeout=60)
        assert time.monotonic() - killed_at < 60
    finally:
        for p in (chief, worker):
            if p.poll() is None:
                p.kill()
    assert chief.returncode == 3, err[-3000:]
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "the cluster lost a worker" in errors[0] and "start every worker's command again" in errors[0]

    results = finish(start_workers(path, tmp_path / "tmp"))
    for rc, out, err in results:
        assert rc == 0, err[-3000:]
    assert "resuming from" in results[0][1]
    report = json.load(open(os.path.join(load_config(path, log=quiet).output_path, "report.json")))
    assert report["resumed_from_step"] >= 10 and report["history"][-1]["step"] == 90


def test_two_workers_train_an_ensemble_as_one_process_does(tmp_path, corpus):
    # ensemble_size: the members train one after the other on the same strategy, made once per process.
    a, b, results = one_process_and_two_workers(tmp_path, corpus, {**SETTINGS, "ensemble_size": 2, "epochs": 1})
    assert "ensemble member 2 of 2" in results[0][1] and results[1][1].strip() == ""
    for k in ("1", "2"):
        want = checkpoint_tensors(os.path.join(a.ckpt_model_path, "members", k), 15)
        got = checkpoint_tensors(os.path.join(b.ckpt_model_path, "members", k), 15)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], atol=1e-5, err_msg=f"member {k}: {name}")
    ra = json.load(open(os.path.join(a.output_path, "report.json")))
    rb = json.load(open(os.path.join(b.output_path, "report.json")))
    assert rb["accuracy"] == ra["accuracy"] and os.path.isfile(os.path.join(rb["export"], "saved_model.pb"))
