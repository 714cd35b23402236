"""Element composition (at. %) from a spectrum's core-level areas: the classical quantification
an analyst does by hand in CasaXPS, no model.

For each recorded core level with signal, the number of atoms is proportional to the level's
background-subtracted area divided by its sensitivity: the photoionisation cross section
(Scofield) times the kinetic-energy response, KE^(IMFP exponent + analyser transmission
exponent) at KE = photon energy - binding energy (the same factors the simulator uses). The
areas come with the model's outputs (`level_area`, each level's share of the unit-area spectrum
after Shirley subtraction; `level_recorded`); the cross sections, energies and default
instrument response with its metadata (`ModelMetadata.levels`, `.instrument`). Hydrogen is not
seen; elements whose region was not recorded are absent, not 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import compress

import numpy as np

# A recorded level holding less than this share of the spectrum's area shows no peak above the
# background (about 0.3-0.5 at. % for the library's elements): not quantified.
NO_SIGNAL_SHARE = 0.005
NO_SIGNAL = "no signal above the background (below about 0.5 % of the area)"
NO_CROSS_SECTION = "no cross section in the library (region {region!r})"


@dataclass(frozen=True)
class InstrumentResponse:
    """An instrument's kinetic-energy response where it differs from the library's
    (`[instruments.NAME]` in the daemon's configuration); None keeps the model's value."""

    transmission_exponent: float | None = None
    photon_energy_ev: float | None = None


def sensitivities(levels: list[dict], instrument: dict, response: InstrumentResponse = InstrumentResponse()):
    """(L,) relative sensitivity of each level: cross section x KE^(IMFP + transmission)."""
    photon = response.photon_energy_ev or instrument["photon_energy_ev"]
    transmission = instrument["transmission_exponent"]
    if response.transmission_exponent is not None:
        transmission = response.transmission_exponent
    exponent = instrument["imfp_exponent"] + transmission
    sigma = np.array([level["cross_section_barn"] for level in levels], dtype=np.float64)
    kinetic = photon - np.array([level["be_ev"] for level in levels], dtype=np.float64)
    return sigma * kinetic**exponent


def element_composition(
    level_area: np.ndarray,
    level_recorded: np.ndarray,
    levels: list[dict],
    instrument: dict,
    responses: list[InstrumentResponse] | None = None,
) -> list[tuple[dict[str, float], dict[str, str]]]:
    """Per spectrum, (atomic_percent {element: at. %} summing to 100 over the recorded elements
    with signal, not_quantified {element: reason}) from the level outputs (N, L) of a model
    whose metadata lists `levels` and `instrument`. responses: per spectrum (default: the
    library's response). Vectorised over the batch (the daemon calls it for every batch)."""
    n = len(level_area)
    if not levels:
        return [({}, {}) for _ in range(n)]
    area = np.asarray(level_area, dtype=np.float64)
    recorded = np.asarray(level_recorded) > 0
    weight = np.broadcast_to(sensitivities(levels, instrument), area.shape)
    if responses and any(r != InstrumentResponse() for r in responses):
        weight = np.stack([sensitivities(levels, instrument, r) for r in responses])
    with_signal = recorded & (area >= NO_SIGNAL_SHARE)
    atoms = np.where(with_signal, area / weight, 0.0)
    total = atoms.sum(axis=1, keepdims=True)
    percent = (100.0 * np.divide(atoms, total, out=np.zeros_like(atoms), where=total > 0)).round(2)
    elements = [level["element"] for level in levels]
    silent = (recorded & ~with_signal).tolist()
    return [
        (
            dict(compress(zip(elements, row, strict=True), signal)),
            dict.fromkeys(compress(elements, quiet), NO_SIGNAL),
        )
        for row, signal, quiet in zip(percent.tolist(), with_signal.tolist(), silent, strict=True)
    ]
