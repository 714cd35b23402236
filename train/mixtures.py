"""Mixture generator: the published synthetic-mixing protocol, vectorised over a batch.

Per spectrum (arXiv 2603.05350, section "Synthetic mixing"):
- 2-4 polymers drawn with replacement, weights U(0, 1) normalised to sum 1;
  labels are the union of the components' labels;
- Gaussian broadening with sigma ~ HalfNormal(scale 0.2 eV);
- one uniform shift in [-S, +S] eV for the whole spectrum (positive = peaks move to
  higher binding energy);
- clip negatives and re-normalise.
Options beyond the paper: per-epoch jittered templates (binding energy and width), Poisson
counting noise at a chosen count level, residual background left by imperfect Shirley
subtraction, adventitious carbon (a label-free contamination layer, a random share of the
area), and acquisition plans (`xpstream.train.acquisition`): "full" records the whole
grid (the paper), "regions" the regions of the elements present, "random" draws a realistic
plan per spectrum (subsets, extra regions, surveys at survey resolution); the grid is zero
outside what was recorded, and the batch says what was.

Weights multiply the normalised base spectra, so a weight is a fraction of the mixture's
spectral area. Everything is deterministic under a seed: chunk i of epoch e draws from
numpy.random.default_rng([seed, e, i]), whatever the number of worker threads.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.sparse

from xpstream.contract import (
    GRID_SIZE,
    GRID_START_EV,
    GRID_STEP_EV,
    GRID_STOP_EV,
    NUM_LABELS,
    labels_to_multihot,
)
from xpstream.train.acquisition import LEVELS, draw_plans, measured_mask, window_slices
from xpstream.train.library import Library, LibraryError
from xpstream.train.simulate import (
    Jitter,
    band_limit,
    frequencies,
    polymer_lines,
    render_fourier,
    to_spectra,
)

MAX_COMPONENTS = 4
# A line must keep this many eV inside the grid at the largest shift.
EDGE_MARGIN_EV = 3.0
NOISE_POOL = 1 << 22
ACQUISITIONS = ("full", "regions", "random")
SURVEY_EXTRA_SIGMA_EV = (0.5, 0.9)  # survey resolution: extra Gaussian broadening, uniform
SURVEY_COUNTS_FACTOR = 0.1  # a survey spends a tenth of a region scan's counts per line


class SettingsError(ValueError):
    """Generator settings that cannot produce valid spectra; the message says which."""


@dataclass(frozen=True)
class MixtureSettings:
    """Everything that defines a synthetic data set (stored with it)."""

    max_shift_ev: float = 3.0
    min_components: int = 2
    max_components: int = 4
    broadening_scale_ev: float = 0.2  # HalfNormal scale of the broadening sigma
    be_jitter_ev: float = 0.0
    width_jitter: float = 0.0
    shakeup_jitter: float = 0.0  # shake-up area kept: U(1 - s, 1) of the sourced fraction
    adventitious_carbon: float = 0.0  # share of the area from adventitious carbon: U(0, a)
    variants: int = 8  # jittered templates per polymer and epoch (1 when no jitter)
    noise_counts: float = 0.0  # total counts for Poisson noise; 0 = noise-free
    residual_background: float = 0.0  # std of the residual Shirley step, fraction of region area
    acquisition: str = "full"  # one of ACQUISITIONS
    polymers: tuple[str, ...] = field(default=())  # names or abbreviations; () = whole library

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Batch:
    """A batch of synthetic spectra with everything known about them."""

    spectra: np.ndarray  # (N, GRID_SIZE) float32, rows sum to 1
    labels: np.ndarray  # (N, NUM_LABELS) uint8
    shift_ev: np.ndarray  # (N,) float32, the applied shift
    broadening_ev: np.ndarray  # (N,) float32, Gaussian sigma applied
    weights: np.ndarray  # (N, MAX_COMPONENTS) float32, 0 for unused slots
    components: np.ndarray  # (N, MAX_COMPONENTS) int16, polymer index or -1
    recorded: np.ndarray  # (N, len(LEVELS)) uint8, the core-level regions recorded
    whole: np.ndarray  # (N,) uint8, 1 = the whole grid recorded (full or survey)

    def measured(self) -> np.ndarray:
        """The measured-region mask (N, GRID_SIZE) float32, the model's second input."""
        return measured_mask(self.recorded, self.whole)

    @staticmethod
    def concatenate(batches: list[Batch]) -> Batch:
        return Batch(*(np.concatenate([getattr(b, f) for b in batches]) for f in Batch.__dataclass_fields__))


