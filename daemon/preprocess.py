"""Regions -> grid spectrum: Shirley background, resampling onto the grid, area normalisation.

This is the one place a measured spectrum is prepared; the daemon and training's
real-spectrum checks both call `regions_to_grid`, so the model sees the same representation
as the synthetic training data (contract: regions on the grid, zero elsewhere, sum 1).
"""

from __future__ import annotations

import numpy as np

from xpstream.contract import GRID_SIZE, Region, energy_grid, normalise_spectrum

GRID = energy_grid()


def shirley_background(
    binding_energy_ev: np.ndarray,
    counts: np.ndarray,
    end_points: int = 3,
    max_iter: int = 100,
    tol: float = 1e-7,
) -> np.ndarray:
    """Iterative Shirley background of one region (energies ascending).

    B(E) = I_low + (I_high - I_low) * A(E) / A_total, where A(E) is the area of (I - B) between
    the low-binding-energy end and E (Shirley 1972; iterated as Proctor & Sherwood 1982).
    I_low and I_high are the means of `end_points` points at each end.
    """
    be = np.asarray(binding_energy_ev, dtype=np.float64)
    y = np.asarray(counts, dtype=np.float64)
    k = max(1, min(end_points, len(y) // 4))
    low, high = y[:k].mean(), y[-k:].mean()
    background = np.full_like(y, low)
    steps = np.diff(be)
    for _ in range(max_iter):
        signal = y - background
        # cumulative trapezoid area from the low-BE end
        area = np.concatenate(([0.0], np.cumsum(0.5 * (signal[1:] + signal[:-1]) * steps)))
        total = area[-1]
        new = low + (high - low) * (area / total if total > 0 else np.zeros_like(area))
        converged = np.max(np.abs(new - background)) <= tol * max(abs(high - low), 1e-12)
        background = new
        if converged:
            break
    return background


def region_signal(region: Region) -> np.ndarray:
    """The region's counts minus its Shirley background."""
    return region.counts - shirley_background(region.binding_energy_ev, region.counts)


def regions_to_grid(regions: list[Region]) -> np.ndarray:
    """Background-subtracted regions, linearly resampled onto the grid (zero outside every
    region) and area-normalised to sum 1; float32 (GRID_SIZE,)."""
    spectrum = np.zeros(GRID_SIZE, dtype=np.float64)
    for region in regions:
        spectrum += np.interp(GRID, region.binding_energy_ev, region_signal(region), left=0.0, right=0.0)
    return normalise_spectrum(spectrum)
