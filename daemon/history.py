"""The prediction history: every published record with its sequence number, in SQLite, so that a
subscriber that was away (or saw a gap in `seq`) can ask for what it missed.

The publisher numbers records (`seq`, one counter per daemon, continued across restarts from the
history) and appends them here after sending, one transaction per batch; the oldest rows beyond
`max_rows` are pruned. The replay endpoint (`ReplayServer`, a ZeroMQ REP socket) answers
{"since": SEQ, "limit": N} with [b"ok", topic, payload, topic, payload, ...] of the records with
seq >= SEQ, oldest first.
"""

from __future__ import annotations

import threading
from pathlib import Path

import msgpack
import zmq

from xpstream.daemon.journal import open_database
from xpstream.daemon.supervise import one_line

SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY,
    topic BLOB NOT NULL,
    payload BLOB NOT NULL
)
"""
PRUNE_EVERY = 1000  # rows appended between two prunings
MAX_REPLAY = 10_000  # records in one replay answer


def with_seq(payload: bytes, seq: int) -> bytes:
    """A msgpack map payload with a `seq` entry added in front, without decoding the rest."""
    first = payload[0]
    if 0x80 <= first <= 0x8F:
        count, body = first & 0x0F, payload[1:]
    elif first == 0xDE:
        count, body = int.from_bytes(payload[1:3], "big"), payload[3:]
    elif first == 0xDF:
        count, body = int.from_bytes(payload[1:5], "big"), payload[5:]
    else:
        raise ValueError("payload is not a msgpack map")
    count += 1
    if count < 16:
        header = bytes([0x80 | count])
    elif count < 1 << 16:
        header = b"\xde" + count.to_bytes(2, "big")
    else:
        header = b"\xdf" + count.to_bytes(4, "big")
    return header + msgpack.packb("seq") + msgpack.packb(seq) + body


class History:
    def __init__(self, path: str | Path, max_rows: int = 100_000):
        self._db = open_database(
            path,
            SCHEMA,
            "NORMAL",
            "prediction history {path} cannot be used ({err}); move it aside or set [state] history to another file",
        )
        (last,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM history").fetchone()
        self.max_rows = max_rows
        self.last_seq = int(last)
        self._appended = 0
        self._lock = threading.Lock()

    def append(self, rows: list[tuple[int, bytes, bytes]]) -> None:
        """Store (seq, topic, payload) rows in one transaction (sqlite3.Error when it cannot)."""
        with self._lock:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO history VALUES (?, ?, ?)", rows)
            self._appended += len(rows)
            if self._appended >= PRUNE_EVERY:
                self._appended = 0
                self._db.execute("DELETE FROM history WHERE seq <= ?", (rows[-1][0] - self.max_rows,))

    def since(self, seq: int, limit: int = MAX_REPLAY) -> list[tuple[bytes, bytes]]:
        """(topic, payload) of the records with seq >= `seq`, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT topic, payload FROM history WHERE seq >= ? ORDER BY seq LIMIT ?",
                (seq, max(0, min(limit, MAX_REPLAY))),
            ).fetchall()
        return [(bytes(t), bytes(p)) for t, p in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class ReplayServer:
    """A REP socket answering replay requests from the history (a supervised stage)."""

    def __init__(self, context: zmq.Context, endpoint: str, history: History, supervised):
        self.history = history
        self.socket = context.socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, 4096)
        self.socket.bind(endpoint)
        self._stop = threading.Event()
        self._thread = supervised("replay", self._loop)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        while not self._stop.is_set():
            if poller.poll(100):
                request = self.socket.recv()
                self.socket.send_multipart(self._answer(request))
        self.socket.close(linger=0)

    def _answer(self, request: bytes) -> list[bytes]:
        try:
            body = msgpack.unpackb(request, raw=False)
            since, limit = int(body["since"]), int(body.get("limit", MAX_REPLAY))
        except Exception:
            return [b"error", b'a replay request is a msgpack map {"since": SEQ, "limit": N}']
        try:  # a REP socket must answer every request, or it cannot receive the next one
            records = self.history.since(since, limit)
        except Exception as err:
            return [b"error", one_line(err).encode()]
        return [b"ok"] + [frame for record in records for frame in record]
