"""Serving load test: serve.py under concurrent aiohttp clients, every answer checked.

    python bench/serving.py [--config config/textcnn_config.json] [--clients 16] [--seconds 20]

Trains nothing: takes the newest export under the config's pb_model_path, computes the
expected answer for every eval_data sentence with ``Predictor.from_saved_model`` first, then
starts ``serve.py`` on a free loopback port and runs N concurrent clients for a bounded time,
first one sentence per request, then batches of 32 sentences per request. Every response is
checked against the Predictor (labels equal, probabilities within 1e-5). Reports requests/s,
sentences/s and p50/p99 latency; writes bench/results/serving.json and the "Serving" section
of BENCHMARKS.md. Then it runs the single-sentence phase once more against a server started
with --max_batch_size 1 (no batching across requests), to show what batching buys
(--skip_unbatched leaves that out).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.chdir(REPO)

TOLERANCE = 1e-5


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_model() -> str:
    from bench.demo import cpu_model as demo_cpu_model

    return demo_cpu_model()


class Server:
    """serve.py in a subprocess over a private base path that holds only the export under test
    (a symlink), so a training run writing new versions meanwhile does not change the answers."""

    def __init__(self, export_dir: str, name: str, extra_args=(), log_path=None):
        self.tmp = tempfile.mkdtemp(prefix="serving-bench-")
        version = os.path.basename(os.path.normpath(export_dir))
        try:
            os.symlink(os.path.abspath(export_dir), os.path.join(self.tmp, version))
        except OSError:
            shutil.copytree(export_dir, os.path.join(self.tmp, version))
        self.port = free_port()
        self.name, self.version = name, version
        self.url = f"http://127.0.0.1:{self.port}/v1/models/{name}"
        self.grpc_port = free_port()
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self.args = ["--model_base_path", self.tmp, "--model_name", name, "--rest_api_port", str(self.port),
                     "--port", str(self.grpc_port), *extra_args]
        self.log_path = log_path or os.path.join(self.tmp, "server.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "serve.py", *self.args], stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)

    def wait_available(self, timeout=180.0) -> None:
        import urllib.error
        import urllib.request

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve.py exited with status {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/versions/{self.version}", timeout=2) as r:
                    status = json.load(r)["model_version_status"][0]
                if status["state"] == "AVAILABLE":
                    return
            except (urllib.error.URLError, OSError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"serve.py was not AVAILABLE after {timeout:.0f} s:\n{self.tail()}")

    def tail(self, n=20) -> str:
        self.log.flush()
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-n:])

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: serve.py shuts down cleanly
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return self.proc.returncode


def _percentile(sorted_values, q):
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, int(round(q / 100 * (len(sorted_values) - 1)))))
    return sorted_values[k]


def _summary(clients: int, batch: int, wall: float, stats: dict, latencies: list, statuses_key: str) -> dict:
    latencies = sorted(latencies)
    return {
        "clients": clients,
        "sentences_per_request": batch,
        "seconds": round(wall, 2),
        "requests": stats["requests"],
        "requests_per_s": round(stats["requests"] / wall, 1),
        "sentences_per_s": round(stats["sentences"] / wall, 1),
        "p50_ms": round(_percentile(latencies, 50) * 1000, 2) if latencies else None,
        "p99_ms": round(_percentile(latencies, 99) * 1000, 2) if latencies else None,
        "errors": stats["errors"],
        "wrong_answers": stats["wrong"],
        statuses_key: stats["statuses"],
        "first_problem": stats["first_problem"],
    }


async def load(url: str, texts, labels, probs, clients: int, seconds: float, batch: int, warmup: float = 1.0) -> dict:
    """N clients in a closed loop for `seconds`; each response checked against (labels, probs)."""
    import aiohttp

    n = len(texts)
    counter = {"next": 0}
    stats = {"requests": 0, "sentences": 0, "errors": 0, "wrong": 0, "statuses": {}, "first_problem": None}
    latencies = []

    def problem(msg):
        if stats["first_problem"] is None:
            stats["first_problem"] = msg

    def check(idx, body) -> bool:
        preds = body.get("predictions")
        if not isinstance(preds, list) or len(preds) != len(idx):
            problem(f"expected {len(idx)} predictions, got {str(body)[:200]}")
            return False
        for i, p in zip(idx, preds):
            got = p.get("probabilities") or []
            if p.get("label") != labels[i] or len(got) != len(probs[i]) or max(abs(a - b) for a, b in zip(got, probs[i])) > TOLERANCE:
                problem(f"text #{i} {texts[i][:30]!r}: expected {labels[i]} {probs[i]}, got {p}")
                return False
        return True

    async def client(session, until, record):
        while time.perf_counter() < until:
            start = counter["next"]
            counter["next"] += batch
            idx = [(start + j) % n for j in range(batch)]
            payload = json.dumps({"instances": [texts[i] for i in idx]}, ensure_ascii=False).encode("utf-8")
            t = time.perf_counter()
            try:
                async with session.post(url, data=payload, headers={"Content-Type": "application/json"}) as r:
                    raw = await r.read()
                    status = r.status
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                if record:
                    stats["errors"] += 1
                problem(f"{type(e).__name__}: {e}")
                continue
            dt = time.perf_counter() - t
            ok = status == 200
            if not record:
                continue
            stats["statuses"][str(status)] = stats["statuses"].get(str(status), 0) + 1
            if not ok:
                stats["errors"] += 1
                problem(f"HTTP {status}: {raw[:200]!r}")
                continue
            stats["requests"] += 1
            stats["sentences"] += batch
            latencies.append(dt)
            if not check(idx, json.loads(raw)):
                stats["wrong"] += 1

    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        until = time.perf_counter() + warmup
        await asyncio.gather(*(client(session, until, False) for _ in range(clients)))
        t0 = time.perf_counter()
        await asyncio.gather(*(client(session, t0 + seconds, True) for _ in range(clients)))
        wall = time.perf_counter() - t0
    return _summary(clients, batch, wall, stats, latencies, "http_statuses")


async def grpc_load(target: str, name: str, version: int, texts, labels, probs, clients: int, seconds: float,
                    batch: int, warmup: float = 1.0) -> dict:
    """The same closed loop over gRPC with TensorFlow Serving's client stubs (grpc.aio channel)."""
    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    n = len(texts)
    protos = {}  # request protos built before timing: the client's proto encoding is not the server's cost
    counter = {"next": 0}
    stats = {"requests": 0, "sentences": 0, "errors": 0, "wrong": 0, "statuses": {}, "first_problem": None}
    latencies = []

    def request_for(idx):
        key = tuple(idx)
        if key not in protos:
            r = predict_pb2.PredictRequest()
            r.model_spec.name = name
            r.model_spec.version.value = int(version)
            r.inputs["text"].CopyFrom(tf.make_tensor_proto([texts[i] for i in idx]))
            protos[key] = r
        return protos[key]

    async def client(stub, until, record):
        while time.perf_counter() < until:
            start = counter["next"]
            counter["next"] += batch
            idx = [(start + j) % n for j in range(batch)]
            request = request_for(idx)
            t = time.perf_counter()
            try:
                response = await stub.Predict(request, timeout=60)
                code = "OK"
            except grpc.aio.AioRpcError as e:
                code = e.code().name
                if stats["first_problem"] is None:
                    stats["first_problem"] = f"{code}: {e.details()}"
            dt = time.perf_counter() - t
            if not record:
                continue
            stats["statuses"][code] = stats["statuses"].get(code, 0) + 1
            if code != "OK":
                stats["errors"] += 1
                continue
            stats["requests"] += 1
            stats["sentences"] += batch
            latencies.append(dt)
            got_labels = [b.decode("utf-8") for b in tf.make_ndarray(response.outputs["label"])]
            got = tf.make_ndarray(response.outputs["probabilities"])
            want = np.array([probs[i] for i in idx])
            if got_labels != [labels[i] for i in idx] or got.shape != want.shape or np.abs(got - want).max() > TOLERANCE:
                stats["wrong"] += 1
                if stats["first_problem"] is None:
                    stats["first_problem"] = f"texts {idx[:3]}: expected {[labels[i] for i in idx][:3]}, got {got_labels[:3]}"

    for start in range(0, n, batch):  # every request proto, before the clock starts
        request_for([(start + j) % n for j in range(batch)])
    async with grpc.aio.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        until = time.perf_counter() + warmup
        await asyncio.gather(*(client(stub, until, False) for _ in range(clients)))
        t0 = time.perf_counter()
        await asyncio.gather(*(client(stub, t0 + seconds, True) for _ in range(clients)))
        wall = time.perf_counter() - t0
    return _summary(clients, batch, wall, stats, latencies, "grpc_statuses")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/textcnn_config.json")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0, help="measured seconds per phase (after 1 s of warm-up)")
    ap.add_argument("--batch", type=int, default=32, help="sentences per request in the batch phase")
    ap.add_argument("--server_args", default="", help="extra serve.py arguments, e.g. '--batch_timeout_ms 0'")
    ap.add_argument("--skip_unbatched", action="store_true",
                    help="skip the third phase (single sentences against a server started with --max_batch_size 1)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave bench/results and BENCHMARKS.md alone")
    args = ap.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or args.batch < 1:
        ap.error("--clients and --batch must be >= 1, --seconds > 0")

    from data_helpers.config import ConfigError, load_config
    from data_helpers.reader import read_examples
    from predictors.export import latest_export

    try:
        cfg = load_config(args.config, log=lambda *a: None, check_files=False)
    except (ConfigError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    export = latest_export(cfg.pb_model_path)
    if export is None:
        print(f"error: no export under {cfg.pb_model_path}: run `python train.py --config_path={args.config}` first",
              file=sys.stderr)
        return 2
    if not os.path.isfile(cfg.eval_data):
        print(f"error: {cfg.eval_data} not found (for the demo corpus: `python -m data_helpers.demo_corpus`)", file=sys.stderr)
        return 2

    from predictors import Predictor

    texts = read_examples(cfg.eval_data, log=lambda *a: None).texts
    predictor = Predictor.from_saved_model(export)
    t = time.time()
    labels = predictor.predict(texts)
    probs = predictor.predict_proba_array(texts).tolist()
    print(f"export {export}: {len(texts)} eval sentences, expected answers from the Predictor in {time.time() - t:.1f} s",
          flush=True)
    del predictor

    name = cfg.model_name
    load_at_start = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    phases = {}
    servers = [("batched", args.server_args.split())]
    if not args.skip_unbatched:
        servers.append(("unbatched", args.server_args.split() + ["--max_batch_size", "1"]))
    server_args = {}
    for label, extra in servers:
        server = Server(export, name, extra)
        shown = ["<tmp>" if a == server.tmp else "<free port>" if a in (str(server.port), str(server.grpc_port)) else a
                 for a in server.args]
        server_args[label] = " ".join(["python serve.py", *shown])
        try:
            server.wait_available()
            url = f"{server.url}/versions/{server.version}:predict"
            runs = [("single", 1)] if label == "unbatched" else [("single", 1), (f"batch{args.batch}", args.batch)]
            for phase, batch in runs:
                key = phase if label == "batched" else f"{phase}_unbatched"
                r = asyncio.run(load(url, texts, labels, probs, args.clients, args.seconds, batch))
                phases[key] = r
                print(json.dumps({key: r}, ensure_ascii=False), flush=True)
            if label == "batched":  # the same single-sentence load over gRPC
                r = asyncio.run(grpc_load(server.grpc_target, name, server.version, texts, labels, probs, args.clients,
                                          args.seconds, 1))
                phases["grpc_single"] = r
                print(json.dumps({"grpc_single": r}, ensure_ascii=False), flush=True)
        finally:
            rc = server.stop()
            if rc not in (0, None):
                print(f"warning: serve.py exited with status {rc} on SIGTERM:\n{server.tail()}", file=sys.stderr)
            phases.setdefault("_shutdown_status", {})[label] = rc

    import tensorflow as tf

    out = {
        "command": " ".join(["python bench/serving.py", *(sys.argv[1:] if argv is None else argv)]),
        "date": datetime.date.today().isoformat(),
        "machine": {"cores": os.cpu_count(), "cpu": cpu_model(), "load_average_1min_at_start": load_at_start},
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__},
        "export": export,
        "server": server_args,
        "server_extra_args": args.server_args,
        "clients": args.clients,
        "seconds_per_phase": args.seconds,
        "tolerance": TOLERANCE,
        "shutdown_status": phases.pop("_shutdown_status"),
        "phases": phases,
    }
    if not args.no_write:
        os.makedirs("bench/results", exist_ok=True)
        with open("bench/results/serving.json", "w", encoding="utf-8") as f:
            json.dump(out, f, ensure_ascii=False, indent=2)
        write_benchmarks_section(out)
    bad = sum(p["errors"] + p["wrong_answers"] for p in phases.values())
    return 1 if bad else 0


