"""Serve exported models over TensorFlow Serving's gRPC and REST APIs.

    python serve.py --model_base_path=pb_model/textcnn --model_name=textcnn            # gRPC :8500, REST :8501
    python serve.py --model_config_file=models.config --model_config_file_poll_wait_seconds=60

Serves the versions under each model's base path (``<int version>/saved_model.pb``, as train.py
exports; the newest one unless the model config says otherwise), loads new versions as they
appear, and answers like tensorflow_model_server: gRPC ``PredictionService`` and
``ModelService`` on --port, REST ``/v1/models/...`` and ``/monitoring/prometheus/metrics`` on
--rest_api_port. Stop it with Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        sys.stderr.write(f"error: {message} (see python serve.py --help)\n")
        sys.exit(2)


def _number(kind, ok, what):
    """An argparse type: a `kind` number for which `ok` holds; `what` names it in the error."""

    def parse(s):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}")
        return v

    return parse


def _positive(kind):
    return _number(kind, lambda v: v > 0, f"a positive {kind.__name__}")


def parse_args(argv=None):
    port = _number(int, lambda v: 0 <= v <= 65535, "a port number 0-65535")
    ap = _Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--port", type=port, default=8500, help="gRPC port (0: any free port, logged)")
    ap.add_argument("--rest_api_port", type=port, default=8501, help="REST port (0: any free port, logged)")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 exposes the server to the network)")
    ap.add_argument("--model_base_path", default=None, help="folder of integer version folders (pb_model_path of a config)")
    ap.add_argument("--model_name", default=None, help="name in requests (default: the base path's folder name)")
    ap.add_argument("--model_config_file", default=None,
                    help="models to serve, in TensorFlow Serving's ModelServerConfig text format (instead of --model_base_path)")
    ap.add_argument("--model_config_file_poll_wait_seconds", type=_number(float, lambda v: v >= 0, "a number >= 0"),
                    default=0.0, help="how often to re-read --model_config_file (0: never)")
    ap.add_argument("--file_system_poll_wait_seconds", "--poll_seconds", dest="poll_seconds", type=_positive(float),
                    default=2.0, help="how often to look for new versions")
    ap.add_argument("--max_body_bytes", type=_positive(int), default=10 * 1024 * 1024, help="larger REST bodies get 413")
    ap.add_argument("--max_batch_size", type=_positive(int), default=256,
                    help="most texts per batched serving_default run (1: no batching)")
    ap.add_argument("--batch_timeout_ms", type=_number(float, lambda v: v >= 0, "a number >= 0"), default=2.0,
                    help="longest wait for more requests to fill a batch")
    ap.add_argument("--max_enqueued_batches", type=_positive(int), default=64,
                    help="batches' worth of texts that may wait; past it requests get UNAVAILABLE (HTTP 503) at once")
    ap.add_argument("--max_instances_per_request", type=_positive(int), default=1024,
                    help="most instances in one request (more: INVALID_ARGUMENT, HTTP 400)")
    ap.add_argument("--segment_threads", type=_positive(int), default=2, help="jieba threads for word models' raw text")
    args = ap.parse_args(argv)
    if args.model_config_file:
        if args.model_base_path:
            ap.error("give --model_config_file or --model_base_path, not both")
        if not os.path.isfile(args.model_config_file):
            ap.error(f"argument --model_config_file: {args.model_config_file}: no such file")
        return args
    if not args.model_base_path:
        ap.error("one of --model_base_path or --model_config_file is required")
    base = args.model_base_path.rstrip("/") or "/"
    if args.model_name is None:
        args.model_name = os.path.basename(os.path.abspath(base))
    if not re.fullmatch(r"[^/:\s]+", args.model_name):
        ap.error(f"argument --model_name: {args.model_name!r} may not contain '/', ':' or spaces")
    if not os.path.isdir(base):
        ap.error(f"argument --model_base_path: {base}: no such directory")
    if not any(re.fullmatch(r"\d+", d) and os.path.isfile(os.path.join(base, d, "saved_model.pb")) for d in os.listdir(base)):
        ap.error(f"argument --model_base_path: {base} holds no version folder (<int>/saved_model.pb): export one with "
                 "`python train.py --config_path=CONFIG`")
    args.model_base_path = base
    return args


def main(argv=None) -> int:
    args = parse_args(argv)  # before importing TensorFlow: bad arguments fail fast
    logging.basicConfig(level=logging.INFO, format="%(asctime)s serve %(levelname)s %(message)s", stream=sys.stderr)
    from serving.manager import ModelManager, NoLoadableVersion
    from serving.model_config import ConfigError, read_file
    from serving.server import Server, run_server

    try:
        if args.model_config_file:
            manager = ModelManager(read_file(args.model_config_file), args.poll_seconds)
        else:
            manager = ModelManager.single(args.model_name, args.model_base_path, args.poll_seconds)
        manager.load_initial()
    except (NoLoadableVersion, ConfigError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    server = Server(manager, max_body_bytes=args.max_body_bytes, max_batch_size=args.max_batch_size,
                    batch_timeout_ms=args.batch_timeout_ms, max_enqueued_batches=args.max_enqueued_batches,
                    max_instances=args.max_instances_per_request, segment_threads=args.segment_threads,
                    model_config_file=args.model_config_file,
                    config_poll_seconds=args.model_config_file_poll_wait_seconds)

    def ready(rest_port, grpc_port):
        host = f"[{args.host}]" if ":" in args.host else args.host
        say = logging.getLogger("textcls.serve").info
        for name, src in sorted(manager.sources.items()):
            say("serving model %s version(s) %s from %s at http://%s:%d/v1/models/%s",
                name, ",".join(map(str, sorted(src.servables))), src.base_path, host, rest_port, name)
        say("gRPC API (tensorflow.serving.PredictionService, ModelService) at %s:%d", host, grpc_port)

    try:
        asyncio.run(run_server(server, args.host, args.rest_api_port, args.port, ready=ready))
    except OSError as e:
        sys.stderr.write(f"error: cannot listen on {args.host} (--port {args.port}, --rest_api_port "
                         f"{args.rest_api_port}): {e.strerror or e}\n")
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
