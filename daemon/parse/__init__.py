"""Instrument files -> core-level regions (binding energy, counts).

Each format is one module listed in `READERS`: it declares the file suffixes it reads
(`SUFFIXES`) and a `read(path) -> (regions, skipped)` that raises `ParseError`; a new format is
one new module and its name here. `parse_file` picks the first reader of a file's suffix (any
case); `select_regions` keeps the core-level regions on the
grid (a survey only when there is no core-level region), keeps every non-survey region for the
out-of-library check (`preprocess.unexplained_regions`: a peak above the grid, or in a region
named after an element the model's library lacks) and reports the rest as skipped. Readers
raise `ParseError` with a reason a person can act on.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xpstream.contract import GRID_STOP_EV, Region
from xpstream.daemon.parse.base import EmptySpectrum, ParseError

SURVEY_SPAN_EV = 60.0  # a region wider than this is a survey, not a core level
PLAUSIBLE_BE_EV = (-100.0, 20000.0)  # an axis reaching beyond these is not an XPS binding-energy axis
VALENCE_MAX_EV = 40.0  # a region entirely below this binding energy is valence band


READERS = ("text", "vamas_file", "vendor")  # modules of this package, in order of preference


@dataclass
class ParsedFile:
    path: str
    regions: list[Region]
    skipped: list[str] = field(default_factory=list)  # "name: reason"
    recorded: list[Region] = field(default_factory=list)  # every region but surveys, for the out-of-library check


def classify(region: Region, seen_names: set[str] = frozenset()) -> str | None:
    """None for a core-level region on the grid, else the reason it is skipped."""
    be = region.binding_energy_ev
    low, high = PLAUSIBLE_BE_EV
    if not low <= be[0] < be[-1] <= high:
        return f"energy axis {be[0]:.4g} to {be[-1]:.4g} eV is not a binding-energy range"
    if be[-1] - be[0] > SURVEY_SPAN_EV:
        return f"survey ({be[0]:.0f}-{be[-1]:.0f} eV)"
    if be[-1] <= VALENCE_MAX_EV:
        return f"below {VALENCE_MAX_EV:g} eV (valence band or shallow level, off the grid)"
    if be[0] >= GRID_STOP_EV:
        return f"above the grid ({be[0]:.0f}-{be[-1]:.0f} eV)"
    if region.name in seen_names:
        return "repeats an earlier region of the same name (the first is used)"
    return None


def reader_for(suffix: str):
    """The `read` function of the first reader module that reads files ending in `suffix`."""
    for name in READERS:
        module = importlib.import_module(f"xpstream.daemon.parse.{name}")
        if suffix.lower() in module.SUFFIXES:
            return module.read
    return None


def supported_suffixes() -> list[str]:
    """Every file suffix some reader reads (lower case)."""
    return sorted({s for name in READERS for s in importlib.import_module(f"xpstream.daemon.parse.{name}").SUFFIXES})


def parse_file(path: str | Path) -> ParsedFile:
    """Read an instrument file into its core-level regions (ParseError, OSError)."""
    path = Path(path)
    read = reader_for(path.suffix)
    if read is None:
        raise ParseError(
            f"{path.name}: unsupported file type {path.suffix!r} (readable: {', '.join(supported_suffixes())})"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    regions, skipped = read(path)
    return select_regions(str(path), regions, skipped)


def select_regions(source: str, regions: list[Region], skipped: list[str] = ()) -> ParsedFile:
    """Sort a spectrum's regions into used, off-grid and skipped; ParseError if none is usable."""
    kept, surveys, recorded, skipped = [], [], [], list(skipped)
    for region in regions:
        reason = classify(region, {r.name for r in kept})
        if reason is not None and reason.startswith("survey"):
            surveys.append(region)  # surveys reach above the grid too, but with Auger lines
            continue
        recorded.append(region)
        if reason is None:
            kept.append(region)
        else:
            skipped.append(f"{region.name}: {reason}")
    if not kept and surveys:  # survey-only acquisitions are read at survey resolution
        kept = surveys[:1]
        surveys = surveys[1:]
    skipped += [f"{r.name}: {classify(r)} (another region is used)" for r in surveys]
    if not kept:
        raise ParseError(
            f"{Path(source).name}: no core-level region or survey on the grid ({'; '.join(skipped) or 'no data'})"
        )
    if all(np.ptp(r.counts) <= 0 for r in kept):
        raise EmptySpectrum(f"{Path(source).name}: no signal (every region's counts are the same value)")
    return ParsedFile(source, kept, skipped, recorded)
