"""Mixture generator: the published synthetic-mixing protocol, vectorised over a batch, and the
realism the library does not know (domain randomisation).

Per spectrum (arXiv 2603.05350, section "Synthetic mixing"):
- 2-4 polymers drawn with replacement, weights U(0, 1) normalised to sum 1;
  labels are the union of the components' labels;
- Gaussian broadening with sigma ~ HalfNormal(scale 0.2 eV);
- one uniform shift in [-S, +S] eV for the whole spectrum (positive = peaks move to
  higher binding energy);
- clip negatives and re-normalise.

Beyond the paper, each option off by default (`MixtureSettings`):
- the lines as the library does not know them: per-environment binding-energy scatter (up to
  +-0.3 eV, the spread between labs, samples and references), per-line width scatter, the
  line-shape family drawn per spectrum (Voigt, Gaussian-Lorentzian sum and product), a
  high-binding-energy tail on hydrocarbon C 1s, shake-up satellites a background may eat;
- the instrument: differential charging (each core level moves by its own small extra shift),
  the kinetic-energy exponent of the area factor drawn per spectrum (element area ratios vary
  between instruments), Poisson counting noise over a range of count levels;
- the surface as measured: adventitious hydrocarbon in most spectra, trace oxidation and silicone
  (label-free layers from physics.toml), residual backgrounds (Shirley-shaped steps and linear
  residues of either sign), recorded windows that cut a line's far tail;
- acquisition plans (`xpstream.train.acquisition`): "full" records the whole grid (the paper),
  "regions" the regions of the elements present, "random" a realistic plan per spectrum;
- the labels physics can settle (`label_rule="physics"`, physics.toml [label_rules]): a group
  below the detection limit is neither required nor wrong (`Batch.ambiguous`), alkane counts
  only above what adventitious carbon explains;
- every spectrum carries its composition (`Batch.group_fraction`: the share of the sample's
  non-H atoms in each group's environments, contamination excluded).

Weights multiply the unit-area templates, so a weight is a fraction of the mixture's spectral
area. Everything is deterministic under a seed: chunk i of epoch e draws from
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
    LABEL_NAMES,
    NUM_LABELS,
    energy_grid,
    labels_to_multihot,
)
from xpstream.train.acquisition import CARBON, LEVELS, draw_plans, measured_mask, window_slices
from xpstream.train.library import Library, LibraryError, Polymer
from xpstream.train.simulate import (
    ALL_BINS,
    FFT_SIZE,
    LINESHAPES,
    LORENTZIAN_SHARE,
    PEARSON_EXPONENT,
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
PHASE_BLOCK = 64  # bins per block of the shift's phase factor
ACQUISITIONS = ("full", "regions", "random")
LABEL_RULES = ("union", "physics")
SURVEY_EXTRA_SIGMA_EV = (0.5, 0.9)  # survey resolution: extra Gaussian broadening, uniform
SURVEY_COUNTS_FACTOR = 0.1  # a survey spends a tenth of a region scan's counts per line
# "Most" air-exposed samples show adventitious carbon (Review2026: 5-20 % of C 1s on typical
# polymer films); a fifth are drawn clean (freshly cut, sputtered or measured in situ).
ADVENTITIOUS_SHARE_OF_SPECTRA = 0.8
SILICONE_SHARE_OF_SPECTRA = 0.25  # "in some spectra": release agents, gloves, vacuum grease
LIBRARY_OFFSET_SEED = 20_261_202  # the cross-renderer's fixed library error is always the same
OXIDATION = ("oxidation_CO", "oxidation_CdO", "oxidation_OCdO")  # physics.toml [contaminants]


class SettingsError(ValueError):
    """Generator settings that cannot produce valid spectra; the message says which."""


def option(default, help: str, **cli):
    """A settings field with its command-line help (and flag, nargs, type, choices) beside its
    default, so `xpstream` builds its options from the dataclass (each default written once)."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True)
