"""Acquisition plans: which regions an operator records, and what the library can explain.

Real instruments record the regions the operator chose, not the whole grid. A plan is, per
spectrum, the set of core-level regions recorded (`recorded`, one column per level of
`REGION_WINDOWS_EV`) or a survey over the whole grid (`whole`). The grid mask built from a
plan is the model's second input (contract version 2).

Two fixed maps, built here from the library and baked into the exported graph:
- `coverage_matrix`: grid -> levels, the share of each level's lines (nominal positions)
  that a mask covers; a level counts as recorded when at least half is covered.
- `explained_mask`: the grid points where the library has lines (every level, its doublet and
  shake-ups, and the secondary lines of its elements) widened by the maximum shift and a
  margin; signal elsewhere is not explained by the library (the out-of-library score).
"""

from __future__ import annotations

import numpy as np

from xpstream.contract import GRID_SIZE, energy_grid
from xpstream.train.library import Library

# Typical acquisition windows (binding energy, eV) of the core-level regions an operator
# records; wide enough for a +-5 eV charging shift and the C 1s shake-ups and CF3 lines.
REGION_WINDOWS_EV = {
    "C 1s": (278.0, 300.0),
    "N 1s": (392.0, 415.0),
    "O 1s": (524.0, 542.0),
    "F 1s": (678.0, 698.0),
    "Si 2p": (94.0, 112.0),
    "P 2p": (126.0, 144.0),
    "S 2p": (156.0, 176.0),
    "Cl 2p": (192.0, 210.0),
    "Br 3d": (62.0, 80.0),
}
LEVELS = tuple(REGION_WINDOWS_EV)
CARBON = LEVELS.index("C 1s")
OXYGEN = LEVELS.index("O 1s")

# Plans and how often the "random" acquisition draws them.
PLANS = {
    "full": 0.15,  # the whole grid at region resolution (the published protocol)
    "all": 0.25,  # every region of the elements present
    "c1s": 0.15,  # C 1s only
    "c1s+o1s": 0.10,  # C 1s and O 1s
    "drop-minor": 0.15,  # all but the region of the element with the least signal
    "subset": 0.10,  # each present region kept with probability 1/2 (at least one)
    "survey": 0.10,  # the whole grid at survey resolution
}
EXTRA_REGION_PROBABILITY = 0.15  # each absent element's region is also recorded (region plans)
RECORDED_COVERAGE = 0.5  # share of a level's lines a mask must cover to count it as recorded
EXPLAINED_MARGIN_EV = 3.0  # beyond the max shift: Lorentzian tails, broadening, residuals
EXPLAINED_SHIFT_EV = 5.0  # the shift range the out-of-library score tolerates (the shipped model's)


def window_slices() -> list[slice]:
    """Grid slices of REGION_WINDOWS_EV, in LEVELS order."""
    grid = energy_grid()
    return [
        slice(int(np.searchsorted(grid, lo)), int(np.searchsorted(grid, hi, side="right")))
        for lo, hi in REGION_WINDOWS_EV.values()
    ]


def draw_plans(present: np.ndarray, level_areas: np.ndarray, rng: np.random.Generator):
    """Random plans for spectra whose samples show `present` levels (N, L) with `level_areas`.

    Returns (recorded (N, L) bool, whole (N,) bool, survey (N,) bool). Region plans always
    record at least one level the sample shows, so a spectrum is never empty.
    """
    n = len(present)
    present = present.astype(bool)
    plan = rng.choice(len(PLANS), size=n, p=np.array(list(PLANS.values())))
    names = list(PLANS)
    recorded = present.copy()
    only_c = plan == names.index("c1s")
    recorded[only_c] = False
    recorded[only_c, CARBON] = True
    c_and_o = plan == names.index("c1s+o1s")
    recorded[c_and_o] = False
    recorded[c_and_o, CARBON] = recorded[c_and_o, OXYGEN] = True
    drop = plan == names.index("drop-minor")
    minor_area = np.where(present, level_areas, np.inf)
    minor_area[:, CARBON] = np.inf  # carbon is every polymer's backbone
    minor = np.argmin(minor_area, axis=1)
    has_minor = np.isfinite(minor_area[np.arange(n), minor])
    recorded[np.flatnonzero(drop & has_minor), minor[drop & has_minor]] = False
    subset = plan == names.index("subset")
    recorded[subset] &= rng.random((int(subset.sum()), recorded.shape[1])) < 0.5
    empty = subset & ~recorded.any(axis=1)
    recorded[empty] = present[empty]
    survey = plan == names.index("survey")
    whole = survey | (plan == names.index("full"))
    recorded |= ~present & (rng.random(recorded.shape) < EXTRA_REGION_PROBABILITY)
    recorded[whole] = True
    return recorded, whole, survey


