"""Base spectra: the background-free core-level spectrum of one polymer on the grid.

A polymer becomes a list of lines (centre, area, Gaussian and Lorentzian widths):
- each environment gives one line per atom kind, at its sourced binding energy;
- area = atom count x cross section x kinetic-energy factor (IMFP x transmission);
- p and d levels split into spin-orbit doublets (minor component `split_ev` higher, with
  `minor_ratio` of the major area);
- environments with a sourced shake-up move a fraction of their area into a Gaussian satellite.

Lines are rendered as rfft coefficients on a periodic grid of FFT_SIZE points that starts at the
contract grid's first point, so the mixture generator applies per-spectrum shift and Gaussian
broadening as one multiplication before a single inverse FFT. Line-shape families
(`LINESHAPES`): "voigt" is analytic in Fourier space (exp(-2 pi^2 sigma^2 nu^2 - 2 pi gamma |nu|));
the Gaussian-Lorentzian sum and product forms (CasaXPS's GL and SGL, 0-50 % Lorentzian) and
Pearson VII are evaluated on the periodic grid and transformed. A line may carry a
high-binding-energy tail (a share of its area convolved with a one-sided exponential): the C 1s
line of hydrocarbons is asymmetric on that side from C-H vibrational excitation (Beamson & Briggs
1992, polyethylene), and loss tails do the same in measured spectra.
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
# Line-shape families. Training draws among the first three; "pearson7" is kept for the
# cross-renderer test (a family no training run sees).
LINESHAPES = ("voigt", "gl_sum", "gl_product", "pearson7")
LORENTZIAN_SHARE = (0.0, 0.5)  # GL forms: the Lorentzian share m, drawn per template
PEARSON_EXPONENT = (1.5, 4.0)  # Pearson VII exponent (1: Lorentzian, large: Gaussian)
TAIL_DECAY_EV = 1.0  # the hydrocarbon tail: a one-sided exponential of this decay length
MAX_BE_SCATTER_EV = 0.3  # the spread of reported energies between labs, samples and references


@dataclass(frozen=True)
class Jitter:
    """Per-draw variability of the base spectra (0 / (1, 1) = exact sourced values)."""

    be_ev: float = 0.0  # each environment's energy moves by U(-be_ev, +be_ev); at most 0.3 eV
    width_scale: tuple[float, float] = (1.0, 1.0)  # each line's width scales by U(lo, hi)
    # shake-up area scales by U(1 - shakeup, 1), one draw per polymer: the share of the
    # satellite a Shirley background over the measured window leaves (from none to all)
    shakeup: float = 0.0
    tail: float = 0.0  # hydrocarbon C 1s lines put U(0, tail) of their area in the tail

    def __post_init__(self):
        if not (0.0 <= self.be_ev <= MAX_BE_SCATTER_EV) or math.isnan(self.be_ev):
            raise ValueError(f"binding-energy jitter must lie in [0, {MAX_BE_SCATTER_EV}] eV, got {self.be_ev}")
        lo, hi = self.width_scale
        if not (0.3 <= lo <= hi <= 3.0):
            raise ValueError(f"width scale must satisfy 0.3 <= low <= high <= 3, got {self.width_scale}")
        if not (0.0 <= self.shakeup <= 1.0) or math.isnan(self.shakeup):
            raise ValueError(f"shake-up jitter must lie in [0, 1], got {self.shakeup}")
        if not (0.0 <= self.tail < 1.0) or math.isnan(self.tail):
            raise ValueError(f"hydrocarbon tail must lie in [0, 1), got {self.tail}")


@dataclass(frozen=True)
class Lines:
    """Line list of a spectrum: arrays of equal length."""

    centre_ev: np.ndarray
    area: np.ndarray
    gauss_fwhm_ev: np.ndarray
    lorentz_fwhm_ev: np.ndarray
    level: tuple[str, ...]  # core level of each line (shake-ups count to their level)
    tail: np.ndarray | None = None  # share of each line's area in its high-BE tail (None: none)

    @property
    def fwhm_ev(self) -> np.ndarray:
        """Total FWHM of each line's Voigt (Olivero & Longbothum 1977)."""
        g, lz = self.gauss_fwhm_ev, self.lorentz_fwhm_ev
        return 0.5346 * lz + np.sqrt(0.2166 * lz**2 + g**2)


