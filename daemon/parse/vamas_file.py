"""VAMAS (ISO 14976) files with the `vamas` package (REGULAR scans).

Kinetic-energy blocks are converted with the block's own source energy. Blocks recorded with
a UV source (UPS) and Auger blocks are reported as skipped. Two kinds of file the `vamas`
package refuses are still read: files that start with blank lines (some Kratos exports) are
read from a copy without them, and IRREGULAR scans go to the pynxtools-xps VAMAS parser.
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np

from xpstream.contract import ContractError, Region
from xpstream.daemon.parse.base import ParseError

SUFFIXES = (".vms",)

UV_SOURCE_MAX_EV = 100.0  # He I/II lamps: 21.2 / 40.8 eV
AUGER = re.compile(r"\b[KLMN]{3}\b|auger", re.I)


def read(path: Path) -> tuple[list[Region], list[str]]:
    """(regions, skipped) of a VAMAS file."""
    from vamas import Vamas

    from xpstream.daemon.parse.vendor import read_vendor_file

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vms = _open(Vamas, path)
    except ValueError as err:
        if "REGULAR" in str(err) or _declares_irregular(path):
            return read_vendor_file(path), []
        raise ParseError(f"{path.name}: not a readable VAMAS file ({err})") from None
    except Exception as err:  # the library raises its own and generic errors
        raise ParseError(f"{path.name}: not a readable VAMAS file ({type(err).__name__}: {err})") from None
    regions, skipped = [], []
    for i, block in enumerate(vms.blocks):
        name = " ".join(s for s in (block.species_label, block.transition_or_charge_state_label) if s).strip()
        name = name or block.block_identifier or f"block {i + 1}"
        source = float(block.analysis_source_characteristic_energy or 0)
        if 0 < source < UV_SOURCE_MAX_EV:
            skipped.append(f"{name}: UPS (source {source:g} eV)")
            continue
        if AUGER.search(name):
            skipped.append(f"{name}: Auger")
            continue
        counts = np.asarray(block.corresponding_variables[0].y_values, dtype=np.float64)
        energy = block.x_start + block.x_step * np.arange(len(counts))
        if "kinetic" in block.x_label.lower():
            energy = source - energy
        elif "binding" not in block.x_label.lower():
            skipped.append(f"{name}: abscissa {block.x_label!r} is not an energy")
            continue
        try:
            regions.append(Region(name, energy, counts))
        except ContractError as err:
            raise ParseError(f"{path.name}: {err}") from None
    return regions, skipped


def _open(vamas_class, path: Path):
    """Open with the vamas package; retry without leading blank lines."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints its refusals
            return vamas_class(str(path))
    except Exception:
        text = path.read_bytes()
        stripped = text.lstrip(b"\r\n")
        if stripped == text:
            raise
        with tempfile.NamedTemporaryFile(suffix=".vms") as copy:
            copy.write(stripped)
            copy.flush()
            with contextlib.redirect_stdout(io.StringIO()):
                return vamas_class(copy.name)


def _declares_irregular(path: Path) -> bool:
    with open(path, "rb") as fh:
        return b"IRREGULAR" in fh.read(200_000)
