"""Instrument files -> core-level regions (binding energy, counts).

`parse_file` picks a reader by file type and keeps core-level regions; survey and valence
blocks are reported as skipped. Readers raise `ParseError` with a reason a person can act on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xpstream.contract import Region

SURVEY_SPAN_EV = 60.0  # a region wider than this is a survey, not a core level
VALENCE_MAX_EV = 40.0  # a region entirely below this binding energy is valence band


class ParseError(ValueError):
    """A file that cannot be turned into regions; the message says why."""


@dataclass
class ParsedFile:
    path: str
    regions: list[Region]
    skipped: list[str] = field(default_factory=list)  # "name: reason"


def classify(region: Region) -> str | None:
    """None for a core-level region, else the reason it is skipped."""
    be = region.binding_energy_ev
    if be[-1] <= VALENCE_MAX_EV:
        return "valence band (below 40 eV)"
    if be[-1] - be[0] > SURVEY_SPAN_EV:
        return f"survey ({be[0]:.0f}-{be[-1]:.0f} eV)"
    return None


def parse_file(path: str | Path) -> ParsedFile:
    """Read an instrument file into its core-level regions."""
    from xpstream.daemon.parse import text, vendor

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in text.SUFFIXES:
        regions = text.read_two_column(path)
    elif suffix in vendor.SUFFIXES:
        regions = vendor.read_vendor_file(path)
    else:
        raise ParseError(f"{path.name}: unsupported file type {suffix!r}")
    kept, skipped = [], []
    for region in regions:
        reason = classify(region)
        if reason:
            skipped.append(f"{region.name}: {reason}")
        else:
            kept.append(region)
    if not kept:
        raise ParseError(f"{path.name}: no core-level region ({'; '.join(skipped) or 'no data'})")
    return ParsedFile(str(path), kept, skipped)
