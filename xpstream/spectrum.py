"""The spectrum rules both halves share (numpy only, no torch): regions -> grid spectrum (Shirley
background, resampling onto the grid, area normalisation), measured-region masks, region
padding, element names of regions, and the out-of-library check.

This is the one place a measured spectrum is prepared. `regions_to_grid` is the numpy
reference that training's real-spectrum checks use; the daemon and `xpstream predict` run the
same steps batched as a small ONNX graph (`models/preprocess.onnx`, built from
`xpstream.train.preprocess_graph`) merged in front of the model (see daemon/infer.py), and a
test holds the two equal to 1e-5. Contract: regions on the grid, zero elsewhere, sum 1.

Steps per region: (1) an irregular energy axis is resampled to a uniform one with the same
number of points; (2) a Shirley background (SHIRLEY_ITERATIONS fixed iterations) is subtracted
between two background limits (`background_limits`): on each side, the minimum of the counts
averaged over LIMIT_SMOOTHING_EV within BACKGROUND_SEARCH_EV of the region's end - where an
analyst would put them, in the flat part beside the peaks, not in a loss tail that rises
towards the window's edge (the measured PET C 1s: anchored at its last points, 299 eV, the
background ate the pi->pi* satellite); outside the limits the signal is zero; (3) the signal is
linearly interpolated onto the grid, zero outside the region. The regions of a spectrum are
summed, negatives clipped, and the whole normalised to unit area.

Beside the spectrum the model gets its measured-region mask (`measured_mask`: 1 on the grid
points a region covers), and the daemon checks the recorded regions for peaks the library
cannot explain (`unexplained_regions`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from xpstream.contract import GRID_SIZE, GRID_STOP_EV, ContractError, Region, energy_grid, normalise_spectrum

GRID = energy_grid()
SHIRLEY_ITERATIONS = 12
BACKGROUND_SEARCH_EV = 5.0  # a background limit lies within this distance of the region's end
LIMIT_SMOOTHING_EV = 1.0  # ... at the minimum of the counts averaged over this width
PEAK_SIGNIFICANCE = 10.0  # a peak stands this many noise sigmas above the region's baseline
SMOOTHING_POINTS = 5


def uniform_axis(region: Region) -> tuple[float, float, np.ndarray]:
    """(start, step, counts) on a uniform binding-energy axis with the region's point count."""
    be, counts = region.binding_energy_ev, region.counts
    step = (be[-1] - be[0]) / (len(be) - 1)
    if np.max(np.abs(np.diff(be) - step)) > 1e-3 * step:  # IRREGULAR: resample
        counts = np.interp(be[0] + step * np.arange(len(be)), be, counts)
    return float(be[0]), float(step), counts


