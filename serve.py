"""Serve exported models over TensorFlow Serving's REST API.

    python serve.py --model_base_path=pb_model/textcnn --model_name=textcnn --port=8501

Serves the newest version under --model_base_path (``<int version>/saved_model.pb``, as
train.py exports), loads newer versions as they appear, and answers
``GET /v1/models/NAME[/versions/N][/metadata]`` and ``POST /v1/models/NAME[/versions/N]:predict``
like TensorFlow Serving. Stop it with Ctrl-C or SIGTERM.
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
    ap = _Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--model_base_path", required=True, help="folder of integer version folders (pb_model_path of a config)")
    ap.add_argument("--model_name", default=None, help="name in the URLs (default: the base path's folder name)")
    ap.add_argument("--port", "--rest_api_port", dest="port", type=_number(int, lambda v: 0 <= v <= 65535, "a port number 0-65535"), default=8501, help="HTTP port (0: any free port)")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 exposes the server to the network)")
    ap.add_argument("--poll_seconds", type=_positive(float), default=2.0, help="how often to look for new versions")
    ap.add_argument("--max_body_bytes", type=_positive(int), default=10 * 1024 * 1024, help="larger request bodies get 413")
    ap.add_argument("--max_batch_size", type=_positive(int), default=256,
                    help="most texts per serving_default call when batching concurrent requests (1: no batching)")
    ap.add_argument("--batch_timeout_ms", type=_number(float, lambda v: v >= 0, "a number >= 0"), default=2.0,
                    help="longest wait for more requests to fill a batch")
    args = ap.parse_args(argv)
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
    from predictors.server import ModelManager, NoLoadableVersion, run_server

    manager = ModelManager(args.model_name, args.model_base_path, args.poll_seconds)
    try:
        servable = manager.load_initial()
    except NoLoadableVersion as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    except KeyboardInterrupt:
        return 130

    def ready(port):
        host = f"[{args.host}]" if ":" in args.host else args.host
        logging.getLogger("textcls.serve").info(
            "serving model %s version %d from %s at http://%s:%d/v1/models/%s",
            args.model_name, servable.version, args.model_base_path, host, port, args.model_name,
        )

    try:
        asyncio.run(run_server(manager, args.host, args.port, ready=ready, max_body_bytes=args.max_body_bytes,
                               max_batch_size=args.max_batch_size, batch_timeout_ms=args.batch_timeout_ms))
    except OSError as e:
        sys.stderr.write(f"error: cannot listen on {args.host}:{args.port}: {e.strerror or e}\n")
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