class MixtureGenerator:
    """Draws batches of mixtures; call `new_epoch` to redraw the jittered templates."""

    def __init__(self, library: Library, settings: MixtureSettings = MixtureSettings(), seed: int = 0):
        self.library = library
        self.settings = settings
        self.seed = int(seed)
        self.polymers = tuple(library.polymer(n) for n in settings.polymers) if settings.polymers else library.polymers
        self.jitter = _validate(library, settings, self.polymers)
        self.jittered = bool(settings.be_jitter_ev or settings.width_jitter or settings.shakeup_jitter)
        self.n_variants = settings.variants if self.jittered else 1
        self.polymer_labels = np.stack([labels_to_multihot(p.labels) for p in self.polymers])
        self.polymer_levels = np.array([[name in p.levels for name in LEVELS] for p in self.polymers], dtype=np.float32)
        self.window_slices = window_slices()
        edges = sorted((w.start, w.stop) for w in self.window_slices)
        starts = [0] + [stop for _, stop in edges]
        stops = [start for start, _ in edges] + [GRID_SIZE]
        self.gap_slices = [slice(a, b) for a, b in zip(starts, stops, strict=True) if b > a]
        min_gauss = min(float(polymer_lines(library, p).gauss_fwhm_ev.min()) for p in self.polymers) * (
            1.0 - settings.width_jitter
        )
        self.n_bins = band_limit(min_gauss)
        self.nu = frequencies(self.n_bins).astype(np.float32)
        self.adventitious_template = None  # fixed lines, unit area: rendered once
        if settings.adventitious_carbon:
            coeffs = render_fourier(polymer_lines(library, library.adventitious), self.n_bins)
            self.adventitious_template = coeffs / coeffs[0].real
        self.new_epoch(0)
        rendered = to_spectra(self.templates[:: self.n_variants].copy())
        # share of each polymer's spectral area in each level's window ("the minor element")
        self.polymer_level_area = np.stack([rendered[:, w].sum(axis=1) for w in self.window_slices], axis=1)

    def new_epoch(self, epoch: int) -> None:
        """Redraw the jittered templates and the noise pool for this epoch."""
        self.epoch = int(epoch)
        rng = np.random.default_rng([self.seed, self.epoch, 2**31])
        templates = np.empty((len(self.polymers) * self.n_variants, self.n_bins), dtype=np.complex64)
        for p_index, polymer in enumerate(self.polymers):
            for v in range(self.n_variants):
                lines = polymer_lines(self.library, polymer, rng if self.jittered else None, self.jitter)
                coeffs = render_fourier(lines, self.n_bins)
                templates[p_index * self.n_variants + v] = coeffs / coeffs[0].real  # unit area
        self.templates = templates
        # Standard normals scaled by 1/sqrt(counts): sqrt(x) * pool is the counting noise of x.
        counts = self.settings.noise_counts
        self.noise_pool = (
            rng.standard_normal(NOISE_POOL, dtype=np.float32) / np.float32(math.sqrt(counts)) if counts else None
        )

    # -- one chunk ------------------------------------------------------------------------
    def batch(self, n: int, rng: np.random.Generator) -> Batch:
        """Draw n mixtures with the given random generator."""
        s = self.settings
        n_comp = rng.integers(s.min_components, s.max_components + 1, size=n)
        slot_used = np.arange(MAX_COMPONENTS)[None, :] < n_comp[:, None]
        components = rng.integers(0, len(self.polymers), size=(n, MAX_COMPONENTS))
        variant = rng.integers(0, self.n_variants, size=(n, MAX_COMPONENTS))
        weights = rng.random((n, MAX_COMPONENTS)) * slot_used
        weights = (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)
        adventitious = None
        if s.adventitious_carbon:  # its share of the area; the polymers share the rest
            adventitious = rng.uniform(0.0, s.adventitious_carbon, size=(n, 1)).astype(np.float32)
            weights *= 1.0 - adventitious
        components = np.where(slot_used, components, -1).astype(np.int16)
        shift = rng.uniform(-s.max_shift_ev, s.max_shift_ev, size=n).astype(np.float32)
        sigma = np.abs(rng.normal(0.0, s.broadening_scale_ev, size=n)).astype(np.float32)
        labels = np.zeros((n, NUM_LABELS), dtype=np.uint8)
        present = np.zeros((n, len(LEVELS)), dtype=np.float32)
        level_areas = np.zeros((n, len(LEVELS)), dtype=np.float32)
        for k in range(MAX_COMPONENTS):
            used = slot_used[:, k]
            labels[used] |= self.polymer_labels[components[used, k]]
            present[used] = np.maximum(present[used], self.polymer_levels[components[used, k]])
            level_areas[used] += weights[used, k : k + 1] * self.polymer_level_area[components[used, k]]
        if s.acquisition == "random":
            recorded, whole, survey = draw_plans(present, level_areas, rng)
            survey_sigma = rng.uniform(*SURVEY_EXTRA_SIGMA_EV, size=n).astype(np.float32)
            sigma = np.where(survey, np.hypot(sigma, survey_sigma), sigma).astype(np.float32)
        else:
            full = s.acquisition == "full"
            recorded = np.ones_like(present, dtype=bool) if full else present.astype(bool)
            whole, survey = np.full(n, full), np.zeros(n, dtype=bool)

        rows = np.repeat(np.arange(n), MAX_COMPONENTS)
        cols = (np.maximum(components, 0) * self.n_variants + variant).ravel()
        mixing = scipy.sparse.csr_matrix(
            (weights.ravel(), (rows, cols)), shape=(n, self.templates.shape[0]), dtype=np.float32
        )
        coeffs = mixing @ self.templates
        if adventitious is not None:
            coeffs += adventitious * self.adventitious_template
        coeffs *= self._shift_and_broaden(shift, sigma)
        spectra = to_spectra(coeffs)
        if s.acquisition != "full":
            self._keep_recorded_regions(spectra, recorded, whole)
        if s.residual_background:
            self._add_residual_background(spectra, recorded & present.astype(bool), rng)
        _normalise_rows(spectra)
        if s.noise_counts:
            self._add_counting_noise(spectra, survey, rng)
            _normalise_rows(spectra)
        recorded, whole = recorded.astype(np.uint8), whole.astype(np.uint8)
        return Batch(spectra, labels, shift, sigma, weights, components, recorded, whole)

    def _shift_and_broaden(self, shift_ev: np.ndarray, sigma_ev: np.ndarray) -> np.ndarray:
        """Fourier factor exp(-2 pi^2 sigma^2 nu^2) * exp(-2 pi i nu shift), complex64 (N, bins)."""
        nu = self.nu
        shift = (shift_ev / GRID_STEP_EV)[:, None]
        sigma = (sigma_ev / GRID_STEP_EV)[:, None]
        envelope = np.exp(np.float32(-2.0 * math.pi**2) * sigma**2 * (nu * nu))
        angle = np.float32(2.0 * math.pi) * shift * nu
        factor = np.empty(envelope.shape, dtype=np.complex64)
        parts = factor.view(np.float32).reshape(*envelope.shape, 2)
        np.multiply(envelope, np.cos(angle), out=parts[..., 0])
        np.multiply(envelope, np.sin(angle), out=parts[..., 1])
        np.negative(parts[..., 1], out=parts[..., 1])
        return factor

    def _keep_recorded_regions(self, spectra, recorded, whole) -> None:
        """Zero everything outside the recorded regions (rows with `whole` keep the grid)."""
        keep = (recorded | whole[:, None]).astype(np.float32)
        for j, window in enumerate(self.window_slices):
            spectra[:, window] *= keep[:, j : j + 1]
        outside = whole.astype(np.float32)[:, None]
        for gap in self.gap_slices:
            spectra[:, gap] *= outside

    def _add_residual_background(self, spectra, levels, rng) -> None:
        """Add r x a Shirley-shaped step in each recorded region, r ~ N(0, std) per spectrum.

        The step is the running integral of the region from its low-BE end (Shirley's shape);
        its mean height is r x region area / 2 per channel-width of the region.
        """
        r = rng.normal(0.0, self.settings.residual_background, size=len(spectra)).astype(np.float32)
        for j, window in enumerate(self.window_slices):
            scale = (r * levels[:, j] / (window.stop - window.start))[:, None]
            if not scale.any():
                continue
            region = spectra[:, window]  # a view
            region += np.cumsum(region, axis=1) * scale
            np.maximum(region, 0.0, out=region)

    def _add_counting_noise(self, spectra, survey, rng) -> None:
        """Poisson noise (Gaussian approximation) for noise_counts counts in the spectrum
        (SURVEY_COUNTS_FACTOR of them for survey rows).

        Every line lies inside a region window, so only windows are touched. Each row reads
        consecutive normals from the epoch's pool at a random offset.
        """
        offsets = rng.integers(0, NOISE_POOL - GRID_SIZE, size=(len(spectra), 1))
        scale = np.where(survey, np.float32(SURVEY_COUNTS_FACTOR**-0.5), np.float32(1.0))[:, None]
        for window in self.window_slices:
            region = spectra[:, window]
            noise = self.noise_pool[offsets + np.arange(window.start, window.stop)]
            noise *= np.sqrt(region) * scale
            region += noise
            np.maximum(region, 0.0, out=region)

    def iter_chunks(self, n: int, chunk: int = 2048, workers: int = 2):
        """Yield n spectra of the current epoch as chunks, deterministic under the seed.

        Chunk i always draws from default_rng([seed, epoch, i]), so the data do not depend on
        the number of worker threads.
        """
        starts = range(0, n, chunk)

        def work(i):
            rng = np.random.default_rng([self.seed, self.epoch, i])
            return self.batch(min(chunk, n - starts[i]), rng)

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            yield from pool.map(work, range(len(starts)))

    def generate(self, n: int, chunk: int = 2048, workers: int = 2) -> Batch:
        """All n spectra of `iter_chunks` in one batch."""
        return Batch.concatenate(list(self.iter_chunks(n, chunk, workers)))


