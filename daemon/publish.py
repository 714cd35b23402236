"""Publishing on a ZeroMQ PUB socket: topics `xps/<instrument>/prediction` and
`xps/<instrument>/error`, each message two frames [topic, msgpack payload].

The socket is owned by one thread fed through a queue, so inference and sources can publish
from their own threads. Each message may carry a `sent` callback (the journal record of its
file): one that fails (a full disk) is retried, in order, until it succeeds, and `health`
hears about it, so a failing journal makes the daemon unhealthy instead of ending publishing.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable

import zmq

from xpstream.daemon.history import History, with_seq
from xpstream.daemon.supervise import one_line

log = logging.getLogger("xpstream.publish")
_STOP = object()
RETRY_S = 1.0


def prediction_topic(instrument: str) -> bytes:
    return f"xps/{instrument}/prediction".encode()


def error_topic(instrument: str) -> bytes:
    return f"xps/{instrument}/error".encode()


class Publisher:
    def __init__(
        self,
        context: zmq.Context,
        endpoint: str,
        curve: tuple[bytes, bytes] | None = None,
        supervised: Callable[[str, Callable[[], None]], threading.Thread] | None = None,
        health: Callable[[str, bool, str], None] | None = None,
        history: History | None = None,
    ):
        """supervised: starts the publishing loop as a stage (default: a plain thread);
        health(stage, ok, why): told when `sent` callbacks ("journal") or history writes
        ("history") start and stop failing; history: where published records are kept."""
        self.endpoint = endpoint
        self._queue: queue.Queue = queue.Queue()
        self._unconfirmed: deque[Callable[[], None]] = deque()  # sent callbacks still to succeed
        self._health = health or (lambda stage, ok, why: None)
        self._failing: set[str] = set()  # "journal", "history": what fails now
        self._history = history
        self.last_seq = history.last_seq if history is not None else 0
        self._socket = context.socket(zmq.PUB)
        self._socket.setsockopt(zmq.SNDHWM, 100_000)
        if curve is not None:  # subscribers must hold an allowed client key
            self._socket.curve_publickey, self._socket.curve_secretkey = curve
            self._socket.curve_server = True
        self._socket.bind(endpoint)
        start = supervised or (lambda stage, loop: threading.Thread(target=loop, name=stage, daemon=True))
        self._thread = start("publisher", self._loop)
        self._thread.start()

    def publish(self, topic: bytes, payload: bytes, sent: Callable[[], None] | None = None) -> None:
        """Queue a message; `sent` is called in the publisher thread once it is handed to ZeroMQ."""
        self._queue.put([(topic, payload, sent)])

    def publish_many(self, messages: list[tuple[bytes, bytes, Callable[[], None] | None]]) -> None:
        """Queue (topic, payload, sent) messages in one hand-off (a batch's predictions)."""
        if messages:
            self._queue.put(messages)

    def close(self, linger_ms: int = 2000) -> None:
        """Send what is queued, then close the socket."""
        self._queue.put(_STOP)
        self._thread.join(timeout=30)
        self._socket.close(linger=linger_ms)

    def _loop(self) -> None:
        while True:
            try:
                messages = self._queue.get(timeout=RETRY_S if self._unconfirmed else None)
            except queue.Empty:
                messages = []
            if messages is _STOP:
                self._confirm()
                return
            rows = []
            for topic, payload, sent in messages:
                self.last_seq += 1
                numbered = with_seq(payload, self.last_seq)
                self._socket.send_multipart([topic, numbered])
                rows.append((self.last_seq, topic, numbered))
                if sent is not None:
                    self._unconfirmed.append(sent)
            self._remember(rows)
            self._confirm()

    def _remember(self, rows: list[tuple[int, bytes, bytes]]) -> None:
        """Append to the history; a failure is reported (health), publishing goes on."""
        if self._history is None or not rows:
            return
        try:
            self._history.append(rows)
        except Exception as err:
            self._report("history", err)
            return
        self._report("history", None)

    def _confirm(self) -> None:
        """Run the waiting `sent` callbacks in order; stop at the first that fails (retried)."""
        while self._unconfirmed:
            try:
                self._unconfirmed[0]()
            except Exception as err:
                self._report("journal", err)
                return
            self._unconfirmed.popleft()
        self._report("journal", None)

    def _report(self, stage: str, err: Exception | None) -> None:
        """Tell `health` (and the log, once) when `stage` starts or stops failing."""
        if err is not None:
            if stage not in self._failing:
                log.error("%s failing after publishing: %s; retrying", stage, one_line(err))
            self._failing.add(stage)
            self._health(stage, False, one_line(err))
        elif stage in self._failing:
            log.info("%s recovered", stage)
            self._failing.discard(stage)
            self._health(stage, True, "")