def voigt_gaussian_fwhm(total_fwhm: float, lorentz_fwhm: float) -> float:
    """Gaussian FWHM giving a Voigt of the requested total FWHM (Olivero & Longbothum 1977)."""
    return math.sqrt((total_fwhm - 0.5346 * lorentz_fwhm) ** 2 - 0.2166 * lorentz_fwhm**2)


def polymer_lines(
    library: Library,
    polymer: Polymer,
    rng: np.random.Generator | None = None,
    jitter: Jitter = Jitter(),
    offsets_ev: dict[str, float] | None = None,
) -> Lines:
    """The lines of one polymer, with optional jitter drawn from rng; `offsets_ev` moves named
    environments by fixed amounts (the cross-renderer's library error)."""
    centre, area, gauss, lorentz, level, tail = [], [], [], [], [], []
    inst = library.instrument
    draw = rng is not None
    kept_shakeup = rng.uniform(1.0 - jitter.shakeup, 1.0) if draw and jitter.shakeup > 0 else 1.0
    for env, count in polymer.environments:
        lvl = env.level
        be, fwhm = env.be_ev + (offsets_ev or {}).get(env.name, 0.0), env.fwhm_ev
        if draw and jitter.be_ev > 0:
            be += rng.uniform(-jitter.be_ev, jitter.be_ev)
        if draw and jitter.width_scale != (1.0, 1.0):
            fwhm = lvl.lorentzian_fwhm_ev + (fwhm - lvl.lorentzian_fwhm_ev) * rng.uniform(*jitter.width_scale)
        hydrocarbon_tail = rng.uniform(0.0, jitter.tail) if draw and jitter.tail > 0 and env.hydrocarbon else 0.0
        total = count * lvl.cross_section_barn * inst.kinetic_energy_factor(be)
        if env.shakeup is not None:
            centre.append(be + env.shakeup.offset_ev)
            satellite = total * env.shakeup.fraction
            area.append(satellite * kept_shakeup)
            gauss.append(env.shakeup.fwhm_ev)
            lorentz.append(0.0)
            level.append(lvl.name)
            tail.append(0.0)
            total -= satellite
        g = voigt_gaussian_fwhm(fwhm, lvl.lorentzian_fwhm_ev)
        major = total / (1.0 + lvl.minor_ratio)
        components = [(be, major)] + ([(be + lvl.split_ev, total - major)] if lvl.split_ev else [])
        for c, a in components:
            centre.append(c)
            area.append(a)
            gauss.append(g)
            lorentz.append(lvl.lorentzian_fwhm_ev)
            level.append(lvl.name)
            tail.append(hydrocarbon_tail)
    tails = np.array(tail) if any(tail) else None
    return Lines(np.array(centre), np.array(area), np.array(gauss), np.array(lorentz), tuple(level), tails)


