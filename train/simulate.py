"""Base spectra: the background-free core-level spectrum of one polymer on the grid.

A polymer becomes a list of lines (centre, area, Gaussian and Lorentzian widths):
- each environment gives one Voigt line per atom kind, at its sourced binding energy;
- area = atom count x cross section x kinetic-energy factor (IMFP x transmission);
- p and d levels split into spin-orbit doublets (minor component `split_ev` higher, with
  `minor_ratio` of the major area);
- aromatic environments move a fraction of their area into a Gaussian pi->pi* shake-up.

Lines are rendered analytically in Fourier space (the Voigt profile's Fourier transform is
exp(-2 pi^2 sigma^2 nu^2 - 2 pi gamma |nu|)) on a periodic grid of FFT_SIZE points that starts
at the contract grid's first point. This lets the mixture generator apply per-spectrum shift and
Gaussian broadening as one multiplication before a single inverse FFT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft

from xpstream.contract import GRID_SIZE, GRID_START_EV, GRID_STEP_EV, normalise_spectrum
from xpstream.train.library import Library, Polymer

FFT_SIZE = 8192  # periodic grid: 6601 points + 159 eV of zero padding against wrap-around
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
BAND_TOLERANCE = 1e-9  # Fourier coefficients below this fraction of a line's area are dropped
# Intensities below this (on unit-area spectra, where peaks reach ~1e-2) are set to zero:
# far Lorentzian tails that no recorded region holds (< 0.2 % of the area). It keeps the
# contract's "zero outside the regions" and makes stored data sets compress.
ZERO_BELOW = 1e-6


@dataclass(frozen=True)
class Jitter:
    """Per-draw variability of the base spectra (0 = exact sourced values)."""

    be_ev: float = 0.0  # binding energies move by U(-be_ev, +be_ev); at most 0.1 eV
    width: float = 0.0  # widths scale by U(1 - width, 1 + width)
    # shake-up area scales by U(1 - shakeup, 1), one draw per polymer: the share of the
    # satellite a Shirley background over the measured window leaves (from none to all)
    shakeup: float = 0.0

    def __post_init__(self):
        if not (0.0 <= self.be_ev <= 0.1) or math.isnan(self.be_ev):
            raise ValueError(f"binding-energy jitter must lie in [0, 0.1] eV, got {self.be_ev}")
        if not (0.0 <= self.width < 0.5) or math.isnan(self.width):
            raise ValueError(f"width jitter must lie in [0, 0.5), got {self.width}")
        if not (0.0 <= self.shakeup <= 1.0) or math.isnan(self.shakeup):
            raise ValueError(f"shake-up jitter must lie in [0, 1], got {self.shakeup}")


@dataclass(frozen=True)
class Lines:
    """Line list of a spectrum: arrays of equal length."""

    centre_ev: np.ndarray
    area: np.ndarray
    gauss_fwhm_ev: np.ndarray
    lorentz_fwhm_ev: np.ndarray
    level: tuple[str, ...]  # core level of each line (shake-ups count to C 1s)


def voigt_gaussian_fwhm(total_fwhm: float, lorentz_fwhm: float) -> float:
    """Gaussian FWHM giving a Voigt of the requested total FWHM (Olivero & Longbothum 1977)."""
    return math.sqrt((total_fwhm - 0.5346 * lorentz_fwhm) ** 2 - 0.2166 * lorentz_fwhm**2)


def polymer_lines(
    library: Library, polymer: Polymer, rng: np.random.Generator | None = None, jitter: Jitter = Jitter()
) -> Lines:
    """The lines of one polymer, with optional jitter drawn from rng."""
    centre, area, gauss, lorentz, level = [], [], [], [], []
    inst = library.instrument
    kept_shakeup = 1.0
    if rng is not None and jitter.shakeup > 0:
        kept_shakeup = rng.uniform(1.0 - jitter.shakeup, 1.0)
    for env, count in polymer.environments:
        lvl = env.level
        be, fwhm = env.be_ev, env.fwhm_ev
        if rng is not None and jitter.be_ev > 0:
            be += rng.uniform(-jitter.be_ev, jitter.be_ev)
        if rng is not None and jitter.width > 0:
            fwhm = lvl.lorentzian_fwhm_ev + (fwhm - lvl.lorentzian_fwhm_ev) * rng.uniform(
                1 - jitter.width, 1 + jitter.width
            )
        total = count * lvl.cross_section_barn * inst.kinetic_energy_factor(be)
        if env.shakeup is not None:
            centre.append(be + env.shakeup.offset_ev)
            satellite = total * env.shakeup.fraction
            area.append(satellite * kept_shakeup)
            gauss.append(env.shakeup.fwhm_ev)
            lorentz.append(0.0)
            level.append(lvl.name)
            total -= satellite
        g = voigt_gaussian_fwhm(fwhm, lvl.lorentzian_fwhm_ev)
        major = total / (1.0 + lvl.minor_ratio)
        centre.append(be)
        area.append(major)
        gauss.append(g)
        lorentz.append(lvl.lorentzian_fwhm_ev)
        level.append(lvl.name)
        if lvl.split_ev:
            centre.append(be + lvl.split_ev)
            area.append(total - major)
            gauss.append(g)
            lorentz.append(lvl.lorentzian_fwhm_ev)
            level.append(lvl.name)
    return Lines(np.array(centre), np.array(area), np.array(gauss), np.array(lorentz), tuple(level))


def band_limit(min_gauss_fwhm_ev: float) -> int:
    """Number of rfft bins that hold every line with at least this Gaussian FWHM."""
    sigma = min_gauss_fwhm_ev / FWHM_PER_SIGMA / GRID_STEP_EV  # in grid samples
    nu_max = math.sqrt(math.log(1.0 / BAND_TOLERANCE) / (2.0 * math.pi**2 * sigma**2))
    return min(FFT_SIZE // 2 + 1, math.ceil(nu_max * FFT_SIZE) + 1)


def frequencies(n_bins: int) -> np.ndarray:
    """Frequencies in cycles per grid sample of the first n_bins rfft bins."""
    return np.arange(n_bins) / FFT_SIZE


def render_fourier(lines: Lines, n_bins: int) -> np.ndarray:
    """rfft coefficients (complex128, n_bins) of the lines sampled on the periodic grid."""
    nu = frequencies(n_bins)[None, :]
    x0 = ((lines.centre_ev - GRID_START_EV) / GRID_STEP_EV)[:, None]
    sigma = (lines.gauss_fwhm_ev / FWHM_PER_SIGMA / GRID_STEP_EV)[:, None]
    gamma = (lines.lorentz_fwhm_ev / 2.0 / GRID_STEP_EV)[:, None]
    envelope = np.exp(-2.0 * math.pi**2 * sigma**2 * nu**2 - 2.0 * math.pi * gamma * nu)
    phase = np.exp(-2j * math.pi * nu * x0)
    return (lines.area[:, None] * envelope * phase).sum(axis=0)


def to_grid(coefficients: np.ndarray) -> np.ndarray:
    """Inverse rfft of (..., n_bins) coefficients, cropped to the contract grid."""
    return scipy.fft.irfft(coefficients, n=FFT_SIZE, axis=-1)[..., :GRID_SIZE]


def to_spectra(unit_area_coefficients: np.ndarray) -> np.ndarray:
    """Grid spectra from coefficients of unit-area spectra: negatives and values below
    ZERO_BELOW set to zero (not yet renormalised)."""
    spectra = to_grid(unit_area_coefficients)
    spectra *= spectra >= ZERO_BELOW
    return spectra


def base_spectrum(
    library: Library, polymer: Polymer, rng: np.random.Generator | None = None, jitter: Jitter = Jitter()
) -> np.ndarray:
    """The polymer's background-free spectrum on the grid, area-normalised (float32)."""
    lines = polymer_lines(library, polymer, rng, jitter)
    coefficients = render_fourier(lines, band_limit(float(lines.gauss_fwhm_ev.min())))
    return normalise_spectrum(to_spectra(coefficients / coefficients[0].real))


def look_alikes(library: Library, n: int) -> list[tuple[float, Polymer, Polymer, list[str]]]:
    """The n pairs of polymers whose base spectra are closest (L1 distance of the unit-area
    spectra, 0 = identical, 2 = disjoint) although their labels differ, closest first, with the
    labels that differ: where the library itself limits how well a model can tell groups apart."""
    polymers = library.polymers
    spectra = np.stack([base_spectrum(library, p) for p in polymers])
    labels = [set(p.labels) for p in polymers]
    pairs = []
    for i in range(len(polymers)):
        distances = np.abs(spectra[i + 1 :] - spectra[i]).sum(axis=1)
        for j, distance in enumerate(distances, start=i + 1):
            if labels[i] != labels[j]:
                pairs.append((float(distance), polymers[i], polymers[j], sorted(labels[i] ^ labels[j])))
    return sorted(pairs, key=lambda pair: pair[0])[:n]