def write_benchmarks_section(out: dict) -> None:
    from bench.demo import update_benchmarks

    rows = [
        "| phase | sentences / request | requests / s | sentences / s | p50 ms | p99 ms | errors | wrong answers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = {"single": "batching server, single sentence", "single_unbatched": "`--max_batch_size 1`, single sentence",
             "grpc_single": "batching server, single sentence, gRPC"}
    for key, r in out["phases"].items():
        rows.append(
            f"| {names.get(key, 'batching server, ' + str(r['sentences_per_request']) + ' sentences')} | "
            f"{r['sentences_per_request']} | {r['requests_per_s']} | {r['sentences_per_s']} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{r['errors']} | {r['wrong_answers']} |"
        )
    single, batch = out["phases"].get("single"), next((r for k, r in out["phases"].items() if k.startswith("batch")), None)
    grpc_single = out["phases"].get("grpc_single")
    compare = ""
    if single and batch:
        compare = (f"In the same run, requests of {batch['sentences_per_request']} sentences moved "
                   f"{batch['sentences_per_s'] / max(single['sentences_per_s'], 1e-9):.1f}x the sentences per second of "
                   f"single-sentence requests ({batch['sentences_per_s']} vs {single['sentences_per_s']}). ")
    if single and "single_unbatched" in out["phases"]:
        u = out["phases"]["single_unbatched"]
        compare += (f"Batching concurrent single-sentence requests into one signature call gave {single['requests_per_s']} "
                    f"requests/s against {u['requests_per_s']} without it (`--max_batch_size 1`). ")
    if single and grpc_single:
        compare += (f"Over gRPC (TensorFlow Serving's client stubs on a grpc.aio channel, request protos built before "
                    f"timing), the same single-sentence load gave {grpc_single['requests_per_s']} requests/s, p50 "
                    f"{grpc_single['p50_ms']} ms, against {single['requests_per_s']} over REST. ")
    section = "\n".join(
        [
            "## Serving (serve.py, TensorFlow Serving REST and gRPC APIs)",
            "",
            f"Command: `{out['command']}` on {out['date']}; {out['machine']['cores']} cores, {out['machine']['cpu']}; "
            f"TensorFlow {out['versions']['tensorflow']}, Python {out['versions']['python']}. "
            f"Export `{out['export']}`, served by `{out['server']['batched']}`"
            f"{'' if out['server_extra_args'] else ' (default batching: `--max_batch_size 256 --batch_timeout_ms 2`)'}, "
            "where `<tmp>` holds only a link to that export. "
            f"{out['clients']} concurrent clients (aiohttp keep-alive connections for REST, one grpc.aio channel for gRPC) in one process, each sending its next "
            f"request as soon as the last one is answered, for {out['seconds_per_phase']:g} s per phase after 1 s of warm-up; "
            f"the clients run on the same {out['machine']['cores']} cores as the server, so they take part of its CPU "
            f"(1-minute load average when the run started: {out['machine']['load_average_1min_at_start']}). "
            "Latency is measured by the client (request sent to response read). Every response is checked against "
            f"`Predictor.from_saved_model` answers computed beforehand (labels equal, probabilities within {out['tolerance']:g}); "
            "eval_data sentences, in order.",
            "",
            *rows,
            "",
            compare.strip(),
            "",
        ]
    )
    update_benchmarks("Serving", section)


if __name__ == "__main__":
    sys.exit(main())
