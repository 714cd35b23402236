"""Watched instrument folders (watchdog: inotify, or polling for network shares).

A file is taken when it is complete: after a close-write event with its size unchanged since,
or when its size has not changed for `stable_s` seconds (the only rule under polling). Under
inotify, a file written to and not closed since is still held by its writer (an instrument
that appends region by region, pausing between them), so it waits for the close, or for
`open_stable_s` without a change from a writer that never closes. The daemon's own reads
(open and close-without-write events) never put a file back, and a file is not taken again
while its first taking is still on its way to the publisher. Files already finished, per the
journal, are skipped, so a restart neither loses nor repeats a file; files present at start-up
are picked up by a scan. The instrument of a file is its first sub-folder below the watched
folder (`incoming/esca1/x.vms` -> `esca1`), else the watched folder's name.

Only regular files are read: FIFOs, devices and sockets are refused unread, and so is a
symbolic link that leads out of the watched folders (the refusal never echoes content). A
file's id is its name and a hash of its instrument and content, so the same measurement keeps
its id across restarts and a different measurement under the same name gets another.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from xpstream.daemon.batcher import BLOCK, Closed
from xpstream.daemon.config import WatchConfig
from xpstream.daemon.journal import Journal, path_text
from xpstream.daemon.messages import measurement_id
from xpstream.daemon.parse import parse_file
from xpstream.daemon.parse.base import error_reason
from xpstream.daemon.sources import Failure, Handoff, Item
from xpstream.daemon.supervise import one_line

log = logging.getLogger("xpstream.folder")
SETTLE_TICK_S = 0.05
OWN_READ_EVENTS = ("opened", "closed_no_write")  # what the daemon's own reads cause


class _Events(FileSystemEventHandler):
    def __init__(self, source: FolderSource):
        self.source = source

    def on_any_event(self, event):
        if event.is_directory or event.event_type in OWN_READ_EVENTS:
            return
        path = getattr(event, "dest_path", "") or event.src_path
        kind = event.event_type
        try:  # an exception here would end watchdog's thread, and with it all events
            self.source.notice(os.fsdecode(path), closed=kind in ("closed", "moved"), writing=kind == "modified")
        except Exception as err:
            log.error("event for %s not handled: %s", path_text(os.fsdecode(path)), one_line(err))


@dataclass
class _Pending:
    """A file seen but not yet taken."""

    size: int = -1
    size_since: float = field(default_factory=time.monotonic)  # when its size last changed
    closed: bool = False  # close-write (or moved in) seen
    writing: bool = False  # a write seen with no close after it (inotify only)


def unique_destination(destination: Path) -> Path:
    """`destination`, or with .1, .2, ... before its suffix when that name is taken."""
    candidate, n = destination, 0
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = destination.with_name(f"{destination.stem}.{n}{destination.suffix}")
    return candidate


class FolderSource:
    def __init__(self, config: WatchConfig, journal: Journal, handoff: Handoff):
        self.config = config
        self.journal = journal
        self.handoff = handoff
        self.folders = [Path(f).expanduser().resolve() for f in config.folders]
        self.exclude = [Path(d).expanduser().resolve() for d in (config.done_dir, config.failed_dir) if d]
        self.patterns = [p.lower() for p in config.patterns]
        self._pending: dict[str, _Pending] = {}
        self._in_flight: set[str] = set()  # taken, not yet published
        self._ignored: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._observer = PollingObserver(timeout=0.2) if config.polling else Observer()
        self._thread = handoff.supervised("folder", self._settle_loop)

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
        if any(p.is_relative_to(d) for d in self.exclude) or p.name.endswith(".partial"):
            return
        if not any(fnmatch.fnmatchcase(p.name.lower(), pattern) for pattern in self.patterns):
            self._ignore(path)
            return
        with self._lock:
            entry = self._pending.setdefault(path, _Pending())
            if closed:
                entry.closed, entry.writing = True, False
            elif writing and not self.config.polling:  # reopened after a close: wait for the next one
                entry.closed, entry.writing = False, True

    def _ignore(self, path: str) -> None:
        """A file no pattern takes: logged once, counted."""
        if path in self._ignored or not os.path.lexists(path):
            return
        self._ignored.add(path)
        log.info("ignored %s: no watch pattern takes it (%s)", path_text(path), ", ".join(self.config.patterns))
        self.handoff.ignored(self._instrument(Path(path)))

    def _settle_loop(self) -> None:
        while not self._stop.wait(SETTLE_TICK_S):
            if not self._observer.is_alive() and not self._stop.is_set():
                raise RuntimeError("the watchdog observer stopped: files are no longer seen")
            ready = []
            now = time.monotonic()
            with self._lock:
                for path, entry in list(self._pending.items()):
                    if path in self._in_flight:
                        continue  # looked at again once its first taking is published
                    try:
                        size = os.stat(path).st_size
                    except OSError:  # gone, or a link to nowhere: _take reports what it finds
                        size = -2
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
        """Refuse, skip or queue one settled file; no file ends the folder stage."""
        p = Path(path)
        instrument, shown = self._instrument(p), path_text(path)
        try:
            st = self._regular_file(p)
            if st is None:
                return  # gone
            if self.journal.finished(path, st.st_size, st.st_mtime_ns, st.st_ctime_ns):
                return
        except OSError as err:
            self.handoff.fail(Failure(None, instrument, "folder", shown, "io", one_line(err)))
            return
        except Exception as err:  # e.g. an unreadable journal: report, keep watching
            self.handoff.fail(Failure(None, instrument, "folder", shown, "internal", one_line(err)))
            return

        def finish(status: str, reason: str = "") -> None:
            self.journal.record(path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, status, reason)
            with self._lock:
                self._in_flight.discard(path)
            target = self.config.done_dir if status == "done" else self.config.failed_dir
            if target:
                self._move(p, Path(target).expanduser())

        with self._lock:
            self._in_flight.add(path)
        try:
            if st.st_size > self.config.max_file_bytes:
                raise OSError(
                    f"{p.name}: {st.st_size} bytes, above watch.max_file_bytes ({self.config.max_file_bytes})"
                )
            with open(p, "rb") as fh:  # permission errors surface here, as io
                content = fh.read(self.config.max_file_bytes + 1)
            parsed = parse_file(p)
        except Exception as err:  # io, parse, or anything else: the file is refused, the stage goes on
            reason = error_reason(err)
            message = one_line(err) if reason == "internal" else str(err)
            self.handoff.fail(
                Failure(None, instrument, "folder", shown, reason, message), lambda: finish("failed", message)
            )
            return
        for skipped in parsed.skipped:
            log.info("%s: skipped %s", shown, skipped)
        item = Item(
            measurement_id(path_text(p.name), instrument, content),
            instrument,
            "folder",
            shown,
            regions=parsed.regions,
            on_done=lambda: finish("done"),
            recorded=parsed.recorded,
        )
        try:
            while not self.handoff.put(item, BLOCK):  # folder items wait for room, never dropped
                pass
        except Closed:
            with self._lock:
                self._in_flight.discard(path)  # left for the next start

    def _regular_file(self, path: Path) -> os.stat_result | None:
        """The file's stat if it is a regular file inside the watched folders (None: gone);
        OSError naming what it is otherwise."""
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                target = path.resolve()
                if not any(target.is_relative_to(folder) for folder in self.folders):
                    raise OSError(f"{path.name}: symbolic link out of the watched folders; not read")
                st = os.stat(target)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode):
            kind = "FIFO" if stat.S_ISFIFO(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode) else "device"
            raise OSError(f"{path.name}: a {kind}, not a regular file; not read")
        return st

    def _move(self, path: Path, target: Path) -> None:
        for folder in self.folders:
            if path.is_relative_to(folder):
                destination = target / path.relative_to(folder)
                break
        else:
            destination = target / path.name
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), str(unique_destination(destination)))
        except OSError as err:
            log.warning("could not move %s to %s: %s", path_text(str(path)), destination, err)
