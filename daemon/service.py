"""The daemon: wires sources -> micro-batcher -> inference -> publisher, with metrics.

One inference thread (the caller of `run`) takes batches, runs the model and hands predictions
to the publisher. SIGTERM stops the sources, drains the queue and exits, at the latest after
`batch.drain_s` (files not yet published are processed again at the next start); SIGHUP (or a
change of the model file) reloads the model between two batches, so no queued spectrum is lost.

The service is the sources' `Handoff`: every reader thread runs as a supervised stage, and an
error in one batch is retried spectrum by spectrum, so that only the spectrum that fails gets an
error record (reason `internal`). `/healthz` fails and the systemd watchdog is not fed while a
stage is down.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import zmq

from xpstream.daemon.analysis import Analyser, InferenceBackend, open_backend
from xpstream.daemon.batcher import DROP_OLDEST, MicroBatcher
from xpstream.daemon.config import Config, ConfigError
from xpstream.daemon.history import History, ReplayServer
from xpstream.daemon.journal import Journal, path_text
from xpstream.daemon.memory import MemoryCeiling
from xpstream.daemon.messages import encode_error, encode_prediction
from xpstream.daemon.metrics import Metrics, serve_http
from xpstream.daemon.publish import Publisher, error_topic, prediction_topic
from xpstream.daemon.sources import Failure, Item, Source
from xpstream.daemon.supervise import MAX_ERROR_CHARS, one_line, supervised

log = logging.getLogger("xpstream.service")
MIB = 1024 * 1024
MEMORY_WAIT_S = 0.2  # a source above the memory ceiling tries again once the queue is empty, or after this
MODEL_CHECK_S = 1.0


class JsonFormatter(logging.Formatter):
    """One JSON object per log line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class Notifier:
    """systemd notifications (READY, WATCHDOG) when run under systemd, else nothing."""

    def __init__(self):
        self._notifier = None
        self.watchdog_s = None
        if os.environ.get("NOTIFY_SOCKET"):
            import sdnotify

            self._notifier = sdnotify.SystemdNotifier()
            usec = os.environ.get("WATCHDOG_USEC")
            self.watchdog_s = int(usec) / 2e6 if usec else None
        self._last = 0.0

    def notify(self, state: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(state)

    def tick(self) -> None:
        if self.watchdog_s and time.monotonic() - self._last >= self.watchdog_s:
            self.notify("WATCHDOG=1")
            self._last = time.monotonic()


def _bind_refused(key: str, endpoint: str, err: zmq.ZMQError, example: str) -> ConfigError:
    """The one-line start-up error for an endpoint that cannot be bound or connected."""
    return ConfigError(f"{key} {endpoint!r}: {err}; give a free endpoint, e.g. {example}")


class Service:
    def __init__(self, config: Config, model_path: Path):
        self.config = config
        self.model_path = model_path
        self.metrics = Metrics()
        self.analyser = Analyser(self._load(model_path), config.instruments)
        self._model_mtime = model_path.stat().st_mtime_ns
        b = config.batch
        self.batcher = MicroBatcher(
            b.max_batch,
            b.max_wait_ms / 1000,
            b.capacity,
            on_drop=self._dropped,
            capacity_bytes=int(b.capacity_mb * MIB),
            weigh=lambda item: item.nbytes,
        )
        self.metrics.queue_capacity.set(b.capacity)
        self.memory = MemoryCeiling(int(b.memory_mb * MIB))
        self.metrics.memory_ceiling.set(self.memory.ceiling_bytes)
        if b.memory_mb and not self.memory.ceiling_bytes:
            log.warning("batch.memory_mb: no /proc/self/statm on this system, so no memory ceiling")
        self.stopped = threading.Event()
        self.context = zmq.Context()
        self.curve = self._start_curve()
        self.history = History(config.state.history, config.state.history_max) if config.state.history else None
        try:
            self.publisher = Publisher(
                self.context, config.zmq.pub, self.curve, self.supervised, self.metrics.set_stage, self.history
            )
        except zmq.ZMQError as err:
            raise _bind_refused("zmq.pub", config.zmq.pub, err, "--pub tcp://127.0.0.1:5558") from None
        self.replay = None
        if config.zmq.replay and self.history is not None:
            try:
                self.replay = ReplayServer(self.context, config.zmq.replay, self.history, self.supervised)
            except zmq.ZMQError as err:
                raise _bind_refused(
                    "zmq.replay", config.zmq.replay, err, "--replay tcp://127.0.0.1:5558, or '' for none"
                ) from None
        self.journal = Journal(config.state.journal) if config.watch.folders else None
        self.sources = self._build_sources()
        self._reload = threading.Event()
        self._http = None
        self.notifier = Notifier()

    # -- wiring ---------------------------------------------------------------------------
    def _build_sources(self) -> list[Source]:
        from xpstream.daemon.sources.folder import FolderSource
        from xpstream.daemon.sources.sockets import PULL_RECEIVE_HWM, SocketSource

        z, drain_s = self.config.zmq, self.config.batch.drain_s
        # what ZeroMQ may hold per PULL sender stays within a quarter of the memory ceiling
        memory = self.memory.ceiling_bytes
        pull_hwm = min(PULL_RECEIVE_HWM, max(1, memory // 4 // z.max_message_bytes)) if memory else None
        sources: list[Source] = []
        if self.config.watch.folders:
            sources.append(FolderSource(self.config.watch, self.journal, self))
        publisher_key = self._publisher_key() if z.sub else None
        sockets = [("pull", endpoint, ("",), None) for endpoint in z.pull]
        sockets += [("sub", endpoint, z.sub_topics, publisher_key) for endpoint in z.sub]
        for kind, endpoint, topics, key in sockets:
            try:
                sources.append(
                    SocketSource(
                        self.context,
                        kind,
                        endpoint,
                        self,
                        z.max_message_bytes,
                        topics,
                        self.curve,
                        key,
                        drain_s,
                        pull_hwm if kind == "pull" else None,
                    )
                )
            except zmq.ZMQError as err:
                raise _bind_refused(f"zmq.{kind}", endpoint, err, "tcp://127.0.0.1:5557") from None
        return sources

    def _publisher_key(self) -> bytes | None:
        """The public key the SUB sockets require of their publishers (None: plain SUB)."""
        path = self.config.security.curve_publisher_key
        if not path:
            return None
        import zmq.auth

        try:
            public, _ = zmq.auth.load_certificate(Path(path).expanduser())
        except (OSError, ValueError) as err:
            raise ConfigError(f"security.curve_publisher_key: {err}") from None
        log.info("CURVE on SUB: publishers must hold the key in %s", path)
        return public

    def _start_curve(self) -> tuple[bytes, bytes] | None:
        """CURVE keys of the daemon, with an authenticator that admits the allowed clients only."""
        s = self.config.security
        if not s.curve_server_secret:
            return None
        import zmq.auth
        from zmq.auth.thread import ThreadAuthenticator

        public, secret = zmq.auth.load_certificate(Path(s.curve_server_secret).expanduser())
        if secret is None:
            raise ConfigError(f"security.curve_server_secret: {s.curve_server_secret} holds no secret key")
        self.authenticator = ThreadAuthenticator(self.context)
        self.authenticator.start()
        self.authenticator.configure_curve(domain="*", location=str(Path(s.curve_clients_dir).expanduser()))
        log.info("CURVE on PULL and PUB; allowed clients from %s", s.curve_clients_dir)
        return public, secret

    def _load(self, path: Path) -> InferenceBackend:
        m = self.config.model
        model = open_backend(path, m.threads, False, m.ray_address, m.ray_actors, m.folder)
        meta = model.metadata
        self.metrics.model.info({"model_id": meta.model_id, "version": meta.version, "provider": model.provider})
        log.info("serving model %s %s from %s on %s", meta.model_id, meta.version, path, model.provider)
        return model

    # -- the sources' handoff -------------------------------------------------------------
    def put(self, item: Item, policy: str) -> bool:
        if self.memory.over() and len(self.batcher):  # only while a backlog can drain
            self.metrics.memory_waits.labels(item.source).inc()
            if policy == DROP_OLDEST:
                self._dropped(item)
                return True
            self.batcher.wait_until_empty(MEMORY_WAIT_S)
            return False
        ok = self.batcher.put(item, policy, timeout=0.2)
        self.metrics.queue_depth.set(len(self.batcher))
        return ok

    def fail(self, failure: Failure, after=None) -> None:
        message = path_text(failure.message)[:MAX_ERROR_CHARS]  # error texts never grow with input
        log.warning("refused %s from %s: %s (%s)", failure.id or "input", failure.origin, message, failure.reason)
        self.metrics.failed.labels(failure.source, failure.reason).inc()
        payload = encode_error(failure.id, path_text(failure.origin), failure.reason, message)
        self.publisher.publish(error_topic(failure.instrument), payload, sent=after)

    def ignored(self, instrument: str) -> None:
        self.metrics.files_ignored.labels(instrument).inc()

    def disconnected(self, source: str) -> None:
        self.metrics.zmq_disconnects.labels(source).inc()

    def supervised(self, stage: str, loop) -> threading.Thread:
        return supervised(stage, loop, self.metrics, self.stopped)

    def _dropped(self, item: Item) -> None:
        self.metrics.dropped.labels(item.source).inc()

    # -- running --------------------------------------------------------------------------
    def request_stop(self, *_args) -> None:
        self.stopped.set()

    def request_reload(self, *_args) -> None:
        self._reload.set()

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT (or request_stop), then drain and return."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
            signal.signal(signal.SIGHUP, self.request_reload)
        if self.config.metrics.address:
            try:
                self._http = serve_http(self.metrics, self.config.metrics.address)
            except (OSError, ValueError) as err:
                raise ConfigError(
                    f"metrics.address {self.config.metrics.address!r}: {getattr(err, 'strerror', None) or err}; "
                    "give a free HOST:PORT, e.g. --metrics 127.0.0.1:9311 (or '' for none)"
                ) from None
        for source in self.sources:
            source.start()
        if self.replay is not None:
            self.replay.start()
        self.metrics.ready.set()
        self.notifier.notify("READY=1")
        log.info("ready")
        if importlib.util.find_spec("pynxtools_xps") is None:
            log.info("native vendor files (SPECS, PHI, Scienta) are refused: pip install 'xpstream[vendor]' reads them")
        last_check = time.monotonic()
        deadline = None  # of the drain, once stopping
        while True:
            if self.stopped.is_set() and deadline is None:
                deadline = time.monotonic() + self.config.batch.drain_s
                self.notifier.notify("STOPPING=1")
                log.info("stopping: draining %d queued spectra", len(self.batcher))
                for source in self.sources:
                    source.stop()
            batch = self.batcher.get_batch(timeout=0.2)
            if batch:
                self._infer(batch)
            elif deadline is not None and all(s.finished() for s in self.sources) and not len(self.batcher):
                break
            if deadline is not None and time.monotonic() > deadline:
                log.warning(
                    "drain deadline passed: %d queued spectra not published (files: next start)", len(self.batcher)
                )
                break
            if not self.metrics.problems():
                self.notifier.tick()  # systemd's watchdog is fed only while every stage runs
            if time.monotonic() - last_check > MODEL_CHECK_S or self._reload.is_set():
                last_check = time.monotonic()
                self._maybe_reload()
        self.batcher.close()
        self._shutdown()

    def _infer(self, batch: list[Item]) -> None:
        """Analyse, encode and publish a batch; if that fails, each spectrum alone, and a
        spectrum that fails alone gets an error record."""
        self.metrics.queue_depth.set(len(self.batcher))
        start = time.monotonic()
        try:
            predictions = self.analyser.analyse(batch)
            now = time.monotonic()
            inference_s = now - start
            messages = []
            for item, pred in zip(batch, predictions, strict=True):
                timings = {
                    "queue_and_inference": round(1000 * (now - item.received), 3),
                    "inference": 1000 * inference_s,
                }
                messages.append(
                    (prediction_topic(item.instrument), encode_prediction(pred, item.id, timings), item.on_done)
                )
        except Exception as err:
            if len(batch) == 1:
                item = batch[0]
                failure = Failure(item.id, item.instrument, item.source, item.origin, "internal", one_line(err))
                self.fail(failure, item.on_done)
                return
            log.warning("batch of %d failed (%s); analysing its spectra one by one", len(batch), one_line(err))
            for item in batch:
                self._infer([item])
            return
        self.metrics.inference.observe(inference_s)
        self.metrics.batch_size.observe(len(batch))
        processed, out_of_library = Counter(), Counter()
        for item, pred in zip(batch, predictions, strict=True):
            processed[item.source] += 1
            out_of_library[item.source] += not pred.in_library
        latest = {item.instrument: pred for item, pred in zip(batch, predictions, strict=True)}
        for instrument, pred in latest.items():
            self.metrics.show_composition(instrument, pred)
        handed = time.monotonic()
        self.publisher.publish_many(messages)
        for item in batch:
            self.metrics.latency.observe(handed - item.received)
        for source, count in processed.items():
            self.metrics.processed.labels(source).inc(count)
            if out_of_library[source]:
                self.metrics.out_of_library.labels(source).inc(out_of_library[source])

    def _maybe_reload(self) -> None:
        forced = self._reload.is_set()
        self._reload.clear()
        try:
            mtime = self.model_path.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if not forced and mtime == self._model_mtime:
            return
        try:
            new = self._load(self.model_path)
        except Exception as err:  # any failure to load or check a new model keeps the old one serving
            log.error("model reload refused, keeping the current model: %s", str(err)[:300])
            self.metrics.reload_failures.inc()
        else:
            old, self.analyser.backend = self.analyser.backend, new
            old.close()
        self._model_mtime = mtime

    def _shutdown(self) -> None:
        self.publisher.close()
        if self.replay is not None:
            self.replay.stop()
        if self.history is not None:
            self.history.close()
        if self.curve is not None:
            self.authenticator.stop()
        self.analyser.backend.close()
        if self.config.model.ray_address:
            from xpstream.daemon import ray_inference

            ray_inference.disconnect()
        if self.journal is not None:
            self.journal.close()
        if self._http is not None:
            self._http.shutdown()
        if all(source.finished() for source in self.sources):
            self.context.term()  # else a reader still holds its socket (drain deadline): the exit ends it
        log.info("stopped")
