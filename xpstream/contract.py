"""The model contract shared by training, the daemon and the tests.

Everything that two halves of xpstream must agree on lives here and nowhere else:
the binding-energy grid, the functional-group labels and their order, the spectrum
representation, the prediction record and the model metadata. This module needs numpy
only (no torch), so the daemon can import it.

A contract has a version. A model or a message made under another version is refused
with an error that names both versions.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from itertools import compress

import numpy as np

# 2: measured-region mask input, determinability, out-of-library flag
# 3: group shares and element composition (quantification), alkene never determined
CONTRACT_VERSION = "3"

# --- energy grid -----------------------------------------------------------------------
GRID_START_EV = 40.0
GRID_STOP_EV = 700.0
GRID_STEP_EV = 0.1
GRID_SIZE = 6601


def energy_grid() -> np.ndarray:
    """The binding-energy axis in eV (float64, ascending, GRID_SIZE points)."""
    return np.linspace(GRID_START_EV, GRID_STOP_EV, GRID_SIZE)


@dataclass(frozen=True)
class Label:
    """A functional group: a stable machine name and a display name."""

    name: str
    display: str


# Order of the published code (arXiv 2603.05350) with its 8 unused slots removed.
LABELS: tuple[Label, ...] = (
    Label("alkene", "alkene"),
    Label("benzene_ring", "benzene ring"),
    Label("naphthalene", "naphthalene"),
    Label("amine", "amine"),
    Label("alcohol_aromatic", "alcohol (aromatic)"),
    Label("alcohol_aliphatic", "alcohol (aliphatic)"),
    Label("ether_aromatic", "ether (aromatic)"),
    Label("ether_aliphatic", "ether (aliphatic)"),
    Label("alkyl_halide_f", "alkyl halide (F)"),
    Label("alkyl_halide_cl", "alkyl halide (Cl)"),
    Label("ketone_aromatic", "ketone (aromatic)"),
    Label("ketone_aliphatic", "ketone (aliphatic)"),
    Label("ester_aromatic", "ester (aromatic)"),
    Label("ester_aliphatic", "ester (aliphatic)"),
    Label("carboxylic_acid", "carboxylic acid"),
    Label("amide", "amide"),
    Label("nitrate", "nitrate"),
    Label("nitrile", "nitrile"),
    Label("epoxide", "epoxide"),
    Label("imide", "imide"),
    Label("anhydride", "anhydride"),
    Label("nitro_aromatic", "nitro (aromatic)"),
    Label("sulfide", "sulfide"),
    Label("sulfone", "sulfone"),
    Label("sulfonate", "sulfonate"),
    Label("chlorobenzene", "chlorobenzene"),
    Label("bromobenzene", "bromobenzene"),
    Label("siloxane", "siloxane"),
    Label("phosphazene", "phosphazene"),
    Label("phenoxy", "phenoxy"),
    Label("pyridine", "pyridine"),
    Label("alkane", "alkane"),
)
LABEL_NAMES: tuple[str, ...] = tuple(label.name for label in LABELS)
NUM_LABELS = len(LABELS)
_LABEL_INDEX = {name: i for i, name in enumerate(LABEL_NAMES)}


class ContractError(ValueError):
    """Input that does not follow the contract (wrong version, grid, labels or shape)."""


def label_index(name: str) -> int:
    """Position of a label name in the model output; unknown names raise ContractError."""
    try:
        return _LABEL_INDEX[name]
    except KeyError:
        raise ContractError(f"unknown functional-group label {name!r}") from None


def labels_to_multihot(names) -> np.ndarray:
    """Multi-hot uint8 vector (NUM_LABELS,) for a collection of label names."""
    out = np.zeros(NUM_LABELS, dtype=np.uint8)
    for name in names:
        out[label_index(name)] = 1
    return out


# --- spectrum representation -----------------------------------------------------------
def normalise_spectrum(spectra: np.ndarray) -> np.ndarray:
    """Clip negatives and scale each row to sum 1 (rows of zeros stay zero).

    Works on one spectrum (GRID_SIZE,) or a batch (N, GRID_SIZE); returns float32.
    """
    arr = np.clip(np.asarray(spectra, dtype=np.float32), 0.0, None)
    if arr.shape[-1] != GRID_SIZE:
        raise ContractError(f"spectrum has {arr.shape[-1]} points, the grid has {GRID_SIZE}")
    total = arr.sum(axis=-1, keepdims=True)
    return np.divide(arr, total, out=np.zeros_like(arr), where=total > 0)


def check_spectra(spectra: np.ndarray) -> np.ndarray:
    """Validate a batch of grid spectra (N, GRID_SIZE): finite, float32-castable."""
    arr = np.asarray(spectra, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != GRID_SIZE:
        raise ContractError(f"expected spectra of shape (N, {GRID_SIZE}), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ContractError("spectra contain NaN or Inf")
    return arr


# The measured-region mask: float32 (N, GRID_SIZE), 1 where the grid point lies inside a
# recorded region (or survey), 0 where nothing was recorded. A spectrum is 0 outside its mask.
def whole_grid_mask(n: int) -> np.ndarray:
    """The mask of n spectra recorded over the whole grid."""
    return np.ones((n, GRID_SIZE), dtype=np.float32)


# The model's ONNX interface (names in order). Inputs: spectra and their measured-region masks.
# Outputs: probabilities (N, 32); shift_ev (N,); determined (N, 32), the share of each label's
# defining core levels that were recorded (0: nothing measured could show the label, and its
# probability is 0.5); out_of_library_score (N,), the share of the spectrum's area where the
# library has no lines; group_fraction (N, 32), the GROUP SHARE of each label, and
# group_fraction_std (N, 32), its calibrated spread (NaN: the model has no composition head);
# level_recorded (N, L) and level_area (N, L), per core level of the model's `levels` metadata:
# 1 where it was recorded, and its share of the unit-area spectrum (element quantification).
MODEL_INPUTS = ("spectra", "measured")
MODEL_OUTPUTS = (
    "probabilities",
    "shift_ev",
    "determined",
    "out_of_library_score",
    "group_fraction",
    "group_fraction_std",
    "level_recorded",
    "level_area",
)

# GROUP SHARE: the share of the sample's atoms other than hydrogen (XPS does not see H) that sit
# in a functional group's environments; contamination layers (adventitious carbon, surface
# oxidation, silicone) are not the sample. Every atom of a library polymer belongs to exactly one
# group, so the shares of a sample add up to 1. Worked example, PMMA (C5H8O2, 7 non-H atoms): the
# ester's C=O carbon, its O-CH3 carbon and both oxygens are 4 atoms, so ester (aliphatic) 4/7 =
# 57 %; the CH3, CH2 and quaternary carbons are alkane, 3/7 = 43 %. Reported in per cent
# (`Prediction.group_percent`) for the labels the recorded regions can settle.


@dataclass
class Region:
    """One recorded core-level region as a parser hands it on: a binding-energy axis (eV,
    ascending) and the counts at those energies, background not yet removed."""

    name: str
    binding_energy_ev: np.ndarray
    counts: np.ndarray

    def __post_init__(self):
        be = np.asarray(self.binding_energy_ev, dtype=np.float64)
        counts = np.asarray(self.counts, dtype=np.float64)
        if be.ndim != 1 or be.shape != counts.shape:
            raise ContractError(f"region {self.name!r}: energy axis {be.shape} and counts {counts.shape} differ")
        if be.size < 3:
            raise ContractError(f"region {self.name!r}: fewer than 3 points")
        if not (np.isfinite(be).all() and np.isfinite(counts).all()):
            raise ContractError(f"region {self.name!r}: NaN or Inf in energies or counts")
        order = np.argsort(be, kind="stable")
        be, counts = be[order], counts[order]
        if np.any(np.diff(be) <= 0):
            raise ContractError(f"region {self.name!r}: repeated energies on the axis")
        self.binding_energy_ev, self.counts = be, counts


# --- versioned records -----------------------------------------------------------------
def check_version(found: str, what: str) -> None:
    """Refuse a record made under another contract version, naming both."""
    if str(found) != CONTRACT_VERSION:
        raise ContractError(
            f"{what} was made for xpstream contract version {found!r}; "
            f"this xpstream speaks version {CONTRACT_VERSION!r}"
        )


@dataclass
class Prediction:
    """What xpstream says about one spectrum; its fields are the keys of every published record
    (ZeroMQ payload, `xpstream predict --json`, `xpstream batch` Parquet rows).

    labels are the groups judged present (probability >= the model's per-label threshold)
    among those the recorded regions can speak to; `undetermined` lists the groups none of
    whose core levels were recorded (their probability is 0.5: no evidence either way).
    shift_ev is the estimated charging shift: positive when the peaks appear at a higher
    binding energy than their true position. in_library is False when the spectrum holds
    signal the polymer library cannot explain: out_of_library_score (the share of the area
    where the library has no lines) above the model's threshold, or recorded regions outside
    the grid that show a peak (`unexplained_regions`); the groups are then not to be trusted.
    group_percent: the GROUP SHARE (per cent of the sample's non-H atoms) of each label the
    recorded regions can settle, with group_percent_std its calibrated spread (+-1 std holds
    the truth about 68 % of the time on validation data); empty for models without a
    composition head. A group below the model's detection limit reads as a small share, not as
    a label. atomic_percent: element composition (at. %, hydrogen not seen) over the elements
    whose levels were recorded and show signal, from background-subtracted areas, cross sections
    and the analyser's kinetic-energy response - no model; not_quantified names the recorded
    elements left out and why.
    """

    source: str
    labels: list[str]
    probabilities: dict[str, float]
    shift_ev: float
    undetermined: list[str]
    in_library: bool
    out_of_library_score: float
    unexplained_regions: list[str]
    group_percent: dict[str, float]
    group_percent_std: dict[str, float]
    atomic_percent: dict[str, float]
    not_quantified: dict[str, str]
    model: str
    model_version: str
    contract_version: str = CONTRACT_VERSION

    @classmethod
    def from_outputs(
        cls,
        source: str,
        outputs: dict,
        metadata: ModelMetadata,
        unexplained_regions: list[str] = (),
        composition: tuple[dict, dict] = ({}, {}),
    ) -> Prediction:
        """Build a record from one row of model outputs (keys MODEL_OUTPUTS) and the model's
        metadata (thresholds, out-of-library threshold)."""
        one_row = {key: np.asarray(value)[None] for key, value in outputs.items()}
        return cls.from_batch([source], one_row, metadata, [unexplained_regions], [composition])[0]

    @classmethod
    def from_batch(
        cls,
        sources: list[str],
        outputs: dict,
        metadata: ModelMetadata,
        unexplained_regions: list[list[str]],
        compositions: list[tuple[dict, dict]] | None = None,
    ) -> list[Prediction]:
        """Records for a batch: row i of the outputs (keys MODEL_OUTPUTS) is spectrum sources[i],
        whose recorded regions showed unexplained_regions[i] and whose element composition is
        compositions[i] (atomic_percent, not_quantified). Vectorised over the batch, as the
        daemon builds one record per spectrum."""
        n = len(sources)
        compositions = compositions or [({}, {})] * n
        probs = np.asarray(outputs["probabilities"])
        determined = np.asarray(outputs["determined"])
        if probs.shape != (n, NUM_LABELS) or determined.shape != (n, NUM_LABELS) or len(unexplained_regions) != n:
            raise ContractError(f"expected {n} rows of {NUM_LABELS} probabilities, got shape {probs.shape}")
        present = ((probs >= np.asarray(metadata.thresholds)) & (determined > 0)).tolist()
        undetermined = (determined <= 0).tolist()
        scores = np.asarray(outputs["out_of_library_score"], dtype=np.float64).reshape(n).tolist()
        shifts = np.asarray(outputs["shift_ev"], dtype=np.float64).reshape(n).tolist()
        shares, spreads = _percent_of_determined(outputs, determined)
        columns = (sources, probs.tolist(), present, undetermined, scores, shifts, unexplained_regions, shares, spreads)
        rows = zip(*columns, strict=True)
        return [
            cls(
                source=source,
                labels=list(compress(LABEL_NAMES, row_present)),
                probabilities=dict(zip(LABEL_NAMES, row_probs, strict=True)),
                shift_ev=shift,
                undetermined=list(compress(LABEL_NAMES, row_undetermined)),
                in_library=score <= metadata.out_of_library_threshold and not unexplained,
                out_of_library_score=score,
                unexplained_regions=list(unexplained),
                group_percent=share,
                group_percent_std=spread,
                atomic_percent=atomic,
                not_quantified=not_quantified,
                model=metadata.model_id,
                model_version=metadata.version,
            )
            for (source, row_probs, row_present, row_undetermined, score, shift, unexplained, share, spread), (
                atomic,
                not_quantified,
            ) in zip(rows, compositions, strict=True)
        ]

    def to_dict(self) -> dict:
        """The record as a plain dict, keys in field order (shallow: the daemon builds one per
        spectrum)."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict) -> Prediction:
        """Rebuild a record; another contract version or unknown labels are refused."""
        check_version(data.get("contract_version", "?"), "prediction record")
        unknown = set(data["probabilities"]) - set(LABEL_NAMES)
        if unknown:
            raise ContractError(f"prediction names unknown labels: {sorted(unknown)}")
        return cls(**data)


def _percent_of_determined(outputs: dict, determined: np.ndarray) -> tuple[list[dict], list[dict]]:
    """Per row, {label: per cent} of the group shares and of their spreads, for the determined
    labels (empty where the model has no composition head)."""
    fraction = np.asarray(outputs["group_fraction"], dtype=np.float64)
    spread = np.asarray(outputs["group_fraction_std"], dtype=np.float64)
    keep = ((determined > 0) & np.isfinite(fraction)).tolist()
    shares = (100.0 * fraction).round(2).tolist()
    spreads = (100.0 * spread).round(2).tolist()
    return (
        [dict(compress(zip(LABEL_NAMES, row, strict=True), k)) for row, k in zip(shares, keep, strict=True)],
        [dict(compress(zip(LABEL_NAMES, row, strict=True), k)) for row, k in zip(spreads, keep, strict=True)],
    )


@dataclass
class ModelMetadata:
    """Metadata a model file carries (ONNX metadata_props: string keys and values)."""

    model_id: str
    version: str
    labels: list[str] = field(default_factory=lambda: list(LABEL_NAMES))
    thresholds: list[float] = field(default_factory=lambda: [0.5] * NUM_LABELS)
    grid: dict = field(default_factory=lambda: {"start": GRID_START_EV, "stop": GRID_STOP_EV, "step": GRID_STEP_EV})
    out_of_library_threshold: float = 1.0  # out_of_library_score above it: not in the library
    elements: list[str] = field(default_factory=list)  # the library's elements ([]: not known)
    detection_limit: float = 0.0  # a group below this share of the atoms is a trace, not a label
    # classical quantification: the levels of the level_* outputs, in order, as
    # {"name", "element", "cross_section_barn", "be_ev"}, and the instrument response
    # {"photon_energy_ev", "imfp_exponent", "transmission_exponent"} the library assumes
    levels: list[dict] = field(default_factory=list)
    instrument: dict = field(default_factory=dict)
    contract_version: str = CONTRACT_VERSION
    training_data: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    def to_strings(self) -> dict[str, str]:
        """Flatten to string key/values, JSON-encoding the structured fields."""
        out = {}
        for key, value in asdict(self).items():
            out[key] = value if isinstance(value, str) else json.dumps(value)
        return out

    @classmethod
    def from_strings(cls, props: dict[str, str], any_version: bool = False) -> ModelMetadata:
        """Parse metadata and refuse a model that disagrees with this contract (any_version:
        read a model of an earlier contract too, for training and comparisons, never to serve)."""
        if not any_version:
            check_version(props.get("contract_version", "?"), "model")
        try:
            meta = cls(
                model_id=props["model_id"],
                version=props["version"],
                labels=json.loads(props["labels"]),
                thresholds=json.loads(props["thresholds"]),
                grid=json.loads(props["grid"]),
                out_of_library_threshold=float(props["out_of_library_threshold"]),
                elements=json.loads(props.get("elements", "[]")),
                detection_limit=float(props.get("detection_limit", "0")),
                levels=json.loads(props.get("levels", "[]")),
                instrument=json.loads(props.get("instrument", "{}")),
                contract_version=props["contract_version"],
                training_data=json.loads(props.get("training_data", "{}")),
                metrics=json.loads(props.get("metrics", "{}")),
            )
        except KeyError as err:
            raise ContractError(f"model metadata lacks the key {err.args[0]!r}") from None
        except (ValueError, TypeError) as err:  # JSON or numbers that do not parse
            raise ContractError(f"model metadata cannot be read: {str(err)[:200]}") from None
        meta.check()
        return meta

    def check(self) -> None:
        """Raise ContractError if labels, thresholds or grid disagree with the contract."""
        if list(self.labels) != list(LABEL_NAMES):
            raise ContractError(
                f"model labels disagree with the contract: expected {list(LABEL_NAMES)}, got {list(self.labels)}"
            )
        if len(self.thresholds) != NUM_LABELS:
            raise ContractError(f"model has {len(self.thresholds)} thresholds, expected {NUM_LABELS}")
        expected = {"start": GRID_START_EV, "stop": GRID_STOP_EV, "step": GRID_STEP_EV}
        if set(self.grid) != set(expected) or any(
            not math.isclose(float(self.grid[k]), v, abs_tol=1e-9) for k, v in expected.items()
        ):
            raise ContractError(f"model grid {self.grid} disagrees with the contract grid {expected}")
