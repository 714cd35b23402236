"""Vendor formats read with the pynxtools-xps parser classes (FAIRmat, Apache-2.0).

pynxtools-xps turns each spectrum of a file into an xarray DataArray with dims (cycle, scan,
energy) on a binding-energy axis; scans and cycles are averaged here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xpstream.contract import ContractError, Region

SUFFIXES = (".xml",)


def read_vendor_file(path: Path) -> list[Region]:
    """All spectra of a SPECS SpecsLab2 XML file as regions."""
    from pynxtools_xps.parsers.specs.xml import SPECSXMLParser

    from xpstream.daemon.parse import ParseError

    parser = SPECSXMLParser()
    try:
        parser.parse(path)
    except Exception as err:  # the library raises many types for malformed files
        raise ParseError(f"{path.name}: not a readable SPECS XML file ({type(err).__name__}: {err})") from None
    regions = []
    for key, spectrum in parser.data.items():
        if spectrum.data is None or "energy" not in spectrum.data.dims:
            continue
        counts = spectrum.data.mean(dim=[d for d in spectrum.data.dims if d != "energy"])
        name = key.split("__", 1)[-1]
        try:
            regions.append(Region(name, np.asarray(counts["energy"].values), np.asarray(counts.values)))
        except ContractError as err:
            raise ParseError(f"{path.name}: {err}") from None
    if not regions:
        raise ParseError(f"{path.name}: no spectra in the file")
    return regions
