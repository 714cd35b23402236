"""Two-column text and CSV files: energy, intensity.

The header line names the axis: binding energy ("BE", "binding") or kinetic energy ("KE",
"kinetic"). A kinetic axis needs the source (photon) energy, read from the header
("PE: 600 eV", "hv=1486.6") or given by the caller.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from xpstream.contract import ContractError, Region
from xpstream.daemon.parse.base import ParseError

SUFFIXES = (".csv", ".dat", ".tsv")
_NUMBER = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
_SOURCE = re.compile(rf"(?:PE|hv|hnu|photon[ _]energy|source[ _]energy)\s*[:=]?\s*({_NUMBER})", re.I)


def read_two_column(path: Path, source_energy_ev: float | None = None) -> list[Region]:
    """One region from a two-column file, on a binding-energy axis."""
    try:
        lines = Path(path).read_text(errors="strict").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ParseError(f"{Path(path).name}: cannot read as text ({err})") from None
    header = [ln for ln in lines[:5] if ln.strip() and not re.match(rf"\s*{_NUMBER}", ln)]
    head = " ".join(header)
    rows = []
    for number, line in enumerate(lines, 1):
        fields = [f for f in re.split(r"[,;\t ]+", line.strip()) if f]
        if not fields or line in header or line.lstrip().startswith("#"):
            continue
        try:
            rows.append((float(fields[0]), float(fields[1])))
        except (ValueError, IndexError):
            raise ParseError(f"{Path(path).name}: line {number} is not two numbers: {line[:60]!r}") from None
    if not rows:
        raise ParseError(f"{Path(path).name}: no data rows")
    energy, counts = np.array(rows).T
    if re.search(r"\bKE\b|kinetic", head, re.I):
        match = _SOURCE.search(head)
        source = source_energy_ev if source_energy_ev is not None else (float(match.group(1)) if match else None)
        if source is None:
            raise ParseError(f"{Path(path).name}: kinetic-energy axis but no source energy in the header")
        energy = source - energy
    elif not re.search(r"\bBE\b|binding", head, re.I):
        raise ParseError(f"{Path(path).name}: header does not say binding (BE) or kinetic (KE) energy")
    column = header[0].split(",")[-1].strip() if header else ""
    name = column if column and not _SOURCE.search(column) else Path(path).stem
    try:
        return [Region(name, energy, counts)]
    except ContractError as err:
        raise ParseError(f"{Path(path).name}: {err}") from None


def read(path: Path) -> tuple[list[Region], list[str]]:
    """The reader interface (see `xpstream.daemon.parse`)."""
    return read_two_column(path), []
