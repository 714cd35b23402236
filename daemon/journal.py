"""A durable journal (SQLite) of the files the daemon has finished, so that a restart neither
loses nor repeats a file. A file counts as the same file while its size, mtime and ctime are
unchanged: a rewritten file, a file moved back in (from `failed/`) or copied in with `cp -p` is
processed again. Paths that are not UTF-8 are stored with their bytes escaped."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path


class JournalError(ValueError):
    """The journal file cannot be used; the message names it and the fix."""


def path_text(path: str) -> str:
    """A path as UTF-8 text whatever its bytes (undecodable bytes as \\xNN escapes)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL DEFAULT -1,
    status TEXT NOT NULL,          -- 'done' or 'failed'
    reason TEXT NOT NULL DEFAULT '',
    updated REAL NOT NULL
)
"""


def open_database(path: str | Path, schema: str, synchronous: str, refusal: str) -> sqlite3.Connection:
    """A checked SQLite database in WAL mode with `schema` applied; JournalError naming the file,
    what it is and the fix (`refusal`, e.g. "state journal {path} cannot be used ({err}); ...")
    when it is unreadable or corrupt."""
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        (verdict,) = db.execute("PRAGMA integrity_check").fetchone()
        if verdict != "ok":
            raise sqlite3.DatabaseError(verdict)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute(schema)
        return db
    except (sqlite3.Error, OSError) as err:
        raise JournalError(refusal.format(path=path, err=err)) from None


class Journal:
    def __init__(self, path: str | Path):
        self._db = open_database(
            path,
            SCHEMA,
            "FULL",
            "state journal {path} cannot be used ({err}); move it aside (files already done would then be "
            "processed again) or set [state] journal to another file",
        )
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(files)")}
        if "ctime_ns" not in columns:  # journals written before ctime was kept
            self._db.execute("ALTER TABLE files ADD COLUMN ctime_ns INTEGER NOT NULL DEFAULT -1")
        self._lock = threading.Lock()

    def finished(self, path: str, size: int, mtime_ns: int, ctime_ns: int) -> bool:
        """True if this version of the file was already done or failed."""
        with self._lock:
            row = self._db.execute(
                "SELECT size, mtime_ns, ctime_ns FROM files WHERE path = ?", (path_text(path),)
            ).fetchone()
        return row is not None and row == (size, mtime_ns, ctime_ns)

    def record(self, path: str, size: int, mtime_ns: int, ctime_ns: int, status: str, reason: str = "") -> None:
        """Durably record that a file is done or failed (sqlite3.Error when it cannot)."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO files (path, size, mtime_ns, ctime_ns, status, reason, updated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (path_text(path), size, mtime_ns, ctime_ns, status, reason, time.time()),
            )

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT status, COUNT(*) FROM files GROUP BY status").fetchall())

    def close(self) -> None:
        with self._lock:
            self._db.close()
