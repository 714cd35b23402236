"""Mixture generator: the published synthetic-mixing protocol, vectorised over a batch, and the
realism the library does not know (domain randomisation).

Per spectrum (arXiv 2603.05350, section "Synthetic mixing"):
- 2-4 polymers drawn with replacement, weights U(0, 1) normalised to sum 1;
  labels are the union of the components' labels;
- Gaussian broadening with sigma ~ HalfNormal(scale 0.2 eV);
- one uniform shift in [-S, +S] eV for the whole spectrum (positive = peaks move to
  higher binding energy);
- clip negatives and re-normalise.

Beyond the paper, each option off by default (`xpstream.train.settings.MixtureSettings`, where
each is described): what the library does not know about the lines (binding-energy and width
scatter, line-shape family, hydrocarbon tail, shake-up area), the instrument (differential
charging and its broadening, kinetic-energy response, counting noise; `xpstream.train.measurement`), the surface
as measured (adventitious carbon, oxidation, silicone as label-free layers from physics.toml;
residual backgrounds; cut window tails), acquisition plans (`xpstream.train.acquisition`), the
labels physics can settle (`label_rule="physics"`: traces are `Batch.ambiguous`, alkane counts
only above adventitious carbon) and every spectrum's composition (`Batch.group_fraction`).

Weights multiply the unit-area templates, so a weight is a fraction of the mixture's spectral
area. Everything is deterministic under a seed: chunk i of epoch e draws from
numpy.random.default_rng([seed, e, i]), whatever the number of worker threads.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from xpstream.contract import (
    GRID_SIZE,
    GRID_STEP_EV,
    LABEL_NAMES,
    NUM_LABELS,
    energy_grid,
    labels_to_multihot,
)
from xpstream.train.acquisition import CARBON, LEVELS, draw_plans, measured_mask, window_slices
from xpstream.train.library import Library, Polymer
from xpstream.train.measurement import (
    add_counting_noise,
    add_residual_background,
    charge_levels_apart,
    cut_window_tails,
    keep_recorded_regions,
    normalise_rows,
)
from xpstream.train.settings import (
    ADVENTITIOUS_SHARE_OF_SPECTRA,
    CHARGING_BROADENED_SHARE_OF_SPECTRA,
    MAX_COMPONENTS,
    OXIDATION,
    SILICONE_SHARE_OF_SPECTRA,
    MixtureSettings,
    select_polymers,
    validate,
)
from xpstream.train.simulate import (
    ALL_BINS,
    FFT_SIZE,
    LORENTZIAN_SHARE,
    PEARSON_EXPONENT,
    band_limit,
    frequencies,
    polymer_lines,
    render_fourier,
    to_spectra,
)

NOISE_POOL = 1 << 22
PHASE_BLOCK = 64  # bins per block of the shift's phase factor
SURVEY_EXTRA_SIGMA_EV = (0.5, 0.9)  # survey resolution: extra Gaussian broadening, uniform
LIBRARY_OFFSET_SEED = 20_261_202  # the cross-renderer's fixed library error is always the same


@dataclass
class Batch:
    """A batch of synthetic spectra with everything known about them."""

    spectra: np.ndarray  # (N, GRID_SIZE) float32, rows sum to 1
    labels: np.ndarray  # (N, NUM_LABELS) uint8
    shift_ev: np.ndarray  # (N,) float32, the applied shift
    broadening_ev: np.ndarray  # (N,) float32, Gaussian sigma applied
    weights: np.ndarray  # (N, MAX_COMPONENTS) float32, 0 for unused slots; 1 - sum: contamination
    components: np.ndarray  # (N, MAX_COMPONENTS) int16, polymer index or -1
    recorded: np.ndarray  # (N, len(LEVELS)) uint8, the core-level regions recorded
    whole: np.ndarray  # (N,) uint8, 1 = the whole grid recorded (full or survey)
    group_fraction: np.ndarray  # (N, NUM_LABELS) float32, share of the sample's non-H atoms per group
    ambiguous: np.ndarray  # (N, NUM_LABELS) uint8, 1 = neither required nor wrong (traces)
    atomic_fraction: np.ndarray  # (N, len(LEVELS)) float32, share of all non-H atoms per level's element

    def measured(self) -> np.ndarray:
        """The measured-region mask (N, GRID_SIZE) float32, the model's second input."""
        return measured_mask(self.recorded, self.whole)

    @staticmethod
    def concatenate(batches: list[Batch]) -> Batch:
        return Batch(*(np.concatenate([getattr(b, f) for b in batches]) for f in Batch.__dataclass_fields__))