def _normalise_rows(spectra: np.ndarray) -> None:
    total = spectra.sum(axis=1, keepdims=True)
    spectra *= np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)


def _validate(library: Library, s: MixtureSettings, polymers) -> Jitter:
    """Check the settings against the library; raise SettingsError naming the problem."""
    if not (1 <= s.min_components <= s.max_components <= MAX_COMPONENTS):
        raise SettingsError(
            f"components must satisfy 1 <= min ({s.min_components}) <= max ({s.max_components}) <= {MAX_COMPONENTS}"
        )
    for name in ("max_shift_ev", "broadening_scale_ev", "noise_counts", "residual_background"):
        value = getattr(s, name)
        if not math.isfinite(value) or value < 0:
            raise SettingsError(f"{name} must be a finite number >= 0, got {value}")
    if not 0.0 <= s.adventitious_carbon < 1.0:
        raise SettingsError(f"adventitious_carbon must lie in [0, 1), got {s.adventitious_carbon}")
    if s.adventitious_carbon and library.adventitious is None:
        raise SettingsError("adventitious_carbon needs an [adventitious_carbon] table in the physics file")
    if s.acquisition not in ACQUISITIONS:
        raise SettingsError(f"acquisition must be one of {ACQUISITIONS}, got {s.acquisition!r}")
    if s.variants < 1:
        raise SettingsError(f"variants must be >= 1, got {s.variants}")
    try:
        jitter = Jitter(s.be_jitter_ev, s.width_jitter, s.shakeup_jitter)
    except ValueError as err:
        raise SettingsError(str(err)) from None
    (low_name, low), (high_name, high) = library.extreme_lines_ev()
    limit = min(low - GRID_START_EV, GRID_STOP_EV - high) - EDGE_MARGIN_EV
    if s.max_shift_ev > limit:
        worst = high_name if GRID_STOP_EV - high < low - GRID_START_EV else low_name
        raise SettingsError(
            f"a shift of +-{s.max_shift_ev} eV pushes environment {worst!r} off the "
            f"{GRID_START_EV}-{GRID_STOP_EV} eV grid; the largest allowed is {limit:.2f} eV"
        )
    if not polymers:
        raise LibraryError("no polymers selected")
    return jitter
