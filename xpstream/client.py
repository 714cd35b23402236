"""A client for lab robots: the predictions and errors a daemon publishes, as (topic, record)
pairs. `xpstream subscribe` and `deploy/robot_example.py` are built on it.

    with Subscriber("tcp://127.0.0.1:5556") as predictions:
        for topic, record in predictions.messages():
            ...

Records are the msgpack maps of `xpstream.daemon.messages` (keys as in `Prediction.to_dict`;
errors carry `reason` and `message`); topics are `xps/INSTRUMENT/prediction` and
`xps/INSTRUMENT/error`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import msgpack
import zmq

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"


class Subscriber:
    """A SUB socket on a daemon's PUB endpoint, subscribed to topic prefixes."""

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, topics: tuple[str, ...] | list[str] = ("xps/",)):
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        for topic in topics:
            self._socket.setsockopt_string(zmq.SUBSCRIBE, topic)
        try:
            self._socket.connect(endpoint)
        except zmq.ZMQError as err:
            self.close()
            raise ValueError(f"cannot connect to {endpoint!r} ({err}); expected e.g. {DEFAULT_ENDPOINT}") from None

    def messages(self, count: int | None = None, timeout: float | None = None) -> Iterator[tuple[str, dict]]:
        """(topic, record) as they arrive; stops after `count` messages, raises TimeoutError when
        `timeout` seconds pass first."""
        received = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        while count is None or received < count:
            wait_ms = 1000 if deadline is None else int(1000 * (deadline - time.monotonic()))
            if wait_ms <= 0:
                raise TimeoutError(f"timed out after {received} messages")
            if not self._socket.poll(min(wait_ms, 1000)):
                continue
            topic, payload = self._socket.recv_multipart()
            received += 1
            yield topic.decode(errors="replace"), msgpack.unpackb(payload, raw=False)

    def close(self) -> None:
        self._socket.close(linger=0)
        self._context.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
