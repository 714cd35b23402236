"""Where spectra come from: watched folders and ZeroMQ sockets. Each source turns its input into
`Item`s (a grid spectrum plus where it came from) and puts them into the micro-batcher, or
reports a refusal through `Failure`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

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


@dataclass
class Failure:
    id: str | None
    instrument: str
    source: str
    origin: str
    reason: str
    message: str
