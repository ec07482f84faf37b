"""Which tf.distribute strategy a run uses, and which worker this process is.

- ``TF_CONFIG`` set (with more than one task) -> ``MultiWorkerMirroredStrategy``: one process per
  machine, each with its own devices, gradients all-reduced over the network.
- more than one local GPU -> ``MirroredStrategy`` over them.
- otherwise TensorFlow's default strategy (one CPU or one GPU).

The training loop is the same for all three (see :mod:`trainers.loop`). The strategy must be
created before TensorFlow runs any op, so :func:`strategy_from_env` comes first in a run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import tensorflow as tf

# How often each worker asks whether its peers are alive, and how long it waits for an answer
# (TensorFlow's defaults are 30 s and 10 s, retried 3 times). When a peer is down the
# collectives are aborted and every other worker stops with an error instead of hanging.
HEALTH_CHECK_INTERVAL_S = 5
HEALTH_CHECK_TIMEOUT_S = 5


@dataclass(frozen=True)
class WorkerInfo:
    """This process's place in the run: only the chief writes checkpoints, the best weights,
    the vocabulary, the report and the export."""

    index: int = 0
    count: int = 1
    task_type: str | None = None

    @property
    def is_chief(self) -> bool:
        return self.index == 0


def _tf_config() -> dict | None:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        conf = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from None
    cluster = conf.get("cluster") or {}
    if sum(len(v) for v in cluster.values()) <= 1:
        return None  # a cluster of one: train alone
    return conf


def worker_info() -> WorkerInfo:
    """Where this process stands, from ``TF_CONFIG`` (a chief task, else worker 0, leads)."""
    conf = _tf_config()
    if conf is None:
        return WorkerInfo()
    cluster, task = conf["cluster"], conf.get("task") or {}
    task_type, task_index = task.get("type", "worker"), int(task.get("index", 0))
    has_chief = bool(cluster.get("chief"))
    index = task_index + (1 if has_chief and task_type == "worker" else 0)
    count = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    return WorkerInfo(index=index, count=count, task_type=task_type)


_STRATEGIES: dict = {}


def strategy_from_env() -> tf.distribute.Strategy:
    """The strategy this process trains under (see the module docstring). The same object for
    every run in a process with the same ``TF_CONFIG`` (an ensemble's members train one after
    the other, and a process can set up TensorFlow's collective ops only once)."""
    key = os.environ.get("TF_CONFIG", "")
    if key not in _STRATEGIES:
        _STRATEGIES[key] = _new_strategy()
    return _STRATEGIES[key]


def _new_strategy() -> tf.distribute.Strategy:
    if _tf_config() is not None:
        from tensorflow.python.distribute import collective_all_reduce_strategy as cars

        cars.CollectiveAllReduceExtended._check_health_interval = HEALTH_CHECK_INTERVAL_S
        cars.CollectiveAllReduceExtended._check_health_timeout = HEALTH_CHECK_TIMEOUT_S
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([g.name for g in gpus])
    return tf.distribute.get_strategy()


def describe(strategy: tf.distribute.Strategy, info: WorkerInfo) -> str:
    kind = type(strategy).__name__
    if kind.startswith("_Default"):
        kind = "default strategy"
    return f"{kind}, {strategy.num_replicas_in_sync} replica(s) in sync, worker {info.index} of {info.count}"


def loopback_tf_configs(workers: int) -> list[str]:
    """``TF_CONFIG`` values for ``workers`` processes on this machine (127.0.0.1, free ports),
    worker 0 first: for trying a multi-worker run, the tests and the scale benchmark."""
    import socket

    socks = [socket.socket() for _ in range(workers)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    hosts = [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]
    for s in socks:
        s.close()
    return [json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}}) for i in range(workers)]
