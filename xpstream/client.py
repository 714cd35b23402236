"""A client for lab robots: the predictions and errors a daemon publishes, as (topic, record)
pairs. `xpstream subscribe` and `deploy/robot_example.py` are built on it.

    with Subscriber("tcp://127.0.0.1:5556") as predictions:
        for topic, record in predictions.messages():
            ...

Records are the msgpack maps of `xpstream.daemon.messages` (keys as in `Prediction.to_dict`;
errors carry `reason` and `message`), each with the daemon's sequence number `seq`; topics are
`xps/INSTRUMENT/prediction` and `xps/INSTRUMENT/error`. Delivery is at least once: de-duplicate
by `id`. With a `replay` endpoint, a subscriber that hears every topic (prefix "xps/") fills a
gap in `seq` (messages ZeroMQ dropped, or published while it was reconnecting) from the daemon's
history before the next message (`seq` counts all topics, so a narrower subscription cannot
tell a gap from another instrument's records), and `replay(since)` fetches what was published
while it was away.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import msgpack
import zmq

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"
DEFAULT_PULL = "tcp://127.0.0.1:5555"  # the daemon binds PULL sockets only when asked (zmq.pull, --pull)
DEFAULT_REPLAY = "tcp://127.0.0.1:5557"
REPLAY_TIMEOUT_MS = 5000


class Subscriber:
    """A SUB socket on a daemon's PUB endpoint, subscribed to topic prefixes."""

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        topics: tuple[str, ...] | list[str] = ("xps/",),
        replay: str | None = None,
    ):
        self.topics = tuple(topics)
        self.replay_endpoint = replay
        self._fills_gaps = bool(replay) and any(t in ("", "xps/") for t in self.topics)
        self.last_seq: int | None = None
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
            record = msgpack.unpackb(payload, raw=False)
            seq = record.get("seq")
            if self._fills_gaps and isinstance(seq, int) and self.last_seq is not None and seq > self.last_seq + 1:
                for missed in self.replay(self.last_seq + 1, limit=seq - self.last_seq - 1):
                    received += 1
                    yield missed
            if isinstance(seq, int):
                self.last_seq = seq  # lower than before only after a restart without history
            received += 1
            yield topic.decode(errors="replace"), record

    def replay(self, since: int, limit: int = 10_000) -> list[tuple[str, dict]]:
        """What the daemon published with seq >= `since` on this subscriber's topics."""
        if not self.replay_endpoint:
            raise ValueError("no replay endpoint given")
        records = fetch_replay(self.replay_endpoint, since, limit, self.topics, self._context)
        for _, record in records:
            self.last_seq = max(record.get("seq", 0), self.last_seq or 0)
        return records

    def close(self) -> None:
        self._socket.close(linger=0)
        self._context.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def fetch_replay(
    endpoint: str = DEFAULT_REPLAY,
    since: int = 1,
    limit: int = 10_000,
    topics: tuple[str, ...] = ("xps/",),
    context: zmq.Context | None = None,
) -> list[tuple[str, dict]]:
    """(topic, record) of what a daemon published with seq >= `since`, oldest first, from its
    history (its replay endpoint); TimeoutError when the endpoint does not answer."""
    context = context or zmq.Context.instance()
    request = context.socket(zmq.REQ)
    request.setsockopt(zmq.LINGER, 0)
    try:
        request.connect(endpoint)
        request.send(msgpack.packb({"since": since, "limit": limit}))
        if not request.poll(REPLAY_TIMEOUT_MS):
            raise TimeoutError(f"no answer from the replay endpoint {endpoint}")
        status, *frames = request.recv_multipart()
    finally:
        request.close(linger=0)
    if status != b"ok":
        raise ValueError(f"replay refused: {frames[0].decode(errors='replace') if frames else status!r}")
    return [
        (topic.decode(errors="replace"), msgpack.unpackb(payload, raw=False))
        for topic, payload in zip(frames[::2], frames[1::2], strict=True)
        if topic.decode(errors="replace").startswith(tuple(topics))
    ]


def send_files(
    paths: list,
    to: str = DEFAULT_PULL,
    instrument: str = "",
    replies: str | None = DEFAULT_ENDPOINT,
    timeout: float = 30.0,
) -> list[tuple[str, dict]]:
    """Send instrument files to a daemon's PULL endpoint as region messages (parsed here, so the
    instrument PC needs no shared folder) and, with `replies` (its PUB endpoint), wait up to
    `timeout` seconds for the (topic, record) answering each, by id, in the order sent.
    A file that cannot be read raises ValueError or OSError naming it."""
    from pathlib import Path

    from xpstream.daemon.messages import encode_spectrum, measurement_id
    from xpstream.daemon.parse import parse_file

    messages = []
    for path in map(Path, paths):
        parsed = parse_file(path)
        regions = parsed.regions + [r for r in parsed.recorded if r not in parsed.regions]
        name = instrument or "remote"
        ident = measurement_id(path.name, name, path.read_bytes())
        triples = [(r.name, r.binding_energy_ev, r.counts) for r in regions]
        messages.append((ident, encode_spectrum(ident, name, regions=triples)))
    context = zmq.Context.instance()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, int(1000 * timeout))
    subscriber = Subscriber(replies, ("xps/",)) if replies else None
    try:
        push.connect(to)
        if subscriber is not None:
            time.sleep(0.3)  # the subscription reaches the daemon before the first answer
        for _, payload in messages:
            push.send(payload)
        if subscriber is None:
            return []
        waiting, answers = {ident for ident, _ in messages}, {}
        for topic, record in subscriber.messages(timeout=timeout):
            if record.get("id") in waiting:
                answers[record["id"]] = (topic, record)
                waiting.discard(record["id"])
                if not waiting:
                    break
        return [answers[ident] for ident, _ in messages]
    finally:
        push.close()
        if subscriber is not None:
            subscriber.close()
