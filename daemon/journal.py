"""A durable journal (SQLite) of the files the daemon has finished, so that a restart neither
loses nor repeats a file. A file counts as the same file while its size and mtime are unchanged;
a rewritten file is processed again."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    status TEXT NOT NULL,          -- 'done' or 'failed'
    reason TEXT NOT NULL DEFAULT '',
    updated REAL NOT NULL
)
"""


class Journal:
    def __init__(self, path: str | Path):
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(SCHEMA)
        self._lock = threading.Lock()

    def finished(self, path: str, size: int, mtime_ns: int) -> bool:
        """True if this version of the file was already done or failed."""
        with self._lock:
            row = self._db.execute("SELECT size, mtime_ns FROM files WHERE path = ?", (path,)).fetchone()
        return row is not None and row == (size, mtime_ns)

    def record(self, path: str, size: int, mtime_ns: int, status: str, reason: str = "") -> None:
        """Durably record that a file is done or failed."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO files (path, size, mtime_ns, status, reason, updated)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (path, size, mtime_ns, status, reason, time.time()),
            )

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT status, COUNT(*) FROM files GROUP BY status").fetchall())

    def close(self) -> None:
        with self._lock:
            self._db.close()
