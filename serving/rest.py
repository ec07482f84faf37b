"""TensorFlow Serving's REST API on aiohttp (https://www.tensorflow.org/tfx/serving/api_rest).

- ``GET  /v1/models/NAME[/versions/N | /labels/L]``            model status
- ``GET  /v1/models/NAME[/versions/N | /labels/L]/metadata``   signature definitions
- ``POST /v1/models/NAME[/versions/N | /labels/L]:predict``    row (``instances``) or columnar
  (``inputs``) format, optional ``signature_name``
- ``GET  /monitoring/prometheus/metrics``                      Prometheus metrics
- ``GET  /`` (and ``/ui/app.js``, ``/ui/style.css``)             the explanation page (:mod:`serving.page`)

Errors are ``{"error": message}`` with the HTTP status TensorFlow Serving gives the error's code.
The handlers parse with :mod:`serving.codec` and run with :class:`serving.inference.Inference`;
the model never runs on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time

from aiohttp import web

from serving import codec, page
from serving.errors import ServingError, invalid
from serving.metrics import PATH as METRICS_PATH

log = logging.getLogger("textcls.serve")

_SPEC = r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?"
_PREDICT_PATH = re.compile(_SPEC + r":(classify|regress|predict)", re.I)
_STATUS_PATH = re.compile(r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?(/metadata)?", re.I)
_JSON_IN_THREAD_BYTES = 256 * 1024  # bigger request bodies are parsed off the event loop
_JSON_IN_THREAD_ROWS = 1024  # answers for more rows are encoded off the event loop


def json_response(obj, status: int = 200) -> web.Response:
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return web.Response(body=body, status=status, content_type="application/json")


def error_response(status: int, message: str) -> web.Response:
    return json_response({"error": message}, status)


def status_json(entries) -> dict:
    return {"model_version_status": [{"version": str(v), "state": st, "status": {"error_code": code, "error_message": msg}}
                                     for v, (st, code, msg) in entries]}


def metadata_json(s) -> dict:
    return {
        "model_spec": {"name": s.name, "signature_name": "", "version": str(s.version)},
        "metadata": {"signature_def": {"signature_def": s.metadata["signature_def"],
                                       "@type": "type.googleapis.com/tensorflow.serving.SignatureDefMap"}},
    }


class RestApi:
    def __init__(self, manager, inference, metrics, max_body_bytes: int):
        self.manager = manager
        self.inference = inference
        self.metrics = metrics
        self.max_body_bytes = int(max_body_bytes)

    async def handle(self, request: web.Request) -> web.Response:
        try:
            return await self._dispatch(request)
        except ServingError as e:
            return error_response(e.http_status, e.message)
        except (asyncio.CancelledError, web.HTTPException):
            raise
        except Exception:  # noqa: BLE001
            log.exception("internal error on %s %s", request.method, request.path)
            return error_response(500, "Internal error (see the server log)")

    async def _dispatch(self, request: web.Request) -> web.Response:
        path, method = request.path, request.method
        if path == METRICS_PATH and method in ("GET", "HEAD"):
            self.metrics.set_versions(self.manager.sources)
            body, ctype = self.metrics.render()
            return web.Response(body=body, headers={"Content-Type": ctype})
        if method in ("GET", "HEAD") and path in ("/", "/index.html"):
            return web.Response(body=page.index_html(self.manager.sources), content_type="text/html", charset="utf-8")
        if method in ("GET", "HEAD") and path.startswith("/ui/"):
            found = page.static_file(path[len("/ui/"):])
            if found is not None:
                return web.Response(body=found[0], content_type=found[1], charset="utf-8")
        if not path.lower().startswith("/v1/"):
            raise ServingError("NOT_FOUND", f"Not found: {path} (this server answers /v1/models/..., {METRICS_PATH} and the page at /)")
        if method == "POST":
            m = _PREDICT_PATH.fullmatch(path)
            if m:
                name, version, label, verb = m.group(1), m.group(2), m.group(3), m.group(4).lower()
                if verb != "predict":
                    raise invalid(f"'{verb}' is not supported by this server (its signatures are predict signatures); use :predict")
                return await self.predict(request, name, None if version is None else int(version), label)
        elif method in ("GET", "HEAD"):
            m = _STATUS_PATH.fullmatch(path)
            if m:
                name, version, label, meta = m.groups()
                if not name:
                    raise invalid("Missing model name in request.")
                version = None if version is None else int(version)
                if meta:
                    return json_response(metadata_json(self.manager.servable(name, version, label)))
                if label is not None:
                    version = self.manager.servable(name, None, label).version
                return json_response(status_json(self.manager.status(name, version)))
        raise invalid(f"Malformed request: {method} {path}")

    async def _read_body(self, request: web.Request) -> bytes:
        too_big = f"the request body is larger than --max_body_bytes={self.max_body_bytes}"
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            raise web.HTTPRequestEntityTooLarge(max_size=self.max_body_bytes, actual_size=request.content_length,
                                                text=too_big)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raw = None
        if raw is None or len(raw) > self.max_body_bytes:
            raise web.HTTPRequestEntityTooLarge(max_size=self.max_body_bytes, actual_size=-1, text=too_big)
        return raw

    async def predict(self, request: web.Request, name: str, version: int | None, label: str | None) -> web.Response:
        t0 = time.perf_counter()
        servable, sig, code = None, "", "UNKNOWN"
        try:
            self.manager.servable(name, version, label)  # 404 before reading a body for nothing
            raw = await self._read_body(request)
            servable = self.manager.servable(name, version, label)
            loop = asyncio.get_running_loop()
            signatures = servable.inputs
            if len(raw) > _JSON_IN_THREAD_BYTES:  # a big body is parsed off the event loop
                sig, fmt, tensors, n = await loop.run_in_executor(None, codec.parse_body, raw, signatures)
            else:
                sig, fmt, tensors, n = codec.parse_body(raw, signatures)
            self.inference.check_size(n, "instances" if fmt == "row" else "inputs")
            arrays = {k: (flat if servable.text_signature(sig) else codec.as_array(flat, shape, signatures[sig][k].dtype))
                      for k, (flat, shape) in tensors.items()}
            outputs = await self.inference.run(servable, sig, arrays)
            response = codec.format_outputs(outputs, fmt)
            if n > _JSON_IN_THREAD_ROWS:  # a big answer is encoded off the event loop
                answer = await loop.run_in_executor(None, json_response, response)
            else:
                answer = json_response(response)
            code = "OK"
            return answer
        except ServingError as e:
            code = e.code
            raise
        except web.HTTPRequestEntityTooLarge:
            code = "INVALID_ARGUMENT"
            raise
        finally:
            self.metrics.request(name, servable.version if servable else version, sig, "rest", code,
                                 time.perf_counter() - t0)


def create_app(api: RestApi) -> web.Application:
    @web.middleware
    async def json_errors(request, handler):
        # aiohttp's own errors (e.g. a body over client_max_size) as TF Serving-style JSON too
        try:
            return await handler(request)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            return error_response(e.status, e.text if e.status == 413 and e.text else (e.reason or str(e)))

    # client_max_size is a backstop; the handler answers 413 itself before reading.
    app = web.Application(client_max_size=max(api.max_body_bytes, 1), middlewares=[json_errors])
    app.router.add_route("*", "/{tail:.*}", api.handle)
    return app
