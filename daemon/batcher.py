"""Micro-batching: a bounded queue between the sources and inference.

Sources `put` items; the inference loop takes batches of at most `max_batch` items, waiting at
most `max_wait_s` after the first item for more. When the queue is full, the item's policy
decides: BLOCK (back-pressure: the source waits, as a ZeroMQ PULL reader and the folder
watcher should) or DROP_OLDEST (the oldest queued DROP_OLDEST item is discarded and counted, as
for a SUB socket whose publisher cannot be slowed down; when none is queued, the new item is).
Items put with BLOCK are never dropped.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

BLOCK = "block"
DROP_OLDEST = "drop_oldest"


class Closed(Exception):
    """The batcher was closed: no more items are accepted."""


class MicroBatcher:
    def __init__(self, max_batch: int, max_wait_s: float, capacity: int, on_drop: Callable[[Any], None] | None = None):
        if max_batch < 1 or capacity < max_batch or max_wait_s < 0:
            raise ValueError("need max_batch >= 1, capacity >= max_batch and max_wait_s >= 0")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.capacity = capacity
        self.on_drop = on_drop
        self._items: deque = deque()
        self._lock = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def put(self, item, policy: str = BLOCK, timeout: float | None = None) -> bool:
        """Queue an item. BLOCK waits for room (False on timeout); DROP_OLDEST never waits."""
        with self._lock:
            if self._closed:
                raise Closed("batcher is closed")
            if len(self._items) >= self.capacity:
                if policy == DROP_OLDEST:
                    index = next((i for i, (_, p) in enumerate(self._items) if p == DROP_OLDEST), None)
                    if index is None:  # only items that must not be dropped: drop the newcomer
                        self._dropped(item)
                        return True
                    dropped, _ = self._items[index]
                    del self._items[index]
                    self._dropped(dropped)
                elif not self._lock.wait_for(lambda: len(self._items) < self.capacity or self._closed, timeout):
                    return False
                if self._closed:
                    raise Closed("batcher is closed")
            self._items.append((item, policy))
            if len(self._items) == 1 or len(self._items) >= self.max_batch:
                self._lock.notify_all()  # the consumer waits for a first item or a full batch
            return True

    def get_batch(self, timeout: float | None = None) -> list:
        """Up to max_batch items: waits (up to timeout) for the first, then up to max_wait_s for
        the rest. Returns [] on timeout, or when closed and empty."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._items or self._closed, timeout):
                return []
            deadline = time.monotonic() + self.max_wait_s
            while len(self._items) < self.max_batch and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0 or not self._lock.wait(left):
                    break
            batch = [self._items.popleft()[0] for _ in range(min(self.max_batch, len(self._items)))]
            self._lock.notify_all()  # room for blocked producers
            return batch

    def _dropped(self, item) -> None:
        if self.on_drop is not None:
            self.on_drop(item)

    def close(self) -> None:
        """Refuse new items; queued items can still be taken (drain)."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
