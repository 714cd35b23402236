"""ZeroMQ inputs: PULL sockets (bound; back-pressure when the queue is full) and SUB sockets
(connected, with topic filters; the oldest queued spectrum is dropped and counted when full).

Each socket lives in its own supervised thread, as ZeroMQ sockets must not be shared between
threads. No message ends it: a message that cannot be decoded is refused with its reason, any
other error while handling one is refused as `internal`. On stop, what has already arrived is
taken in until the socket is quiet or `drain_s` has passed.

A message above `max_message_bytes` never reaches the reader: ZeroMQ drops it and closes its
sender's connection. A socket monitor counts every ended input connection
(`xpstream_zmq_disconnects_total`), which is where such drops show.
"""

from __future__ import annotations

import logging
import threading
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from xpstream.daemon.batcher import BLOCK, DROP_OLDEST, Closed
from xpstream.daemon.messages import MessageError, decode_spectrum
from xpstream.daemon.sources import Failure, Handoff, Item
from xpstream.daemon.supervise import one_line

log = logging.getLogger("xpstream.zmq")
POLL_MS = 100
SUB_RECEIVE_HWM = 10_000
PULL_RECEIVE_HWM = 1000
DRAIN_QUIET_MS = 100  # on stop, read on until nothing arrived for this long
READ_AT_ONCE = 1024  # messages read after one poll (no poll per message under load)


class SocketSource:
    """One PULL or SUB socket read by one thread."""

    def __init__(
        self,
        context: zmq.Context,
        kind: str,
        endpoint: str,
        handoff: Handoff,
        max_message_bytes: int,
        topics: list[str] = ("",),
        curve: tuple[bytes, bytes] | None = None,
        publisher_key: bytes | None = None,
        drain_s: float = 10.0,
        receive_hwm: int | None = None,
    ):
        """curve: the daemon's (public, secret) keys; PULL sockets are CURVE servers with them.
        publisher_key: the publishers' public key; SUB sockets are then CURVE clients.
        receive_hwm: messages ZeroMQ holds per sender before the reader takes them (default:
        PULL_RECEIVE_HWM or SUB_RECEIVE_HWM)."""
        if kind not in ("pull", "sub"):
            raise ValueError(f"socket kind must be 'pull' or 'sub', got {kind!r}")
        self.kind, self.endpoint = kind, endpoint
        self.handoff, self.drain_s = handoff, drain_s
        self.policy = BLOCK if kind == "pull" else DROP_OLDEST
        self.socket = context.socket(zmq.PULL if kind == "pull" else zmq.SUB)
        self.socket.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        # SUB: ZeroMQ would drop silently past its receive high-water mark; keep that far above
        # the batcher's capacity so overload shows up as counted drop-oldest drops instead
        self.socket.setsockopt(zmq.RCVHWM, receive_hwm or (SUB_RECEIVE_HWM if kind == "sub" else PULL_RECEIVE_HWM))
        self.socket.setsockopt(zmq.LINGER, 0)
        if curve is not None and kind == "pull":  # the daemon is the CURVE server of its PULL sockets
            self.socket.curve_publickey, self.socket.curve_secretkey = curve
            self.socket.curve_server = True
        if curve is not None and publisher_key is not None and kind == "sub":  # and a client of publishers
            self.socket.curve_publickey, self.socket.curve_secretkey = curve
            self.socket.curve_serverkey = publisher_key
        if kind == "pull":
            self.socket.bind(endpoint)
        else:
            for topic in topics:
                self.socket.setsockopt_string(zmq.SUBSCRIBE, topic)
            self.socket.connect(endpoint)
        self.monitor = self.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._stop = threading.Event()
        self._thread = handoff.supervised(f"zmq-{kind}", self._loop)

    def start(self) -> None:
        self._thread.start()
        log.info("%s socket on %s", self.kind.upper(), self.endpoint)

    def stop(self) -> None:
        """Stop reading (returns at once); the thread queues what it holds, then closes the socket."""
        self._stop.set()

    def finished(self) -> bool:
        return not self._thread.is_alive()

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)
        while not self._stop.is_set():
            ready = dict(poller.poll(POLL_MS))
            if self.monitor in ready:
                self._count_disconnects()
            if self.socket in ready and not self._take_arrived():
                break
        else:  # stopping: take in what has already arrived, until quiet or the drain deadline
            deadline = time.monotonic() + self.drain_s
            while time.monotonic() < deadline and self.socket.poll(DRAIN_QUIET_MS):
                if not self._take_arrived():
                    break
        self.socket.disable_monitor()
        self.monitor.close(linger=0)
        self.socket.close(linger=0)

    def _count_disconnects(self) -> None:
        while self.monitor.poll(0):
            recv_monitor_message(self.monitor)
            self.handoff.disconnected(self.kind)

    def _take_arrived(self) -> bool:
        """Handle the messages waiting on the socket, at most READ_AT_ONCE (so a stop request is
        seen between bursts); False once the batcher is closed."""
        for _ in range(READ_AT_ONCE):
            try:
                payload = self.socket.recv_multipart(zmq.NOBLOCK)[-1]
            except zmq.Again:
                return True
            if not self._handle(payload):
                return False
        return True

    def _handle(self, payload: bytes) -> bool:
        """Decode, preprocess and queue one message; False once the batcher is closed."""
        received = time.monotonic()
        try:
            message = decode_spectrum(payload)
        except MessageError as err:
            self.handoff.fail(Failure(None, "unknown", self.kind, self.endpoint, err.reason, str(err)))
            return True
        except Exception as err:  # a message must never end the reader
            self.handoff.fail(Failure(None, "unknown", self.kind, self.endpoint, "internal", one_line(err)))
            return True
        item = Item(
            message.id,
            message.instrument,
            self.kind,
            self.endpoint,
            message.spectrum,
            message.regions,
            received,
            measured=message.measured,
            recorded=message.recorded,
        )
        try:
            while not self.handoff.put(item, self.policy):  # the inference loop drains, so this ends
                pass
        except Closed:
            log.error("batcher closed before %s from %s was queued", message.id, self.endpoint)
            return False
        return True