def level_area_matrix() -> np.ndarray:
    """(GRID_SIZE, L) float32 0/1: grid point i lies in level j's acquisition window, so that
    unit-area spectra @ matrix = each level's share of the area (wide enough for a +-5 eV
    shift; the windows do not overlap)."""
    out = np.zeros((GRID_SIZE, len(LEVELS)), dtype=np.float32)
    for j, window in enumerate(window_slices()):
        out[window, j] = 1.0
    return out


def measured_mask(recorded: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """Grid mask (N, GRID_SIZE) float32 of a batch of plans: 1 where the grid was recorded."""
    mask = np.zeros((len(recorded), GRID_SIZE), dtype=np.float32)
    for j, window in enumerate(window_slices()):
        mask[:, window] = recorded[:, j : j + 1]
    mask[np.asarray(whole, dtype=bool)] = 1.0
    return mask


def determination_maps(library: Library) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fixed maps from recorded levels to what a spectrum can settle about each label:
    (defining share (labels, L): each defining level's share of the label's defining levels;
    required (labels, L): 1 for the heteroatom levels that must be recorded; determinable
    (labels,): 0 for the labels no core-level spectrum settles), float32."""
    defining = library.label_levels(LEVELS).astype(np.float32)
    share = defining / np.maximum(defining.sum(axis=1, keepdims=True), 1.0)
    return share, library.required_levels(LEVELS).astype(np.float32), library.determinable_labels().astype(np.float32)


def label_determined(library: Library, recorded: np.ndarray) -> np.ndarray:
    """(N, labels) float32 from recorded levels (N, L) 0/1: the share of each label's defining
    levels recorded, 0 when a required heteroatom level is missing or the label is not
    determinable (the numpy twin of the exported graph's `determined`, for scoring)."""
    share, required, determinable = determination_maps(library)
    recorded = np.asarray(recorded, dtype=np.float32)
    missing_required = (1.0 - recorded) @ required.T
    return (recorded @ share.T) * (missing_required == 0) * determinable[None, :]


def coverage_matrix(library: Library) -> np.ndarray:
    """(GRID_SIZE, L) float32: mask @ matrix = share of each level's line span covered."""
    grid = energy_grid()
    out = np.zeros((GRID_SIZE, len(LEVELS)), dtype=np.float32)
    for j, level in enumerate(LEVELS):
        lo, hi = library.level_extent_ev(level)
        inside = (grid >= lo - 0.5) & (grid <= hi + 0.5)
        out[inside, j] = 1.0 / inside.sum()
    return out


def explained_mask(library: Library, max_shift_ev: float) -> np.ndarray:
    """(GRID_SIZE,) float32: 1 where the library has lines, widened by shift and margin."""
    grid = energy_grid()
    widen = max_shift_ev + EXPLAINED_MARGIN_EV
    spans = [library.level_extent_ev(level) for level in LEVELS]
    spans += [(be, be) for be in library.secondary_lines.values()]
    out = np.zeros(GRID_SIZE, dtype=np.float32)
    for lo, hi in spans:
        out[(grid >= lo - widen) & (grid <= hi + widen)] = 1.0
    return out
