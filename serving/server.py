"""The server: REST and gRPC on one event loop, over one model manager, batcher and metrics.

:class:`Server` wires the pieces together and runs the background work: polling model folders
for new versions (``--file_system_poll_wait_seconds``) and, when asked, the model config file for
changes (``--model_config_file_poll_wait_seconds``). :func:`run_server` serves until SIGINT or
SIGTERM (``serve.py``); :class:`BackgroundServer` runs a server in a thread (tests, notebooks).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
import threading

import grpc
from aiohttp import web

from serving.grpc_api import add_services
from serving.inference import Inference
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.model_config import ConfigError, read_file
from serving.rest import RestApi, create_app

log = logging.getLogger("textcls.serve")


class Server:
    """Everything one server holds. ``manager`` must have loaded its models already."""

    def __init__(self, manager: ModelManager, *, max_body_bytes: int = 10 * 1024 * 1024, max_batch_size: int = 256,
                 batch_timeout_ms: float = 2.0, max_enqueued_batches: int = 64, max_instances: int = 1024,
                 segment_threads: int = 2, model_config_file: str | None = None, config_poll_seconds: float = 0.0):
        self.manager = manager
        self.metrics = Metrics()
        manager.set_event_hook(self.metrics.model_event)
        for name, src in manager.sources.items():  # loaded before the server existed
            for v in src.servables:
                self.metrics.model_event(name, v, "loaded")
        self.inference = Inference(max_batch_size=max_batch_size, batch_timeout_ms=batch_timeout_ms,
                                   max_enqueued_batches=max_enqueued_batches, max_instances=max_instances,
                                   segment_threads=segment_threads, metrics=self.metrics)
        self.rest = RestApi(manager, self.inference, self.metrics, max_body_bytes)
        self.app = create_app(self.rest)
        self.loader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="loader")
        self.model_config_file = model_config_file
        self.config_poll_seconds = float(config_poll_seconds)
        self._config_text: str | None = None
        if model_config_file:
            try:
                with open(model_config_file, encoding="utf-8") as f:
                    self._config_text = f.read()
            except OSError:
                pass
        self._runner: web.AppRunner | None = None
        self._grpc: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task] = []

    async def start(self, host: str = "127.0.0.1", rest_port: int = 8501, grpc_port: int | None = 8500) -> tuple[int, int | None]:
        """Listen; (REST port, gRPC port) as bound (0 asks for any free port; None: no gRPC)."""
        self.inference.start()
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
        await self._runner.setup()
        try:
            site = web.TCPSite(self._runner, host, rest_port, backlog=1024)
            await site.start()
            rest_bound = self._runner.addresses[0][1]
            grpc_bound = None
            if grpc_port is not None:
                self._grpc = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
                add_services(self._grpc, self.manager, self.inference, self.metrics, self.loader)
                address = f"[{host}]:{grpc_port}" if ":" in host else f"{host}:{grpc_port}"
                try:
                    grpc_bound = self._grpc.add_insecure_port(address)
                except RuntimeError as e:
                    raise OSError(f"gRPC cannot listen on {address}: {e}") from None
                if not grpc_bound:
                    raise OSError(f"gRPC cannot listen on {address}")
                await self._grpc.start()
        except BaseException:
            await self.stop()
            raise
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._every(self.manager.poll_seconds, self.manager.poll, "polling model folders")))
        if self.model_config_file and self.config_poll_seconds > 0:
            self._tasks.append(loop.create_task(self._every(self.config_poll_seconds, self._reload_config,
                                                            f"polling {self.model_config_file}")))
        return rest_bound, grpc_bound

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self._tasks = []
        if self._grpc is not None:
            await self._grpc.stop(grace=2.0)
            self._grpc = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.inference.stop()
        self.loader.shutdown(wait=False, cancel_futures=True)

    async def _every(self, seconds: float, work, what: str) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(seconds)
            try:
                await loop.run_in_executor(self.loader, work)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("%s failed", what)

    def _reload_config(self) -> None:
        """Blocking: apply the model config file if it changed; a bad change is logged and the
        old config keeps serving (TensorFlow Serving's --model_config_file_poll_wait_seconds)."""
        try:
            with open(self.model_config_file, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            log.error("cannot read %s: %s; the old config keeps serving", self.model_config_file, e.strerror or e)
            return
        if text == self._config_text:
            return
        self._config_text = text
        try:
            self.manager.apply_config(read_file(self.model_config_file))
        except ConfigError as e:
            log.error("model config change refused: %s; the old config keeps serving", e)
            return
        log.info("model config %s applied: serving %s", self.model_config_file, ", ".join(sorted(self.manager.sources)))


async def run_server(server: Server, host: str = "127.0.0.1", rest_port: int = 8501, grpc_port: int | None = 8500,
                     ready=None) -> None:
    """Serve until SIGINT or SIGTERM, then shut down cleanly. ``ready(rest_port, grpc_port)`` is
    called once listening."""
    bound = await server.start(host, rest_port, grpc_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(s, stop.set)
    if ready:
        ready(*bound)
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        for s in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(s)
        await server.stop()


class BackgroundServer:
    """A server in a background thread with its own event loop (tests, notebooks).

    >>> with BackgroundServer("pb_model/textcnn", "textcnn") as srv:
    ...     urllib.request.urlopen(srv.url + "/v1/models/textcnn").read()

    ``srv.url`` is the REST API, ``srv.grpc_target`` the gRPC one (``host:port``).
    """

    def __init__(self, base_path: str | None = None, name: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 grpc_port: int | None = 0, poll_seconds: float = 2.0, manager: ModelManager | None = None, **options):
        if manager is None:
            manager = ModelManager.single(name, base_path, poll_seconds)
            manager.load_initial()
        self.manager = manager
        self.server = Server(manager, **options)
        self.loop = asyncio.new_event_loop()
        started: concurrent.futures.Future = concurrent.futures.Future()
        self._stopped = threading.Event()

        def main():
            asyncio.set_event_loop(self.loop)
            try:
                ports = self.loop.run_until_complete(self.server.start(host, port, grpc_port))
            except BaseException as e:  # noqa: BLE001
                started.set_exception(e)
                return
            started.set_result(ports)
            self.loop.run_forever()
            self.loop.run_until_complete(self.server.stop())
            self.loop.close()

        self._thread = threading.Thread(target=main, name="serve", daemon=True)
        self._thread.start()
        self.port, self.grpc_port = started.result(timeout=60)
        self.host = host
        self.url = f"http://{host}:{self.port}"
        self.grpc_target = f"{host}:{self.grpc_port}" if self.grpc_port else None

    def close(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