@dataclass(frozen=True)
class Composition:
    """Per-template constants the labels and compositions are computed from (library units)."""

    area: np.ndarray  # (T,) total line area of one repeat unit
    atoms: np.ndarray  # (T,) non-H atoms of one repeat unit
    group_atoms: np.ndarray  # (T, NUM_LABELS) atoms in each group's environments
    element_atoms: np.ndarray  # (T, L) atoms of each level's element
    level_share: np.ndarray  # (T, L) share of the area in each core level
    alkane_carbon_share: np.ndarray  # (T,) share of the area in alkane C 1s lines

    @staticmethod
    def of(library: Library, polymers) -> Composition:
        rows = []
        for polymer in polymers:
            lines = polymer_lines(library, polymer)
            total = lines.area.sum()
            level_share = [lines.area[[lv == level for lv in lines.level]].sum() / total for level in LEVELS]
            alkane = sum(
                count * env.level.cross_section_barn * library.instrument.kinetic_energy_factor(env.be_ev)
                for env, count in polymer.environments
                if env.group == "alkane"
            )
            elements = [sum(n for env, n in polymer.environments if env.level.name == level) for level in LEVELS]
            rows.append((total, polymer.atoms, polymer.group_atoms(), elements, level_share, alkane / total))
        columns = list(zip(*rows, strict=True))
        return Composition(*(np.asarray(c, dtype=np.float64) for c in columns))


