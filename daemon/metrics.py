"""Prometheus metrics and the HTTP endpoint (/metrics, /healthz), with prometheus-client.

Latency buckets span 0.5 ms to 10 s so that millisecond-scale quantiles are resolved.
"""

from __future__ import annotations

import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector, make_wsgi_app

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """All of the daemon's metrics, in their own registry."""

    def show_composition(self, instrument: str, prediction) -> None:
        """The latest composition of an instrument: the elements and groups it reports (series
        of an earlier spectrum that this one does not report are removed)."""
        for gauge, values in (
            (self.atomic_percent, prediction.atomic_percent),
            (self.group_percent, prediction.group_percent),
        ):
            shown = self._shown.setdefault((gauge, instrument), set())
            for name in shown - set(values):
                gauge.remove(instrument, name)
            for name, value in values.items():
                gauge.labels(instrument, name).set(value)
            shown.clear()
            shown.update(values)

    def set_stage(self, stage: str, up: bool, why: str = "") -> None:
        """Record a stage as running or down (why: one line); /healthz fails while any is down."""
        with self._health_lock:
            if up:
                self._down.pop(stage, None)
            else:
                self._down[stage] = why
        self.stage_up.labels(stage).set(1 if up else 0)

    def problems(self) -> dict[str, str]:
        """The stages that are down, with why."""
        with self._health_lock:
            return dict(self._down)

    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.processed = Counter(
            "xpstream_spectra_processed", "Spectra predicted and published", ["source"], registry=r
        )
        self.failed = Counter("xpstream_spectra_failed", "Spectra or files refused", ["source", "reason"], registry=r)
        self.out_of_library = Counter(
            "xpstream_spectra_out_of_library",
            "Spectra published with in_library false (signal the polymer library cannot explain)",
            ["source"],
            registry=r,
        )
        self.dropped = Counter(
            "xpstream_spectra_dropped", "Spectra dropped by the overload policy", ["source"], registry=r
        )
        self.latency = Histogram(
            "xpstream_latency_seconds", "Receipt to publication, per spectrum", buckets=LATENCY_BUCKETS, registry=r
        )
        self.inference = Histogram(
            "xpstream_inference_seconds",
            "onnxruntime time per batch (preprocessing graph included)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "xpstream_batch_size", "Spectra per inference batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_depth = Gauge("xpstream_queue_depth", "Spectra waiting for inference", registry=r)
        self.queue_capacity = Gauge("xpstream_queue_capacity", "Queue capacity", registry=r)
        self.memory_ceiling = Gauge(
            "xpstream_memory_ceiling_bytes", "Resident-memory ceiling of the daemon (0 = none)", registry=r
        )
        self.memory_waits = Counter(
            "xpstream_memory_waits",
            "Inputs held back (PULL, folder) or dropped (SUB) while resident memory was above the ceiling",
            ["source"],
            registry=r,
        )
        self.zmq_disconnects = Counter(
            "xpstream_zmq_disconnects",
            "Input connections ended: a sender that closed, or one whose message was above "
            "zmq.max_message_bytes (ZeroMQ drops such a message with its connection)",
            ["source"],
            registry=r,
        )
        ProcessCollector(registry=r)  # process_resident_memory_bytes, against the ceiling
        self.model = Info("xpstream_model", "Model being served", registry=r)
        self.reload_failures = Counter(
            "xpstream_model_reload_failures", "Model reloads refused (the previous model kept serving)", registry=r
        )
        self.atomic_percent = Gauge(
            "xpstream_latest_atomic_percent",
            "Element composition (at. %) of the latest spectrum of each instrument",
            ["instrument", "element"],
            registry=r,
        )
        self.group_percent = Gauge(
            "xpstream_latest_group_percent",
            "Functional-group shares (% of non-H atoms) of the latest spectrum of each instrument",
            ["instrument", "group"],
            registry=r,
        )
        self.files_ignored = Counter(
            "xpstream_files_ignored",
            "Files in a watched folder that no watch pattern takes",
            ["instrument"],
            registry=r,
        )
        self.stage_up = Gauge(
            "xpstream_stage_up",
            "1 while a daemon stage (thread) runs, 0 after it died until restarted",
            ["stage"],
            registry=r,
        )
        self.stage_restarts = Counter(
            "xpstream_stage_restarts", "Daemon stages restarted after an unexpected error", ["stage"], registry=r
        )
        self.ready = threading.Event()
        self._down: dict[str, str] = {}  # stage -> why it is down
        self._health_lock = threading.Lock()
        self._shown: dict[tuple, set[str]] = {}  # (gauge, instrument) -> the label values it shows


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):  # scrapes are not worth a log line each
        pass


def serve_http(metrics: Metrics, address: str):
    """Start /metrics and /healthz on HOST:PORT in a daemon thread; returns the server."""
    host, port = address.rsplit(":", 1)
    metrics_app = make_wsgi_app(metrics.registry)

    def app(environ, start_response):
        if environ.get("PATH_INFO") == "/healthz":
            problems = metrics.problems()
            ok = metrics.ready.is_set() and not problems
            text = "ok" if ok else "; ".join(f"{stage} down: {why}" for stage, why in problems.items()) or "starting"
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [text.encode() + b"\n"]
        return metrics_app(environ, start_response)

    server = make_server(host, int(port), app, server_class=_Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
