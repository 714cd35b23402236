"""Micro-batching: a bounded queue between the sources and inference.

Sources `put` items; the inference loop takes batches of at most `max_batch` items, waiting at
most `max_wait_s` after the first item for more. When the queue is full, the item's policy
decides: BLOCK (back-pressure: the source waits, as a ZeroMQ PULL reader and the folder
watcher should) or DROP_OLDEST (the oldest queued DROP_OLDEST item is discarded and counted, as
for a SUB socket whose publisher cannot be slowed down; when none is queued, the new item is).
Items put with BLOCK are never dropped. The queue is full at `capacity` items or, with a
`weigh` function, at `capacity_bytes` (a single item larger than that is still taken into an empty
queue, so no spectrum waits forever).
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
    def __init__(
        self,
        max_batch: int,
        max_wait_s: float,
        capacity: int,
        on_drop: Callable[[Any], None] | None = None,
        capacity_bytes: int | None = None,
        weigh: Callable[[Any], int] = lambda item: 0,
    ):
        if max_batch < 1 or capacity < max_batch or max_wait_s < 0 or (capacity_bytes or 1) < 1:
            raise ValueError("need max_batch >= 1, capacity >= max_batch, max_wait_s >= 0 and capacity_bytes >= 1")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.capacity = capacity
        self.capacity_bytes = capacity_bytes
        self.on_drop = on_drop
        self.weigh = weigh
        self.queued_bytes = 0
        self._items: deque = deque()  # (item, policy, bytes)
        self._lock = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def put(self, item, policy: str = BLOCK, timeout: float | None = None) -> bool:
        """Queue an item. BLOCK waits for room (False on timeout); DROP_OLDEST never waits."""
        size = self.weigh(item)
        with self._lock:
            if self._closed:
                raise Closed("batcher is closed")
            while not self._room_for(size):
                if policy == DROP_OLDEST:
                    index = next((i for i, (_, p, _) in enumerate(self._items) if p == DROP_OLDEST), None)
                    if index is None:  # only items that must not be dropped: drop the newcomer
                        self._dropped(item)
                        return True
                    dropped, _, dropped_size = self._items[index]
                    del self._items[index]
                    self.queued_bytes -= dropped_size
                    self._dropped(dropped)
                elif not self._lock.wait_for(lambda: self._room_for(size) or self._closed, timeout):
                    return False
                if self._closed:
                    raise Closed("batcher is closed")
            self._items.append((item, policy, size))
            self.queued_bytes += size
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
            taken = [self._items.popleft() for _ in range(min(self.max_batch, len(self._items)))]
            self.queued_bytes -= sum(size for _, _, size in taken)
            batch = [item for item, _, _ in taken]
            self._lock.notify_all()  # room for blocked producers
            return batch

    def wait_until_empty(self, timeout: float) -> bool:
        """Wait until no item is queued (or closed); False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._items or self._closed, timeout)

    def _room_for(self, size: int) -> bool:
        if len(self._items) >= self.capacity:
            return False
        return self.capacity_bytes is None or not self._items or self.queued_bytes + size <= self.capacity_bytes

    def _dropped(self, item) -> None:
        if self.on_drop is not None:
            self.on_drop(item)

    def close(self) -> None:
        """Refuse new items; queued items can still be taken (drain)."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