def background_limits(counts: np.ndarray, step: float) -> tuple[int, int, float, float]:
    """(first, last, low level, high level): the background limits of a region on a uniform
    axis (ascending binding energy) and the background's levels there.

    Each limit is the minimum of the counts averaged over LIMIT_SMOOTHING_EV (a window of
    2h + 1 points, cut at the region's ends), searched within BACKGROUND_SEARCH_EV (at most a
    quarter of the region) of its end. The preprocessing graph computes the same numbers.
    """
    y = np.asarray(counts, dtype=np.float64)
    n = len(y)
    half = min(int(LIMIT_SMOOTHING_EV / 2 / step + 0.5), (n - 1) // 8)
    search = max(1, min(int(BACKGROUND_SEARCH_EV / step + 0.5), n // 4))
    cumulative = np.concatenate(([0.0], np.cumsum(y)))
    index = np.arange(n)
    first, last = np.maximum(index - half, 0), np.minimum(index + half, n - 1)
    smooth = (cumulative[last + 1] - cumulative[first]) / (last - first + 1)
    low = int(np.argmin(smooth[:search]))
    high = n - search + int(np.argmin(smooth[n - search :]))
    return low, high, float(smooth[low]), float(smooth[high])


def shirley_background(counts: np.ndarray, step: float, iterations: int = SHIRLEY_ITERATIONS) -> np.ndarray:
    """Shirley background on a uniform axis (counts ordered by ascending binding energy).

    Between the background limits (`background_limits`), B(E) = I_low + (I_high - I_low) *
    A(E) / A_total, A(E) the trapezoid area of (I - B) from the low limit to E (Shirley 1972;
    iterated as Proctor & Sherwood 1982). Outside the limits the background is the counts.
    """
    y = np.asarray(counts, dtype=np.float64)
    first, last, low, high = background_limits(y, step)
    inside = y[first : last + 1]
    background = np.full_like(inside, low)
    for _ in range(iterations):
        signal = inside - background
        area = np.concatenate(([0.0], np.cumsum(0.5 * (signal[1:] + signal[:-1]) * step)))
        ratio = area / area[-1] if area[-1] > 0 else np.zeros_like(area)
        background = low + (high - low) * ratio
    out = y.copy()
    out[first : last + 1] = background
    return out


def region_signal(region: Region) -> tuple[np.ndarray, np.ndarray]:
    """(uniform binding-energy axis, counts minus Shirley background) of one region."""
    start, step, counts = uniform_axis(region)
    axis = start + step * np.arange(len(counts))
    return axis, counts - shirley_background(counts, step)


def regions_to_grid(regions: list[Region]) -> np.ndarray:
    """The numpy reference: one spectrum (GRID_SIZE,) float32 from its regions."""
    spectrum = np.zeros(GRID_SIZE, dtype=np.float64)
    for region in regions:
        axis, signal = region_signal(region)
        spectrum += np.interp(GRID, axis, signal, left=0.0, right=0.0)
    return normalise_spectrum(spectrum)


def measured_mask(regions: list[Region]) -> np.ndarray:
    """(GRID_SIZE,) float32: 1 on the grid points inside any of the regions' energy ranges."""
    mask = np.zeros(GRID_SIZE, dtype=np.float32)
    for region in regions:
        be = region.binding_energy_ev  # ascending, as GRID: the covered points are one slice
        mask[np.searchsorted(GRID, be[0], side="left") : np.searchsorted(GRID, be[-1], side="right")] = 1.0
    return mask


def peak_significance(counts: np.ndarray) -> float:
    """Height of the highest peak above the straight line joining a region's ends, in units of
    the counting noise (estimated from point-to-point differences, so any intensity unit works)."""
    y = np.asarray(counts, dtype=np.float64)
    if len(y) < 4 * SMOOTHING_POINTS:
        return 0.0
    smooth = np.convolve(y, np.ones(SMOOTHING_POINTS) / SMOOTHING_POINTS, mode="valid")
    low, high = smooth[:SMOOTHING_POINTS].mean(), smooth[-SMOOTHING_POINTS:].mean()
    baseline = np.linspace(low, high, len(smooth))
    noise = 1.4826 * np.median(np.abs(np.diff(y))) / np.sqrt(2)
    height = float(np.max(smooth - baseline))
    return height / max(noise, 1e-12 * max(float(np.abs(y).max()), 1e-300))


def unexplained_regions(regions: list[Region], library_elements: list[str]) -> list[str]:
    """Names of the recorded regions that show a peak (PEAK_SIGNIFICANCE) the library cannot
    explain: anywhere in a region named after an element outside `library_elements` (the
    model's), or in the part of any region above the grid (the library has no lines there)."""
    names = []
    for region in regions:
        element = element_named(region.name)
        if element is not None and library_elements and element not in library_elements:
            counts = region.counts
        else:
            counts = region.counts[region.binding_energy_ev > GRID_STOP_EV]
        if peak_significance(counts) >= PEAK_SIGNIFICANCE and region.name not in names:
            names.append(region.name)
    return names


@dataclass
class RegionBatch:
    """Regions of several spectra, padded for the preprocessing graph."""

    counts: np.ndarray  # (M, L) float32, zero beyond each region's length
    start: np.ndarray  # (M,) float64, binding energy of the first point
    step: np.ndarray  # (M,) float64 (float32 would misplace a region's last point on the grid)
    length: np.ndarray  # (M,) int64
    owner: np.ndarray  # (M,) int64, the spectrum each region belongs to
    measured: np.ndarray  # (N, GRID_SIZE) float32, the model's measured-region mask

    def feeds(self) -> dict[str, np.ndarray]:
        return {
            "counts": self.counts,
            "start": self.start,
            "step": self.step,
            "length": self.length,
            "owner": self.owner,
        }


def pad_regions(spectra: list[list[Region]]) -> RegionBatch:
    """Pack the regions of N spectra into padded arrays (uniform axes)."""
    if not spectra or any(not regions for regions in spectra):
        raise ContractError("every spectrum to preprocess needs at least one region")
    rows = [(n, *uniform_axis(r)) for n, regions in enumerate(spectra) for r in regions]
    width = max(len(c) for *_, c in rows)
    counts = np.zeros((len(rows), width), dtype=np.float32)
    for m, (_, _, _, c) in enumerate(rows):
        counts[m, : len(c)] = c
    return RegionBatch(
        counts,
        np.array([r[1] for r in rows], dtype=np.float64),
        np.array([r[2] for r in rows], dtype=np.float64),
        np.array([len(r[3]) for r in rows], dtype=np.int64),
        np.array([r[0] for r in rows], dtype=np.int64),
        np.stack([measured_mask(regions) for regions in spectra]),
    )


_PERIODIC_TABLE = """
H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr
Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb
Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U
"""
ELEMENTS = frozenset(_PERIODIC_TABLE.split())
_LEVEL_NAME = re.compile(r"([A-Z][a-z]?)[\s_]*(\d[spdf])")


def element_named(region_name: str) -> str | None:
    """The element a region's name announces ("Cu 2p", "2_C1s", "Pb4f", "3_S_2p"), or None."""
    for symbol, _ in _LEVEL_NAME.findall(region_name):
        if symbol in ELEMENTS:
            return symbol
    return None
