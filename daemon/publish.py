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
        health: Callable[[bool, str], None] | None = None,
    ):
        """supervised: starts the publishing loop as a stage (default: a plain thread);
        health(ok, why): told when `sent` callbacks start and stop failing."""
        self.endpoint = endpoint
        self._queue: queue.Queue = queue.Queue()
        self._unconfirmed: deque[Callable[[], None]] = deque()  # sent callbacks still to succeed
        self._health = health or (lambda ok, why: None)
        self._failing = False
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
            for topic, payload, sent in messages:
                self._socket.send_multipart([topic, payload])
                if sent is not None:
                    self._unconfirmed.append(sent)
            self._confirm()

    def _confirm(self) -> None:
        """Run the waiting `sent` callbacks in order; stop at the first that fails (retried)."""
        while self._unconfirmed:
            try:
                self._unconfirmed[0]()
            except Exception as err:
                if not self._failing:
                    log.error("after publishing: %s; retrying every %.0f s", one_line(err), RETRY_S)
                self._failing = True
                self._health(False, one_line(err))
                return
            self._unconfirmed.popleft()
        if self._failing:
            log.info("after publishing: recovered")
            self._failing = False
            self._health(True, "")
