"""Prometheus metrics, served at ``/monitoring/prometheus/metrics`` (TensorFlow Serving's path).

Each server has its own registry (several servers can run in one process, as in the tests), and
``prometheus_client`` writes the text format. Names follow Prometheus' conventions under a
``tfserving_`` prefix; what they count:

- ``tfserving_requests_total{model, version, signature, api, status}``: requests answered,
  ``api`` is ``rest`` or ``grpc``, ``status`` the canonical code (``OK``, ``INVALID_ARGUMENT``,
  ``UNAVAILABLE``, ...).
- ``tfserving_request_latency_seconds{model, signature, api}``: time from the request's arrival
  to its answer (histogram).
- ``tfserving_batch_size``: texts per batched model run (histogram).
- ``tfserving_queue_texts``: texts waiting in the batch queue now; ``tfserving_queue_rejections_total``:
  requests refused because the queue was full.
- ``tfserving_model_events_total{model, event}``: versions ``loaded``, ``unloaded``,
  ``load_failed``; ``tfserving_model_versions_available{model}``: versions serving now.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PATH = "/monitoring/prometheus/metrics"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """The server's metrics, in a registry of their own."""

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("tfserving_requests", "Requests answered", ["model", "version", "signature", "api", "status"],
                                registry=r)
        self.latency = Histogram("tfserving_request_latency_seconds", "Request latency, arrival to answer",
                                 ["model", "signature", "api"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("tfserving_batch_size", "Texts per batched model run", buckets=BATCH_BUCKETS, registry=r)
        self.queue_texts = Gauge("tfserving_queue_texts", "Texts waiting in the batch queue", registry=r)
        self.rejections = Counter("tfserving_queue_rejections", "Requests refused because the batch queue was full",
                                  registry=r)
        self.model_events = Counter("tfserving_model_events", "Model version events", ["model", "event"], registry=r)
        self.versions = Gauge("tfserving_model_versions_available", "Versions serving now", ["model"], registry=r)

    def request(self, model: str, version, signature: str, api: str, status: str, seconds: float) -> None:
        self.requests.labels(model, "" if version is None else str(version), signature or "", api, status).inc()
        self.latency.labels(model, signature or "", api).observe(seconds)

    def model_event(self, model: str, version: int, event: str) -> None:
        self.model_events.labels(model, event).inc()

    def set_versions(self, sources) -> None:
        for name, src in sources.items():
            self.versions.labels(name).set(len(src.servables))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
