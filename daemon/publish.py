"""Publishing on a ZeroMQ PUB socket: topics `xps/<instrument>/prediction` and
`xps/<instrument>/error`, each message two frames [topic, msgpack payload].

The socket is owned by one thread fed through a queue, so inference and sources can publish
from their own threads.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import zmq

_STOP = object()


def prediction_topic(instrument: str) -> bytes:
    return f"xps/{instrument}/prediction".encode()


def error_topic(instrument: str) -> bytes:
    return f"xps/{instrument}/error".encode()


class Publisher:
    def __init__(self, context: zmq.Context, endpoint: str, curve: tuple[bytes, bytes] | None = None):
        self.endpoint = endpoint
        self._queue: queue.Queue = queue.Queue()
        self._socket = context.socket(zmq.PUB)
        self._socket.setsockopt(zmq.SNDHWM, 100_000)
        if curve is not None:  # subscribers must hold an allowed client key
            self._socket.curve_publickey, self._socket.curve_secretkey = curve
            self._socket.curve_server = True
        self._socket.bind(endpoint)
        self._thread = threading.Thread(target=self._loop, name="zmq-pub", daemon=True)
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
            messages = self._queue.get()
            if messages is _STOP:
                return
            for topic, payload, sent in messages:
                self._socket.send_multipart([topic, payload])
                if sent is not None:
                    sent()
