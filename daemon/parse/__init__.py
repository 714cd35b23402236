"""Instrument files -> core-level regions (binding energy, counts).

`parse_file` picks a reader by file type and keeps core-level regions; survey and valence
blocks are reported as skipped. Readers raise `ParseError` with a reason a person can act on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xpstream.contract import GRID_STOP_EV, Region

SURVEY_SPAN_EV = 60.0  # a region wider than this is a survey, not a core level
VALENCE_MAX_EV = 40.0  # a region entirely below this binding energy is valence band


class ParseError(ValueError):
    """A file that cannot be turned into regions; the message says why."""


@dataclass
class ParsedFile:
    path: str
    regions: list[Region]
    skipped: list[str] = field(default_factory=list)  # "name: reason"


def classify(region: Region, seen_names: set[str] = frozenset()) -> str | None:
    """None for a core-level region on the grid, else the reason it is skipped."""
    be = region.binding_energy_ev
    if be[-1] - be[0] > SURVEY_SPAN_EV:
        return f"survey ({be[0]:.0f}-{be[-1]:.0f} eV)"
    if be[-1] <= VALENCE_MAX_EV:
        return f"below {VALENCE_MAX_EV:g} eV (valence band or shallow level, off the grid)"
    if be[0] >= GRID_STOP_EV:
        return f"above the grid ({be[0]:.0f}-{be[-1]:.0f} eV)"
    if region.name in seen_names:
        return "repeats an earlier region of the same name (the first is used)"
    return None


def parse_file(path: str | Path) -> ParsedFile:
    """Read an instrument file into its core-level regions."""
    from xpstream.daemon.parse import text, vamas_file, vendor

    path = Path(path)
    suffix = path.suffix.lower()
    skipped = []
    if suffix in text.SUFFIXES:
        regions = text.read_two_column(path)
    elif suffix == ".vms":
        regions, skipped = vamas_file.read_vamas(path)
    elif suffix in vendor.SUFFIXES:
        regions = vendor.read_vendor_file(path)
    else:
        raise ParseError(f"{path.name}: unsupported file type {suffix!r}")
    kept = []
    for region in regions:
        reason = classify(region, {r.name for r in kept})
        if reason:
            skipped.append(f"{region.name}: {reason}")
        else:
            kept.append(region)
    if not kept:
        raise ParseError(f"{path.name}: no core-level region ({'; '.join(skipped) or 'no data'})")
    return ParsedFile(str(path), kept, skipped)
