"""What a measurement does to a spectrum after the sample's lines are drawn, in place on a batch
(N, GRID_SIZE) of float32 spectra: differential charging, recorded regions and their cut tails,
imperfect background subtraction, counting noise. `windows` are the core-level region windows
of `xpstream.train.acquisition.window_slices()`, `gaps` the grid between them."""

from __future__ import annotations

import math

import numpy as np

from xpstream.contract import GRID_SIZE, GRID_STEP_EV

SURVEY_COUNTS_FACTOR = 0.1  # a survey spends a tenth of a region scan's counts per line


def normalise_rows(spectra: np.ndarray) -> None:
    """Each row to unit sum (all-zero rows stay zero)."""
    total = spectra.sum(axis=1, keepdims=True)
    spectra *= np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)


def charge_levels_apart(spectra, windows, max_ev: float, rng) -> None:
    """Differential charging: the content of each level's window moves by its own
    U(-max_ev, max_ev) eV (linear interpolation, zero entering at the window's edge)."""
    moves = rng.uniform(-max_ev, max_ev, size=(len(spectra), len(windows))) / GRID_STEP_EV
    for j, window in enumerate(windows):
        region = spectra[:, window]
        width = region.shape[1]
        whole = np.floor(moves[:, j]).astype(int)
        frac = (moves[:, j] - whole).astype(np.float32)[:, None]
        padded = np.pad(region, ((0, 0), (width, width)))
        index = np.arange(width)[None, :] + width - whole[:, None]  # new[i] = old[i - move]
        left = np.take_along_axis(padded, index, axis=1)
        right = np.take_along_axis(padded, index - 1, axis=1)
        spectra[:, window] = left + frac * (right - left)


def keep_recorded_regions(spectra, windows, gaps, recorded, whole) -> None:
    """Zero everything outside the recorded regions (rows with `whole` keep the grid)."""
    keep = (recorded | whole[:, None]).astype(np.float32)
    for j, window in enumerate(windows):
        spectra[:, window] *= keep[:, j : j + 1]
    outside = whole.astype(np.float32)[:, None]
    for gap in gaps:
        spectra[:, gap] *= outside


def cut_window_tails(spectra, windows, regions, x: float, rng) -> None:
    """Recorded windows narrower than the lines' far tails: each region of a row drops the
    first U(0, x) and the last U(0, x) of its area (as a region that ends where the line is
    still above background; the mask still calls the points recorded)."""
    for j, window in enumerate(windows):
        rows = np.flatnonzero(regions[:, j])
        if not len(rows):
            continue
        region = spectra[rows, window]
        cumulative = np.cumsum(region, axis=1)
        total = cumulative[:, -1:]
        low = rng.uniform(0.0, x, size=(len(rows), 1)) * total
        high = (1.0 - rng.uniform(0.0, x, size=(len(rows), 1))) * total
        keep = (cumulative > low) & (cumulative - region < high)
        spectra[rows, window] = region * keep


def add_residual_background(spectra, windows, levels, step_std: float, ramp_std: float, rng) -> None:
    """What an imperfect background subtraction leaves in each recorded region: a
    Shirley-shaped step of r x the region's area (r ~ N(0, step_std), the
    running integral from the low-BE end) and a linear ramp holding l x the area
    (l ~ N(0, ramp_std)); either sign, clipped at zero."""
    n = len(spectra)
    step = rng.normal(0.0, step_std, size=n).astype(np.float32)
    ramp = rng.normal(0.0, ramp_std, size=n).astype(np.float32)
    for j, window in enumerate(windows):
        width = window.stop - window.start
        on = levels[:, j]
        if not on.any():
            continue
        region = spectra[:, window]  # a view
        area = region.sum(axis=1, keepdims=True)
        shape = np.linspace(0.0, 2.0 / width, width, dtype=np.float32)[None, :]  # sums to 1
        region += np.cumsum(region, axis=1) * (step * on / width)[:, None] + area * (ramp * on)[:, None] * shape
        np.maximum(region, 0.0, out=region)


def add_counting_noise(spectra, windows, pool, survey, counts_min: float, counts_max: float, rng) -> None:
    """Poisson noise (Gaussian approximation) at a count level per spectrum: counts_min,
    or log-uniform up to counts_max; SURVEY_COUNTS_FACTOR of them for survey rows.

    Every line lies inside a region window, so only windows are touched. Each row reads
    consecutive standard normals from `pool` at a random offset.
    """
    n = len(spectra)
    counts = np.full(n, counts_min)
    if counts_max > counts_min:
        counts = np.exp(rng.uniform(math.log(counts_min), math.log(counts_max), size=n))
    counts = np.where(survey, counts * SURVEY_COUNTS_FACTOR, counts)
    scale = (1.0 / np.sqrt(counts)).astype(np.float32)[:, None]
    offsets = rng.integers(0, len(pool) - GRID_SIZE, size=(n, 1))
    for window in windows:
        region = spectra[:, window]
        noise = pool[offsets + np.arange(window.start, window.stop)]
        noise *= np.sqrt(region) * scale
        region += noise
        np.maximum(region, 0.0, out=region)