def band_limit(min_gauss_fwhm_ev: float) -> int:
    """Number of rfft bins that hold every Voigt line with at least this Gaussian FWHM."""
    sigma = min_gauss_fwhm_ev / FWHM_PER_SIGMA / GRID_STEP_EV  # in grid samples
    nu_max = math.sqrt(math.log(1.0 / BAND_TOLERANCE) / (2.0 * math.pi**2 * sigma**2))
    return min(FFT_SIZE // 2 + 1, math.ceil(nu_max * FFT_SIZE) + 1)


ALL_BINS = FFT_SIZE // 2 + 1  # the Lorentzian-rich families are not band-limited


def frequencies(n_bins: int) -> np.ndarray:
    """Frequencies in cycles per grid sample of the first n_bins rfft bins."""
    return np.arange(n_bins) / FFT_SIZE


def _profiles_on_grid(centre_ev: np.ndarray, fwhm_ev: np.ndarray, shape: str, parameter: float) -> np.ndarray:
    """(lines, FFT_SIZE) unit-area profiles of one family on the periodic grid at the given
    centres and total FWHMs; `parameter` is the Lorentzian share (GL) or the exponent (PVII)."""
    x = np.arange(FFT_SIZE)[None, :]
    x0 = ((centre_ev - GRID_START_EV) / GRID_STEP_EV)[:, None]
    d = (x - x0 + FFT_SIZE / 2) % FFT_SIZE - FFT_SIZE / 2  # periodic distance in samples
    u = (2.0 * d / (fwhm_ev / GRID_STEP_EV)[:, None]) ** 2  # 1 at the half-maximum points
    if shape == "gl_sum":  # area shares: (1 - m) Gaussian + m Lorentzian of the same FWHM
        gauss, lorentz = np.exp(-math.log(2.0) * u), 1.0 / (1.0 + u)
        profile = (1 - parameter) * gauss / gauss.sum(1, keepdims=True) + parameter * lorentz / lorentz.sum(
            1, keepdims=True
        )
    elif shape == "gl_product":
        profile = np.exp(-math.log(2.0) * (1 - parameter) * u) / (1.0 + parameter * u)
    elif shape == "pearson7":
        profile = (1.0 + (2.0 ** (1.0 / parameter) - 1.0) * u) ** -parameter
    else:
        raise ValueError(f"unknown line shape {shape!r}; choose from {LINESHAPES}")
    return profile / profile.sum(axis=1, keepdims=True)


def render_fourier(lines: Lines, n_bins: int, shape: str = "voigt", parameter: float = 0.0) -> np.ndarray:
    """rfft coefficients (complex128, n_bins) of the lines sampled on the periodic grid, in one
    of LINESHAPES (shake-up satellites, Lorentzian width 0, stay Gaussian), tails included."""
    nu = frequencies(n_bins)[None, :]
    x0 = ((lines.centre_ev - GRID_START_EV) / GRID_STEP_EV)[:, None]
    sigma = (lines.gauss_fwhm_ev / FWHM_PER_SIGMA / GRID_STEP_EV)[:, None]
    gamma = (lines.lorentz_fwhm_ev / 2.0 / GRID_STEP_EV)[:, None]
    per_line = np.exp(-2.0 * math.pi**2 * sigma**2 * nu**2 - 2.0 * math.pi * gamma * nu) * np.exp(
        -2j * math.pi * nu * x0
    )
    if shape != "voigt":
        main = lines.lorentz_fwhm_ev > 0
        profiles = _profiles_on_grid(lines.centre_ev[main], lines.fwhm_ev[main], shape, parameter)
        per_line[main] = scipy.fft.rfft(profiles, axis=1)[:, :n_bins]
    if lines.tail is not None:
        tau = TAIL_DECAY_EV / GRID_STEP_EV
        per_line *= (1.0 - lines.tail[:, None]) + lines.tail[:, None] / (1.0 + 2j * math.pi * nu * tau)
    return (lines.area[:, None] * per_line).sum(axis=0)


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


def describe_library(library: Library, polymers: bool = False, look_alike_pairs: int = 0) -> str:
    """The `xpstream library` report: polymers per label, optionally every polymer with its labels
    and the closest look-alike pairs."""
    from xpstream.contract import LABELS

    counts = library.label_counts()
    lines = [
        f"{len(library.polymers)} polymers, {len(library.environments)} environments, {len(library.levels)} levels"
    ]
    lines += [f"{'label':24s} {'polymers':>8s}"] + [f"{label.display:24s} {counts[label.name]:8d}" for label in LABELS]
    if polymers:
        lines += [""] + [f"{p.abbr:12s} {p.name:60s} {', '.join(p.labels)}" for p in library.polymers]
    if look_alike_pairs:
        lines += ["", f"{'L1':>6s}  {'polymer':12s} {'polymer':12s} labels that differ"]
        lines += [
            f"{distance:6.3f}  {a.abbr:12s} {b.abbr:12s} {', '.join(differ)}"
            for distance, a, b, differ in look_alikes(library, look_alike_pairs)
        ]
    return "\n".join(lines)
