"""Watched instrument folders (watchdog: inotify, or polling for network shares).

A file is taken when it is complete: after a close-write event with its size unchanged since,
or when its size has not changed for `stable_s` seconds (the only rule under polling). Under
inotify, a file written to and not closed since is still held by its writer (an instrument
that appends region by region, pausing between them), so it waits for the close, or for
`open_stable_s` without a change from a writer that never closes. Files
already finished, per the journal, are skipped, so a restart neither loses nor repeats a file;
files present at start-up are picked up by a scan. The instrument of a file is its first
sub-folder below the watched folder (`incoming/esca1/x.vms` -> `esca1`), else the watched
folder's name.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from xpstream.daemon.config import WatchConfig
from xpstream.daemon.journal import Journal
from xpstream.daemon.parse import parse_file
from xpstream.daemon.sources import Failure, Item

log = logging.getLogger("xpstream.folder")
SETTLE_TICK_S = 0.05


class _Events(FileSystemEventHandler):
    def __init__(self, source: FolderSource):
        self.source = source

    def on_any_event(self, event):
        if event.is_directory:
            return
        path = getattr(event, "dest_path", "") or event.src_path
        kind = event.event_type
        self.source.notice(os.fsdecode(path), closed=kind in ("closed", "moved"), writing=kind == "modified")


@dataclass
class _Pending:
    """A file seen but not yet taken."""

    size: int = -1
    size_since: float = field(default_factory=time.monotonic)  # when its size last changed
    closed: bool = False  # close-write (or moved in) seen
    writing: bool = False  # a write seen with no close after it (inotify only)


class FolderSource:
    def __init__(
        self,
        config: WatchConfig,
        journal: Journal,
        put: Callable[[Item], None],
        fail: Callable[[Failure, Callable[[], None]], None],
    ):
        self.config = config
        self.journal = journal
        self.put = put
        self.fail = fail
        self.folders = [Path(f).expanduser().resolve() for f in config.folders]
        self.exclude = [Path(d).expanduser().resolve() for d in (config.done_dir, config.failed_dir) if d]
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._observer = PollingObserver(timeout=0.2) if config.polling else Observer()
        self._thread = threading.Thread(target=self._settle_loop, name="folder-settle", daemon=True)

    def start(self) -> None:
        for folder in self.folders:
            folder.mkdir(parents=True, exist_ok=True)
            self._observer.schedule(_Events(self), str(folder), recursive=self.config.recursive)
        self._observer.start()
        for folder in self.folders:  # files that arrived while the daemon was down
            walker = os.walk(folder) if self.config.recursive else [(folder, [], os.listdir(folder))]
            for root, _, names in walker:
                for name in sorted(names):
                    self.notice(os.path.join(root, name), closed=True)
        self._thread.start()
        log.info("watching %s (patterns %s)", [str(f) for f in self.folders], self.config.patterns)

    def stop(self) -> None:
        """Stop watching (returns at once); a file being queued is finished, files still
        settling are left for the next start."""
        self._stop.set()
        self._observer.stop()

    def finished(self) -> bool:
        return not (self._thread.is_alive() or self._observer.is_alive())

    def notice(self, path: str, closed: bool, writing: bool = False) -> None:
        """An event or scan saw this path (closed: a close-write, a move in or a start-up scan;
        writing: a write event, which leaves the file open for writing until a close)."""
        p = Path(path)
        if not any(fnmatch.fnmatch(p.name, pattern) for pattern in self.config.patterns):
            return
        if any(p.is_relative_to(d) for d in self.exclude) or p.name.endswith(".partial"):
            return
        with self._lock:
            entry = self._pending.setdefault(path, _Pending())
            if closed:
                entry.closed, entry.writing = True, False
            elif writing and not self.config.polling:  # reopened after a close: wait for the next one
                entry.closed, entry.writing = False, True

    def _settle_loop(self) -> None:
        while not self._stop.wait(SETTLE_TICK_S):
            ready = []
            now = time.monotonic()
            with self._lock:
                for path, entry in list(self._pending.items()):
                    try:
                        size = os.stat(path).st_size
                    except FileNotFoundError:
                        del self._pending[path]
                        continue
                    if size != entry.size:
                        entry.size, entry.size_since = size, now
                        continue
                    quiet = (
                        max(self.config.open_stable_s, self.config.stable_s) if entry.writing else self.config.stable_s
                    )
                    if entry.closed or now - entry.size_since >= quiet:
                        ready.append(path)
                        del self._pending[path]
            for path in ready:
                if self._stop.is_set():
                    return
                self._take(path)

    def _instrument(self, path: Path) -> str:
        for folder in self.folders:
            if path.is_relative_to(folder):
                parts = path.relative_to(folder).parts
                return parts[0] if len(parts) > 1 else folder.name
        return "unknown"

    def _take(self, path: str) -> None:
        p = Path(path)
        try:
            stat = p.stat()
        except FileNotFoundError:
            return
        if self.journal.finished(path, stat.st_size, stat.st_mtime_ns):
            return
        instrument = self._instrument(p)

        def finish(status: str, reason: str = "") -> None:
            self.journal.record(path, stat.st_size, stat.st_mtime_ns, status, reason)
            target = self.config.done_dir if status == "done" else self.config.failed_dir
            if target:
                self._move(p, Path(target).expanduser())

        try:
            if stat.st_size > self.config.max_file_bytes:
                raise OSError(
                    f"{p.name}: {stat.st_size} bytes, above watch.max_file_bytes ({self.config.max_file_bytes})"
                )
            parsed = parse_file(p)
        except (ValueError, OSError) as err:
            reason, message = ("io" if isinstance(err, OSError) else "parse"), str(err)
            failure = Failure(None, instrument, "folder", path, reason, message)
            self.fail(failure, lambda: finish("failed", message))
            return
        for skipped in parsed.skipped:
            log.info("%s: skipped %s", p.name, skipped)
        self.put(
            Item(
                p.name,
                instrument,
                "folder",
                path,
                regions=parsed.regions,
                on_done=lambda: finish("done"),
                recorded=parsed.recorded,
            )
        )

    def _move(self, path: Path, target: Path) -> None:
        for folder in self.folders:
            if path.is_relative_to(folder):
                destination = target / path.relative_to(folder)
                break
        else:
            destination = target / path.name
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), str(destination))
        except OSError as err:
            log.warning("could not move %s to %s: %s", path, destination, err)
