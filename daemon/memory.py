"""The daemon's resident-memory ceiling (`batch.memory_mb`).

Sources ask `over()` before queueing; above the ceiling, while spectra are queued (so that
inference can bring it down), PULL sockets and folders wait and SUB input is dropped and
counted. With nothing queued, input is taken whatever the reading: memory the allocator keeps
after a large batch must not stop the daemon for good. Linux only (`/proc/self/statm`); elsewhere
there is no ceiling and start-up says so.
"""

from __future__ import annotations

import os
import threading
import time

STATM = "/proc/self/statm"
READ_EVERY_S = 0.02  # the resident size is read at most this often (a read is ~10 us)
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int | None:
    """This process's resident memory now, or None where /proc is not available."""
    try:
        with open(STATM, "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return None


class MemoryCeiling:
    """`over()`: whether resident memory is above `ceiling_bytes` (0 = no ceiling)."""

    def __init__(self, ceiling_bytes: int):
        self.ceiling_bytes = ceiling_bytes if resident_bytes() is not None else 0
        self._lock = threading.Lock()
        self._read_at, self._over = 0.0, False

    def over(self) -> bool:
        if not self.ceiling_bytes:
            return False
        with self._lock:
            now = time.monotonic()
            if now - self._read_at >= READ_EVERY_S:
                self._read_at, self._over = now, (resident_bytes() or 0) > self.ceiling_bytes
            return self._over