class MixtureSettings:
    """Everything that defines a synthetic data set (stored with it). Defaults: the published
    protocol; every realism option off."""

    max_shift_ev: float = option(3.0, "charging shift drawn from U(-S, S) eV", flag="--max-shift")
    min_components: int = option(2, "fewest polymers in a mixture (1: single polymers too)")
    max_components: int = option(4, f"most polymers in a mixture (<= {MAX_COMPONENTS})")
    broadening_scale_ev: float = option(
        0.2, "instrument resolution: HalfNormal scale of the per-spectrum Gaussian sigma, eV", flag="--broadening"
    )
    be_jitter_ev: float = option(
        0.0, "binding-energy scatter per environment and template, U(-x, x) eV (<= 0.3)", flag="--be-jitter"
    )
    width_scale: tuple[float, float] = option(
        (1.0, 1.0), "each line's width times U(LO, HI)", nargs=2, type=float, metavar=("LO", "HI")
    )
    lineshapes: tuple[str, ...] = option(
        ("voigt",), "line-shape families, one drawn per spectrum", nargs="+", type=str, choices=LINESHAPES
    )
    hydrocarbon_tail: float = option(0.0, "hydrocarbon C 1s puts U(0, x) of its area in a high-BE tail")
    shakeup_jitter: float = option(0.0, "shake-up area kept: U(1 - s, 1) of the sourced share (s <= 1)")
    differential_charging_ev: float = option(0.0, "each core level moves by its own U(-x, x) eV more")
    ke_exponent_scatter: float = option(0.0, "the area factor's kinetic-energy exponent moves by U(-x, x)")
    adventitious_carbon: float = option(
        0.0, f"adventitious carbon: U(0, x) of the C 1s area in {ADVENTITIOUS_SHARE_OF_SPECTRA:.0%} of spectra"
    )
    oxidation: float = option(0.0, "surface C-O, C=O, O-C=O together: U(0, x) of the C 1s area")
    silicone: float = option(
        0.0, f"silicone (PDMS lines, no label): U(0, x) of the area in {SILICONE_SHARE_OF_SPECTRA:.0%} of spectra"
    )
    variants: int = option(8, "jittered templates per polymer, line shape and epoch")
    noise_counts: float = option(0.0, "Poisson noise at this many counts (0: none)")
    noise_counts_max: float = option(0.0, "above --noise-counts: counts log-uniform in between, per spectrum")
    residual_background: float = option(0.0, "std of a residual Shirley step, share of a region's area")
    linear_background: float = option(0.0, "std of a residual linear ramp, share of a region's area")
    tail_cut: float = option(0.0, "recorded windows drop U(0, x) of a region's area at each end")
    acquisition: str = option(
        "full",
        "full: whole grid (paper); regions: the regions of the elements present; random: realistic plans",
        choices=ACQUISITIONS,
    )
    label_rule: str = option(
        "union", "union: the paper's labels; physics: traces and adventitious alkane not scored", choices=LABEL_RULES
    )
    library_offset_ev: float = option(0.0, "cross-renderer: every environment moved by a fixed U(-x, x) eV")
    polymers: tuple[str, ...] = option((), "only these polymers (names or abbreviations)", nargs="+", type=str)
    exclude_polymers: tuple[str, ...] = option((), "leave these polymers out", nargs="+", type=str)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> MixtureSettings:
        """Settings from `as_dict` output (lists back to tuples), also as older files store them
        (`width_jitter` w meant `width_scale` (1 - w, 1 + w))."""
        data = dict(data)
        if "width_jitter" in data:
            w = data.pop("width_jitter")
            data["width_scale"] = (1.0 - w, 1.0 + w)
        tuples = {"width_scale", "lineshapes", "polymers", "exclude_polymers"}
        return cls(**{k: tuple(v) if k in tuples else v for k, v in data.items()})


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

    def __init__(self, library: Library, settings: MixtureSettings = MixtureSettings(), seed: int = 0):
        self.library = library
        self.settings = settings
        self.seed = int(seed)
        self.polymers = _select_polymers(library, settings)
        self.jitter = _validate(library, settings, self.polymers)
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
            self._charge_levels_apart(spectra, rng)
        if s.ke_exponent_scatter:
            exponent = rng.uniform(-s.ke_exponent_scatter, s.ke_exponent_scatter, size=(n, 1)).astype(np.float32)
            spectra *= np.exp(exponent * self.log_kinetic_ratio[None, :])
        if s.acquisition != "full":
            self._keep_recorded_regions(spectra, recorded, whole)
        regions = recorded & present.astype(bool) & ~whole[:, None]
        if s.tail_cut:
            self._cut_window_tails(spectra, regions, rng)
        if s.residual_background or s.linear_background:
            self._add_residual_background(spectra, recorded & present.astype(bool), rng)
        _normalise_rows(spectra)
        if s.noise_counts:
            self._add_counting_noise(spectra, survey, rng)
            _normalise_rows(spectra)
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

    def _charge_levels_apart(self, spectra, rng) -> None:
        """Differential charging: the content of each level's window moves by its own
        U(-x, x) eV (linear interpolation, zero entering at the window's edge)."""
        x = self.settings.differential_charging_ev
        moves = rng.uniform(-x, x, size=(len(spectra), len(self.window_slices))) / GRID_STEP_EV
        for j, window in enumerate(self.window_slices):
            region = spectra[:, window]
            width = region.shape[1]
            whole = np.floor(moves[:, j]).astype(int)
            frac = (moves[:, j] - whole).astype(np.float32)[:, None]
            padded = np.pad(region, ((0, 0), (width, width)))
            index = np.arange(width)[None, :] + width - whole[:, None]  # new[i] = old[i - move]
            left = np.take_along_axis(padded, index, axis=1)
            right = np.take_along_axis(padded, index - 1, axis=1)
            spectra[:, window] = left + frac * (right - left)

    def _keep_recorded_regions(self, spectra, recorded, whole) -> None:
        """Zero everything outside the recorded regions (rows with `whole` keep the grid)."""
        keep = (recorded | whole[:, None]).astype(np.float32)
        for j, window in enumerate(self.window_slices):
            spectra[:, window] *= keep[:, j : j + 1]
        outside = whole.astype(np.float32)[:, None]
        for gap in self.gap_slices:
            spectra[:, gap] *= outside

    def _cut_window_tails(self, spectra, regions, rng) -> None:
        """Recorded windows narrower than the lines' far tails: each region of a row drops the
        first U(0, x) and the last U(0, x) of its area (as a region that ends where the line is
        still above background; the mask still calls the points recorded)."""
        x = self.settings.tail_cut
        for j, window in enumerate(self.window_slices):
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

    def _add_residual_background(self, spectra, levels, rng) -> None:
        """What an imperfect background subtraction leaves in each recorded region: a
        Shirley-shaped step of r x the region's area (r ~ N(0, residual_background), the
        running integral from the low-BE end) and a linear ramp holding l x the area
        (l ~ N(0, linear_background)); either sign, clipped at zero."""
        s, n = self.settings, len(spectra)
        step = rng.normal(0.0, s.residual_background, size=n).astype(np.float32)
        ramp = rng.normal(0.0, s.linear_background, size=n).astype(np.float32)
        for j, window in enumerate(self.window_slices):
            width = window.stop - window.start
            on = levels[:, j]
            if not on.any():
                continue
            region = spectra[:, window]  # a view
            area = region.sum(axis=1, keepdims=True)
            shape = np.linspace(0.0, 2.0 / width, width, dtype=np.float32)[None, :]  # sums to 1
            region += np.cumsum(region, axis=1) * (step * on / width)[:, None] + area * (ramp * on)[:, None] * shape
            np.maximum(region, 0.0, out=region)

    def _add_counting_noise(self, spectra, survey, rng) -> None:
        """Poisson noise (Gaussian approximation) at a count level per spectrum: noise_counts,
        or log-uniform up to noise_counts_max; SURVEY_COUNTS_FACTOR of them for survey rows.

        Every line lies inside a region window, so only windows are touched. Each row reads
        consecutive normals from the epoch's pool at a random offset.
        """
        s, n = self.settings, len(spectra)
        counts = np.full(n, s.noise_counts)
        if s.noise_counts_max > s.noise_counts:
            counts = np.exp(rng.uniform(math.log(s.noise_counts), math.log(s.noise_counts_max), size=n))
        counts = np.where(survey, counts * SURVEY_COUNTS_FACTOR, counts)
        scale = (1.0 / np.sqrt(counts)).astype(np.float32)[:, None]
        offsets = rng.integers(0, NOISE_POOL - GRID_SIZE, size=(n, 1))
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