class MixtureGenerator:
    """Draws batches of mixtures; call `new_epoch` to redraw the jittered templates."""

    def __init__(self, library: Library, settings: MixtureSettings | None = None, seed: int = 0):
        self.library = library
        self.settings = settings = settings or MixtureSettings()
        self.seed = int(seed)
        self.polymers = select_polymers(library, settings)
        self.jitter = validate(library, settings, self.polymers)
        s = settings
        self.contaminants = self._contaminants()
        self.entries = self.polymers + tuple(self.contaminants.values())  # the template bank's rows
        self.families = s.lineshapes
        self.jittered = bool(
            s.be_jitter_ev or s.width_scale != (1.0, 1.0) or s.shakeup_jitter or s.hydrocarbon_tail
        ) or any(f != "voigt" for f in self.families)
        self.n_variants = s.variants if self.jittered else 1
        self.polymer_labels = np.stack([labels_to_multihot(p.labels) for p in self.polymers])
        self.polymer_levels = np.array([[name in p.levels for name in LEVELS] for p in self.polymers], dtype=np.float32)
        self.composition = Composition.of(library, self.entries)
        self.window_slices = window_slices()
        edges = sorted((w.start, w.stop) for w in self.window_slices)
        starts = [0] + [stop for _, stop in edges]
        stops = [start for start, _ in edges] + [GRID_SIZE]
        self.gap_slices = [slice(a, b) for a, b in zip(starts, stops, strict=True) if b > a]
        if self.families == ("voigt",):
            min_gauss = min(float(polymer_lines(library, p).gauss_fwhm_ev.min()) for p in self.entries)
            self.n_bins = band_limit(min_gauss * s.width_scale[0])
        else:
            self.n_bins = ALL_BINS
        self.nu = frequencies(self.n_bins).astype(np.float32)
        kinetic = library.instrument.photon_energy_ev - energy_grid()
        self.log_kinetic_ratio = np.log(kinetic / (library.instrument.photon_energy_ev - 285.0)).astype(np.float32)
        offsets = None
        if s.library_offset_ev:
            rng = np.random.default_rng(LIBRARY_OFFSET_SEED)
            offsets = {name: rng.uniform(-s.library_offset_ev, s.library_offset_ev) for name in library.environments}
        self.offsets_ev = offsets
        self.new_epoch(0)

    def _contaminants(self) -> dict[str, Polymer]:
        """The label-free layers the settings ask for, by name."""
        s, lib = self.settings, self.library
        wanted = {}
        if s.adventitious_carbon:
            wanted["adventitious"] = lib.adventitious
        if s.oxidation:
            wanted.update({name: lib.contaminants[name] for name in OXIDATION})
        if s.silicone:
            wanted["silicone"] = lib.contaminants["silicone"]
        return wanted

    def template_index(self, entry: np.ndarray, family: np.ndarray, variant: np.ndarray) -> np.ndarray:
        """Row of the template bank of (entry, line-shape family, variant)."""
        return (entry * len(self.families) + family) * self.n_variants + variant

    def new_epoch(self, epoch: int) -> None:
        """Redraw the jittered templates and the noise pool for this epoch."""
        self.epoch = int(epoch)
        rng = np.random.default_rng([self.seed, self.epoch, 2**31])
        n_families = len(self.families)
        templates = np.empty((len(self.entries) * n_families * self.n_variants, self.n_bins), dtype=np.complex64)
        for e, entry in enumerate(self.entries):
            for f, family in enumerate(self.families):
                for v in range(self.n_variants):
                    lines = polymer_lines(
                        self.library, entry, rng if self.jittered else None, self.jitter, self.offsets_ev
                    )
                    parameter = 0.0
                    if family in ("gl_sum", "gl_product"):
                        parameter = rng.uniform(*LORENTZIAN_SHARE)
                    elif family == "pearson7":
                        parameter = rng.uniform(*PEARSON_EXPONENT)
                    coeffs = render_fourier(lines, self.n_bins, family, parameter)
                    templates[self.template_index(e, f, v)] = coeffs / coeffs[0].real  # unit area
        self.templates = templates
        # Standard normals: sqrt(x / counts) * pool is the counting noise of x at `counts`.
        self.noise_pool = rng.standard_normal(NOISE_POOL, dtype=np.float32) if self.settings.noise_counts else None

    # -- one chunk ------------------------------------------------------------------------
    def batch(self, n: int, rng: np.random.Generator) -> Batch:
        """Draw n mixtures with the given random generator."""
        s = self.settings
        n_comp = rng.integers(s.min_components, s.max_components + 1, size=n)
        slot_used = np.arange(MAX_COMPONENTS)[None, :] < n_comp[:, None]
        components = rng.integers(0, len(self.polymers), size=(n, MAX_COMPONENTS))
        variant = rng.integers(0, self.n_variants, size=(n, MAX_COMPONENTS))
        family = rng.integers(0, len(self.families), size=n)
        weights = rng.random((n, MAX_COMPONENTS)) * slot_used
        weights = weights / weights.sum(axis=1, keepdims=True)
        components = np.where(slot_used, components, -1).astype(np.int16)
        safe = np.maximum(components, 0)
        contamination = self._contamination_weights(weights, safe, rng)  # (n, contaminants), same units
        total = 1.0 + contamination.sum(axis=1, keepdims=True)
        weights, contamination = (weights / total).astype(np.float32), (contamination / total).astype(np.float32)
        shift = rng.uniform(-s.max_shift_ev, s.max_shift_ev, size=n).astype(np.float32)
        sigma = np.abs(rng.normal(0.0, s.broadening_scale_ev, size=n)).astype(np.float32)
        if s.charging_broadening_ev:
            uneven = rng.random(n) < CHARGING_BROADENED_SHARE_OF_SPECTRA
            extra = rng.uniform(0.0, s.charging_broadening_ev, size=n)
            sigma = np.where(uneven, np.hypot(sigma, extra), sigma).astype(np.float32)
        group_fraction, labels, ambiguous = self._labels(weights, contamination, components)
        atomic_fraction = self._atomic_fraction(weights, contamination, components)
        present = np.zeros((n, len(LEVELS)), dtype=np.float32)
        level_areas = np.zeros((n, len(LEVELS)), dtype=np.float32)
        for k in range(MAX_COMPONENTS):
            used = slot_used[:, k]
            present[used] = np.maximum(present[used], self.polymer_levels[components[used, k]])
            level_areas[used] += weights[used, k : k + 1] * self.composition.level_share[components[used, k]]
        if s.acquisition == "random":
            recorded, whole, survey = draw_plans(present, level_areas, rng)
            survey_sigma = rng.uniform(*SURVEY_EXTRA_SIGMA_EV, size=n).astype(np.float32)
            sigma = np.where(survey, np.hypot(sigma, survey_sigma), sigma).astype(np.float32)
        else:
            full = s.acquisition == "full"
            recorded = np.ones_like(present, dtype=bool) if full else present.astype(bool)
            whole, survey = np.full(n, full), np.zeros(n, dtype=bool)

        rows = np.repeat(np.arange(n), MAX_COMPONENTS)
        cols = self.template_index(safe, family[:, None], variant).ravel()
        values = weights.ravel()
        if contamination.shape[1]:
            first = len(self.polymers)
            extra = np.arange(first, first + contamination.shape[1])[None, :]
            extra_variant = rng.integers(0, self.n_variants, size=contamination.shape)
            rows = np.concatenate([rows, np.repeat(np.arange(n), contamination.shape[1])])
            cols = np.concatenate([cols, self.template_index(extra, family[:, None], extra_variant).ravel()])
            values = np.concatenate([values, contamination.ravel()])
        mixing = scipy.sparse.csr_matrix((values, (rows, cols)), shape=(n, self.templates.shape[0]), dtype=np.float32)
        coeffs = mixing @ self.templates
        coeffs *= self._shift_and_broaden(shift, sigma)
        spectra = to_spectra(coeffs).astype(np.float32)
        if s.differential_charging_ev:
            charge_levels_apart(spectra, self.window_slices, s.differential_charging_ev, rng)
        if s.ke_exponent_scatter:
            exponent = rng.uniform(-s.ke_exponent_scatter, s.ke_exponent_scatter, size=(n, 1)).astype(np.float32)
            spectra *= np.exp(exponent * self.log_kinetic_ratio[None, :])
        if s.acquisition != "full":
            keep_recorded_regions(spectra, self.window_slices, self.gap_slices, recorded, whole)
        regions = recorded & present.astype(bool) & ~whole[:, None]
        if s.tail_cut:
            cut_window_tails(spectra, self.window_slices, regions, s.tail_cut, rng)
        if s.residual_background or s.linear_background:
            levels = recorded & present.astype(bool)
            add_residual_background(
                spectra, self.window_slices, levels, s.residual_background, s.linear_background, rng
            )
        normalise_rows(spectra)
        if s.noise_counts:
            counts = (s.noise_counts, s.noise_counts_max)
            add_counting_noise(spectra, self.window_slices, self.noise_pool, survey, *counts, rng)
            normalise_rows(spectra)
        recorded, whole = recorded.astype(np.uint8), whole.astype(np.uint8)
        return Batch(
            spectra,
            labels,
            shift,
            sigma,
            weights,
            components,
            recorded,
            whole,
            group_fraction,
            ambiguous,
            atomic_fraction,
        )

    def _atomic_fraction(self, weights, contamination, components) -> np.ndarray:
        """(n, L) share of all non-H atoms (contamination included: XPS sees it) per element."""
        comp = self.composition
        safe = np.maximum(components, 0)
        units = np.where(components >= 0, weights / comp.area[safe], 0.0)
        atoms = (units[:, :, None] * comp.element_atoms[safe]).sum(axis=1)
        first = len(self.polymers)
        if contamination.shape[1]:
            layers = slice(first, first + contamination.shape[1])
            atoms += (contamination / comp.area[layers]) @ comp.element_atoms[layers]
        return (atoms / atoms.sum(axis=1, keepdims=True)).astype(np.float32)

    def _contamination_weights(self, weights, components, rng) -> np.ndarray:
        """Area weights (n, contaminants) of the label-free layers, in the units of the sample's
        weights (which sum to 1): adventitious carbon and oxidation as shares of the C 1s area,
        silicone as a share of the whole area."""
        s, n = self.settings, len(weights)
        names = list(self.contaminants)
        out = np.zeros((n, len(names)))
        if not names:
            return out
        carbon = self.composition.level_share[:, CARBON]
        sample_carbon = (weights * carbon[components]).sum(axis=1)  # C 1s area of the sample
        first = len(self.polymers)
        c1s_share = np.zeros((n, len(names)))  # the target share of the final C 1s area
        if s.adventitious_carbon:
            dirty = rng.random(n) < ADVENTITIOUS_SHARE_OF_SPECTRA
            c1s_share[:, names.index("adventitious")] = dirty * rng.uniform(0.0, s.adventitious_carbon, size=n)
        if s.oxidation:
            split = rng.dirichlet(np.ones(len(OXIDATION)), size=n)
            total = rng.uniform(0.0, s.oxidation, size=(n, 1))
            for j, name in enumerate(OXIDATION):
                c1s_share[:, names.index(name)] = (total * split)[:, j]
        # a layer with C 1s share f of the final C 1s area: weight f * C_sample / ((1 - F) c_layer)
        layer_carbon = carbon[first + np.arange(len(names))]
        scale = sample_carbon / (1.0 - c1s_share.sum(axis=1))
        out = c1s_share * scale[:, None] / np.where(layer_carbon > 0, layer_carbon, 1.0)[None, :]
        if s.silicone:
            dirty = rng.random(n) < SILICONE_SHARE_OF_SPECTRA
            share = dirty * rng.uniform(0.0, s.silicone, size=n)
            out[:, names.index("silicone")] = share / (1.0 - share) * (1.0 + out.sum(axis=1))
        return out

    def _labels(self, weights, contamination, components):
        """(group fraction, labels, ambiguous) of a batch: the share of the sample's non-H atoms
        in each group; labels by the settings' rule; entries neither required nor wrong."""
        comp = self.composition
        used = components >= 0
        safe = np.maximum(components, 0)
        units = np.where(used, weights / comp.area[safe], 0.0)  # repeat units of each component
        atoms = (units[:, :, None] * comp.group_atoms[safe]).sum(axis=1)
        group_fraction = (atoms / (units * comp.atoms[safe]).sum(axis=1, keepdims=True)).astype(np.float32)
        if self.settings.label_rule == "union":
            labels = np.zeros((len(weights), NUM_LABELS), dtype=np.uint8)
            for k in range(MAX_COMPONENTS):
                labels[used[:, k]] |= self.polymer_labels[components[used[:, k], k]]
            return group_fraction, labels, np.zeros_like(labels)
        rules = self.library.label_rules
        labels = group_fraction >= rules.detection_limit
        ambiguous = (group_fraction > 0) & ~labels
        # alkane: C-C/C-H carbon above what adventitious carbon alone explains
        carbon = comp.level_share[:, CARBON]
        first = len(self.polymers)
        all_carbon = (weights * carbon[safe] * used).sum(axis=1) + contamination @ carbon[first:]
        alkane_carbon = (weights * comp.alkane_carbon_share[safe] * used).sum(axis=1)
        alkane_share = np.divide(alkane_carbon, all_carbon, out=np.zeros_like(all_carbon), where=all_carbon > 0)
        alkane = LABEL_NAMES.index("alkane")
        labels[:, alkane] = alkane_share >= rules.alkane_min_carbon
        ambiguous[:, alkane] = (alkane_carbon > 0) & ~labels[:, alkane]
        return group_fraction, labels.astype(np.uint8), ambiguous.astype(np.uint8)

    def _shift_and_broaden(self, shift_ev: np.ndarray, sigma_ev: np.ndarray) -> np.ndarray:
        """Fourier factor exp(-2 pi^2 sigma^2 nu^2) * exp(-2 pi i nu shift), complex64 (N, bins).

        The phase of bin k = h + l (h a multiple of PHASE_BLOCK, l below it) is the product of
        the phases of h and l: two small complex exponentials per row and one multiplication per
        bin, instead of a sine and a cosine per bin."""
        n, bins = len(shift_ev), self.n_bins
        angle = (-2.0 * math.pi / FFT_SIZE) * (shift_ev.astype(np.float64) / GRID_STEP_EV)[:, None]
        low = np.exp(1j * angle * np.arange(PHASE_BLOCK)).astype(np.complex64)
        high = np.exp(1j * angle * np.arange(0, bins + PHASE_BLOCK, PHASE_BLOCK)).astype(np.complex64)
        phase = (high[:, :, None] * low[:, None, :]).reshape(n, -1)[:, :bins]
        sigma = (sigma_ev / GRID_STEP_EV)[:, None]
        phase *= np.exp(np.float32(-2.0 * math.pi**2) * sigma**2 * (self.nu * self.nu))
        return phase

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
