"""Where spectra come from: watched folders and ZeroMQ sockets. Each source is a `Source`
(start, stop, finished) that turns its input into `Item`s (a grid spectrum or regions, plus
where it came from) and hands them to a `Handoff` (the service): `put` into the micro-batcher,
`fail` for a refusal (an error record), `supervised` for its reader thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from xpstream.contract import Region


@dataclass
class Item:
    """One spectrum on its way to inference: grid-ready, or regions still to preprocess."""

    id: str
    instrument: str
    source: str  # "folder" or a ZeroMQ socket kind, for metrics labels
    origin: str  # file path or endpoint, for the record
    spectrum: np.ndarray | None = None  # (GRID_SIZE,) grid-ready intensities, or
    regions: list[Region] = field(default_factory=list)  # core-level regions (batched preprocessing)
    received: float = field(default_factory=time.monotonic)
    on_done: Callable[[], None] | None = None  # called once the prediction is published
    measured: np.ndarray | None = None  # (GRID_SIZE,) mask of a grid spectrum; None = whole grid
    recorded: list[Region] = field(default_factory=list)  # all non-survey regions, for the out-of-library check

    @property
    def nbytes(self) -> int:
        """The memory its arrays hold (what the queue's byte capacity counts); a region that is
        both used and recorded (the same object) counts once."""
        regions = {id(r): r for r in (*self.regions, *self.recorded)}.values()
        arrays = [self.spectrum, self.measured, *(a for r in regions for a in (r.binding_energy_ev, r.counts))]
        return sum(a.nbytes for a in arrays if a is not None)


@dataclass
class Failure:
    id: str | None
    instrument: str
    source: str
    origin: str
    reason: str
    message: str


class Handoff(Protocol):
    """What a source hands its input to."""

    stopped: threading.Event  # set once the daemon stops

    def put(self, item: Item, policy: str) -> bool:
        """Queue an item under an overload policy (batcher.BLOCK or DROP_OLDEST); False when the
        queue stayed full for a moment (BLOCK): call again. Raises batcher.Closed once closed."""

    def fail(self, failure: Failure, after: Callable[[], None] | None = None) -> None:
        """Publish a refusal (error topic, metric, log); `after` runs once it is published."""

    def ignored(self, instrument: str) -> None:
        """Count a file no watch pattern takes."""

    def disconnected(self, source: str) -> None:
        """Count an input connection that ended (a sender closed, or sent a message too large)."""

    def supervised(self, stage: str, loop: Callable[[], None]) -> threading.Thread:
        """A thread running `loop` as a supervised stage (see `xpstream.daemon.supervise`)."""


class Source(Protocol):
    """A watched folder or a socket: started once, stopped once (returns at once), finished
    when its thread has handed over everything it took in."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def finished(self) -> bool: ...
