"""Vendor formats read with the pynxtools-xps parser classes (FAIRmat, Apache-2.0): SPECS
SpecsLab2 XML and Prodigy XY, PHI SPE, Scienta TXT, and IRREGULAR VAMAS (which the `vamas`
package does not read).

pynxtools-xps gives each spectrum as an xarray DataArray with dims (cycle, scan, energy);
scans and cycles are averaged here. The axis is binding energy unless the parser's metadata
say kinetic (`energy_label`/`x_units`), in which case the recorded excitation energy converts it.
pynxtools-xps is the `vendor` extra; without it these files are refused with reason `unsupported`
and the command that installs it.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import numpy as np

from xpstream.contract import ContractError, Region
from xpstream.daemon.parse.base import ParseError, UnsupportedFormat

PARSERS = {  # suffix: (format, parser class)
    ".xml": ("SPECS XML", "pynxtools_xps.parsers.specs.xml:SPECSXMLParser"),
    ".xy": ("SPECS XY", "pynxtools_xps.parsers.specs.xy:SPECSXYParser"),
    ".spe": ("PHI SPE", "pynxtools_xps.parsers.phi:PHIParser"),
    ".txt": ("Scienta TXT", "pynxtools_xps.parsers.scienta:ScientaTXTParser"),
    ".vms": ("IRREGULAR VAMAS", "pynxtools_xps.parsers.vms:VamasParser"),
}
SUFFIXES = tuple(PARSERS)


def read_vendor_file(path: Path) -> list[Region]:
    """All spectra of a vendor file as regions on a binding-energy axis."""
    fmt, target = PARSERS[path.suffix.lower()]
    module, name = target.split(":")
    try:
        parser = getattr(importlib.import_module(module), name)()
    except ModuleNotFoundError as err:
        if not (err.name or "").startswith("pynxtools"):
            raise
        raise UnsupportedFormat(
            f"{path.name}: {fmt} files need the pynxtools-xps reader: pip install 'xpstream[vendor]'"
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parser.parse(path)
    except Exception as err:  # the library raises many types for malformed files
        raise ParseError(f"{path.name}: not a readable {fmt} file ({type(err).__name__}: {err})") from None
    regions = []
    for key, spectrum in parser.data.items():
        if spectrum.data is None or "energy" not in spectrum.data.dims:
            continue
        counts = spectrum.data.mean(dim=[d for d in spectrum.data.dims if d != "energy"])
        energy = np.asarray(counts["energy"].values, dtype=np.float64)
        meta = spectrum.metadata
        if "kinetic" in (str(meta.get("energy_label", "")), str(meta.get("x_units", ""))):
            source = meta.get("excitation_energy") or meta.get("region/excitation_energy")
            if source is None:
                raise ParseError(f"{path.name}: {key}: kinetic-energy axis but no excitation energy recorded")
            energy = float(source) - energy
        try:
            regions.append(Region(key.split("__", 1)[-1], energy, np.asarray(counts.values)))
        except ContractError as err:
            raise ParseError(f"{path.name}: {err}") from None
    if not regions:
        raise ParseError(f"{path.name}: no spectra in the file")
    return regions


def read(path: Path) -> tuple[list[Region], list[str]]:
    """The reader interface (see `xpstream.daemon.parse`)."""
    return read_vendor_file(path), []