def _select_polymers(library: Library, s: MixtureSettings) -> tuple[Polymer, ...]:
    chosen = tuple(library.polymer(n) for n in s.polymers) if s.polymers else library.polymers
    excluded = {library.polymer(n).name for n in s.exclude_polymers}
    return tuple(p for p in chosen if p.name not in excluded)


def _validate(library: Library, s: MixtureSettings, polymers) -> Jitter:
    """Check the settings against the library; raise SettingsError naming the problem."""
    if not (1 <= s.min_components <= s.max_components <= MAX_COMPONENTS):
        raise SettingsError(
            f"components must satisfy 1 <= min ({s.min_components}) <= max ({s.max_components}) <= {MAX_COMPONENTS}"
        )
    for name in (
        "max_shift_ev",
        "broadening_scale_ev",
        "noise_counts",
        "noise_counts_max",
        "residual_background",
        "linear_background",
        "differential_charging_ev",
        "ke_exponent_scatter",
        "library_offset_ev",
    ):
        value = getattr(s, name)
        if not math.isfinite(value) or value < 0:
            raise SettingsError(f"{name} must be a finite number >= 0, got {value}")
    for name in ("adventitious_carbon", "oxidation", "silicone", "tail_cut"):
        value = getattr(s, name)
        if not 0.0 <= value < 0.5:
            raise SettingsError(f"{name} must lie in [0, 0.5), got {value}")
    if s.adventitious_carbon and library.adventitious is None:
        raise SettingsError("adventitious_carbon needs an [adventitious_carbon] table in the physics file")
    needed = (OXIDATION if s.oxidation else ()) + (("silicone",) if s.silicone else ())
    missing = [name for name in needed if name not in library.contaminants]
    if missing:
        raise SettingsError(f"the physics file has no [contaminants.{missing[0]}] table")
    if s.noise_counts_max and s.noise_counts_max < s.noise_counts:
        raise SettingsError(f"noise_counts_max ({s.noise_counts_max}) is below noise_counts ({s.noise_counts})")
    if s.acquisition not in ACQUISITIONS:
        raise SettingsError(f"acquisition must be one of {ACQUISITIONS}, got {s.acquisition!r}")
    if s.label_rule not in LABEL_RULES:
        raise SettingsError(f"label_rule must be one of {LABEL_RULES}, got {s.label_rule!r}")
    unknown = [f for f in s.lineshapes if f not in LINESHAPES]
    if unknown or not s.lineshapes:
        raise SettingsError(f"lineshapes must be some of {LINESHAPES}, got {s.lineshapes}")
    if s.variants < 1:
        raise SettingsError(f"variants must be >= 1, got {s.variants}")
    try:
        jitter = Jitter(s.be_jitter_ev, tuple(s.width_scale), s.shakeup_jitter, s.hydrocarbon_tail)
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
