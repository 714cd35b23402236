"""The polymer library: core levels, chemical environments and polymers, read from data files.

`physics.toml` holds the constants (cross sections, widths, doublets, binding energies), each
with its source; `polymers.toml` holds repeat units as counts of environments. `load_library`
reads and validates both and raises `LibraryError` naming the bad entry.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from xpstream.contract import GRID_START_EV, GRID_STOP_EV, LABEL_NAMES

# The carbon skeleton a heteroatom group sits on (`Polymer.one_group_at_a_time`); "" is a
# carbon environment without a group of its own.
SKELETON_GROUPS = ("", "alkane", "alkene", "benzene_ring", "naphthalene")
# Elements whose core levels the grid shows; H has none and Na 1s lies above 700 eV.
GRID_ELEMENTS = ("C", "N", "O", "F", "Si", "P", "S", "Cl", "Br")


class LibraryError(ValueError):
    """A library file that cannot be used; the message names the entry."""


@dataclass(frozen=True)
class CoreLevel:
    name: str
    element: str
    cross_section_barn: float
    lorentzian_fwhm_ev: float
    fwhm_ev: float
    split_ev: float = 0.0  # spin-orbit splitting; 0 for s levels
    minor_ratio: float = 0.0  # area of the minor doublet component / major
    source: str = ""


@dataclass(frozen=True)
class ShakeUp:
    offset_ev: float
    fraction: float
    fwhm_ev: float


@dataclass(frozen=True)
class Environment:
    name: str
    level: CoreLevel
    be_ev: float
    fwhm_ev: float
    group: str
    shakeup: ShakeUp | None
    source: str
    status: str
    hydrocarbon: bool = False  # C-C/C-H carbon: its C 1s line may carry a high-BE tail


@dataclass(frozen=True)
class Polymer:
    name: str
    abbr: str
    formula: str
    environments: tuple[tuple[Environment, int], ...]

    @property
    def labels(self) -> tuple[str, ...]:
        """Functional groups present, in contract order (union of the environments' groups)."""
        groups = {env.group for env, _ in self.environments if env.group}
        return tuple(name for name in LABEL_NAMES if name in groups)

    @property
    def levels(self) -> tuple[str, ...]:
        """Core levels this polymer shows, e.g. ('C 1s', 'O 1s')."""
        return tuple(dict.fromkeys(env.level.name for env, _ in self.environments))

    @property
    def atoms(self) -> int:
        """Atoms of the repeat unit that XPS sees (every atom but H)."""
        return sum(count for _, count in self.environments)

    def one_group_at_a_time(self) -> tuple[Polymer, ...]:
        """For a polymer with several heteroatom groups, one virtual polymer per such group: that
        group's environments on the polymer's carbon skeleton (its alkane, alkene and aromatic
        ring carbons). A spectrum is a sum over environments, so these show each group in ratios
        and company the library's polymers never do (what a polymer outside the library shows)."""
        groups = [g for g in self.labels if g not in SKELETON_GROUPS]
        if len(groups) < 2:
            return ()
        return tuple(
            Polymer(
                f"{self.name} [{group} only]",
                f"{self.abbr}:{group}",
                "",
                tuple((env, n) for env, n in self.environments if env.group in SKELETON_GROUPS or env.group == group),
            )
            for group in groups
        )

    def group_atoms(self) -> np.ndarray:
        """(labels,) atoms of the repeat unit in each functional group's environments."""
        out = np.zeros(len(LABEL_NAMES))
        for env, count in self.environments:
            if env.group:
                out[LABEL_NAMES.index(env.group)] += count
        return out


@dataclass(frozen=True)
class Instrument:
    photon_energy_ev: float
    imfp_exponent: float
    transmission_exponent: float

    def kinetic_energy_factor(self, be_ev):
        """Relative detected intensity from IMFP x analyser transmission at KE = hv - BE."""
        kinetic = self.photon_energy_ev - be_ev
        return kinetic ** (self.imfp_exponent + self.transmission_exponent)


@dataclass(frozen=True)
class LabelRules:
    """What core levels can settle about the labels (physics.toml [label_rules])."""

    undeterminable: tuple[str, ...] = ()  # labels no core-level spectrum can settle
    required_elements: tuple[str, ...] = ()  # a group with atoms of these needs their level recorded
    detection_limit: float = 0.0  # share of the sample's atoms below which a group is a trace
    alkane_min_carbon: float = 0.0  # alkane only above this share of the C 1s carbon
    source: str = ""


@dataclass(frozen=True)
class Library:
    instrument: Instrument
    sources: dict[str, str]
    levels: dict[str, CoreLevel]
    environments: dict[str, Environment]
    polymers: tuple[Polymer, ...]
    secondary_lines: dict[str, float] = field(default_factory=dict)  # name -> BE, library elements
    foreign_lines: dict[str, float] = field(default_factory=dict)  # name -> BE, elements it lacks
    # the hydrocarbon contamination layer on every air-exposed sample: lines without labels
    adventitious: Polymer | None = None
    # other surface contamination (trace oxidation, silicone): name -> lines without labels
    contaminants: dict[str, Polymer] = field(default_factory=dict)
    label_rules: LabelRules = LabelRules()

    def polymer(self, name: str) -> Polymer:
        """Find a polymer by name or abbreviation (case-insensitive)."""
        key = name.strip().lower()
        for p in self.polymers:
            if key in (p.name.lower(), p.abbr.lower()):
                return p
        raise LibraryError(f"unknown polymer {name!r}; see `xpstream library` for the list")

    def label_counts(self) -> dict[str, int]:
        """How many polymers carry each label, in contract order."""
        counts = Counter(label for p in self.polymers for label in p.labels)
        return {name: counts.get(name, 0) for name in LABEL_NAMES}

    def level_extent_ev(self, level: str) -> tuple[float, float]:
        """Lowest and highest line (doublet partners and shake-ups included) of a core level."""
        lines = [
            be
            for e in self.environments.values()
            if e.level.name == level
            for be in (e.be_ev, e.be_ev + e.level.split_ev, e.be_ev + (e.shakeup.offset_ev if e.shakeup else 0.0))
        ]
        if not lines:
            raise LibraryError(f"no environment of level {level!r}")
        return min(lines), max(lines)

    def label_levels(self, level_names) -> np.ndarray:
        """(labels, levels) bool: level j shows an environment that is evidence of label i."""
        out = np.zeros((len(LABEL_NAMES), len(level_names)), dtype=bool)
        for e in self.environments.values():
            if e.group and e.level.name in level_names:
                out[LABEL_NAMES.index(e.group), list(level_names).index(e.level.name)] = True
        return out

    def required_levels(self, level_names) -> np.ndarray:
        """(labels, levels) bool: level j must be recorded before label i can be judged - the
        levels of the label's heteroatoms in `label_rules.required_elements` (nitrate needs N 1s:
        O 1s alone is no evidence)."""
        required = set(self.label_rules.required_elements)
        out = np.zeros((len(LABEL_NAMES), len(level_names)), dtype=bool)
        for e in self.environments.values():
            if e.group and e.level.element in required and e.level.name in level_names:
                out[LABEL_NAMES.index(e.group), list(level_names).index(e.level.name)] = True
        return out

    def determinable_labels(self) -> np.ndarray:
        """(labels,) bool: False for the labels no core-level spectrum can settle."""
        return np.array([name not in self.label_rules.undeterminable for name in LABEL_NAMES])

    def extreme_lines_ev(self) -> tuple[tuple[str, float], tuple[str, float]]:
        """(name, BE) of the lowest and highest line of the library, doublet partners included."""
        lines = [(e.name, e.be_ev) for e in self.environments.values()]
        lines += [(e.name, e.be_ev + e.level.split_ev) for e in self.environments.values()]
        lines += [(e.name, e.be_ev + e.shakeup.offset_ev) for e in self.environments.values() if e.shakeup]
        return min(lines, key=lambda x: x[1]), max(lines, key=lambda x: x[1])


DATA = resources.files("xpstream.train") / "data"


def load_library(physics_path: Path | None = None, polymers_path: Path | None = None) -> Library:
    """Read and validate the physics and polymer files (the packaged ones by default)."""
    physics = _read_toml(physics_path or DATA / "physics.toml")
    polymers = _read_toml(polymers_path or DATA / "polymers.toml")
    sources = physics.get("sources", {})
    if not sources:
        raise LibraryError("physics file has no [sources] table")

    def where(kind, name, entry):
        src = entry.get("source", "")
        if not src or not any(key in src for key in sources):
            raise LibraryError(f"{kind} {name!r}: source {src!r} cites none of {sorted(sources)}")
        return src

    inst = physics.get("instrument", {})
    where("instrument", "instrument", inst)
    instrument = Instrument(
        photon_energy_ev=_positive("instrument", "photon_energy_ev", inst),
        imfp_exponent=_number("instrument", "imfp_exponent", inst),
        transmission_exponent=_number("instrument", "transmission_exponent", inst),
    )

    levels = {}
    for name, entry in physics.get("levels", {}).items():
        split = entry.get("split_ev", 0.0)
        ratio = entry.get("minor_ratio", 0.0)
        if ("split_ev" in entry) != ("minor_ratio" in entry):
            raise LibraryError(f"level {name!r}: give both split_ev and minor_ratio, or neither")
        levels[name] = CoreLevel(
            name=name,
            element=entry.get("element", ""),
            cross_section_barn=_positive(f"level {name!r}", "cross_section_barn", entry),
            lorentzian_fwhm_ev=_positive(f"level {name!r}", "lorentzian_fwhm_ev", entry),
            fwhm_ev=_positive(f"level {name!r}", "fwhm_ev", entry),
            split_ev=_positive(f"level {name!r}", "split_ev", entry) if split else 0.0,
            minor_ratio=_positive(f"level {name!r}", "minor_ratio", entry) if ratio else 0.0,
            source=where("level", name, entry),
        )
        if levels[name].element not in GRID_ELEMENTS:
            raise LibraryError(f"level {name!r}: element {levels[name].element!r} not one of {GRID_ELEMENTS}")
        if levels[name].fwhm_ev <= levels[name].lorentzian_fwhm_ev:
            raise LibraryError(f"level {name!r}: fwhm_ev must exceed lorentzian_fwhm_ev")

    environments = {}
    for name, entry in physics.get("environments", {}).items():
        what = f"environment {name!r}"
        if entry.get("level") not in levels:
            raise LibraryError(f"{what}: unknown level {entry.get('level')!r}")
        level = levels[entry["level"]]
        be = _positive(what, "be_ev", entry)
        if not GRID_START_EV < be < GRID_STOP_EV:
            raise LibraryError(f"{what}: be_ev {be} lies outside the grid {GRID_START_EV}-{GRID_STOP_EV} eV")
        group = entry.get("group", "")
        if group and group not in LABEL_NAMES:
            raise LibraryError(f"{what}: unknown functional-group label {group!r}")
        if entry.get("status") not in ("S", "E"):
            raise LibraryError(f"{what}: status must be 'S' (read in source) or 'E' (typical value)")
        fwhm = _positive(what, "fwhm_ev", entry) if "fwhm_ev" in entry else level.fwhm_ev
        if fwhm <= level.lorentzian_fwhm_ev:
            raise LibraryError(f"{what}: fwhm_ev must exceed the level's lorentzian_fwhm_ev")
        shake = entry.get("shakeup")
        if shake is not None:
            shake = ShakeUp(
                offset_ev=_positive(f"{what} shakeup", "offset_ev", shake),
                fraction=_positive(f"{what} shakeup", "fraction", shake),
                fwhm_ev=_positive(f"{what} shakeup", "fwhm_ev", shake),
            )
            if shake.fraction >= 1:
                raise LibraryError(f"{what}: shakeup fraction must be below 1")
        hydrocarbon = entry.get("hydrocarbon", group == "alkane")
        if not isinstance(hydrocarbon, bool) or (hydrocarbon and level.name != "C 1s"):
            raise LibraryError(f"{what}: hydrocarbon must be true or false, and true only for C 1s")
        environments[name] = Environment(
            name, level, be, fwhm, group, shake, where("environment", name, entry), entry["status"], hydrocarbon
        )

    def build(pname, entry, what):
        envs = []
        for env_name, count in entry.get("environments", {}).items():
            if env_name not in environments:
                raise LibraryError(f"{what}: unknown environment {env_name!r}")
            if not isinstance(count, int) or count <= 0:
                raise LibraryError(f"{what}: count of {env_name!r} must be a positive integer")
            envs.append((environments[env_name], count))
        if not envs:
            raise LibraryError(f"{what}: no environments")
        where("polymer", pname, entry)
        polymer = Polymer(pname, entry["abbr"], entry.get("formula", ""), tuple(envs))
        _check_formula(what, polymer)
        return polymer

    polymer_list = []
    seen = set()
    for i, entry in enumerate(polymers.get("polymers", [])):
        pname = entry.get("name") or f"#{i}"
        what = f"polymer {pname!r}"
        for key in {pname.lower(), entry.get("abbr", "").lower()}:
            if not key or key in seen:
                raise LibraryError(f"{what}: missing or duplicate name/abbreviation {key!r}")
            seen.add(key)
        polymer_list.append(build(pname, entry, what))
    if not polymer_list:
        raise LibraryError("polymer file holds no [[polymers]]")

    def contamination(name, entry, what):
        layer = build(name, entry, what)
        if layer.labels:
            raise LibraryError(f"{what}: its environments must carry no group, got {layer.labels}")
        return layer

    adventitious = None
    if "adventitious_carbon" in physics:
        adventitious = contamination("adventitious carbon", physics["adventitious_carbon"], "[adventitious_carbon]")
    contaminants = {
        name: contamination(name, entry, f"[contaminants.{name}]")
        for name, entry in physics.get("contaminants", {}).items()
    }
    rules = _label_rules(physics.get("label_rules", {}), where)
    lines = {}
    for kind in ("secondary_lines", "foreign_lines"):
        lines[kind] = {}
        for name, entry in physics.get(kind, {}).items():
            where(kind.replace("_", " ")[:-1], name, entry)
            lines[kind][name] = _positive(f"{kind} {name!r}", "be_ev", entry)
    return Library(
        instrument,
        dict(sources),
        levels,
        environments,
        tuple(polymer_list),
        adventitious=adventitious,
        contaminants=contaminants,
        label_rules=rules,
        **lines,
    )


def _label_rules(entry: dict, where) -> LabelRules:
    if not entry:
        return LabelRules()
    where("label_rules", "label_rules", entry)
    undeterminable = tuple(entry.get("undeterminable", ()))
    elements = tuple(entry.get("required_elements", ()))
    for name in undeterminable:
        if name not in LABEL_NAMES:
            raise LibraryError(f"[label_rules]: unknown label {name!r} in undeterminable")
    for element in elements:
        if element not in GRID_ELEMENTS:
            raise LibraryError(f"[label_rules]: required element {element!r} not one of {GRID_ELEMENTS}")
    shares = {}
    for key in ("detection_limit", "alkane_min_carbon"):
        shares[key] = _number("[label_rules]", key, entry) if key in entry else 0.0
        if not 0.0 <= shares[key] < 1.0:
            raise LibraryError(f"[label_rules]: {key} must lie in [0, 1), got {shares[key]}")
    return LabelRules(undeterminable, elements, source=entry["source"], **shares)


def _read_toml(path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise LibraryError(f"cannot read library file {path}: {err}") from None


def _number(what: str, key: str, entry: dict) -> float:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LibraryError(f"{what}: {key} must be a finite number, got {value!r}")
    return float(value)


def _positive(what: str, key: str, entry: dict) -> float:
    value = _number(what, key, entry)
    if value <= 0:
        raise LibraryError(f"{what}: {key} must be positive, got {value!r}")
    return value


def _check_formula(what: str, polymer: Polymer) -> None:
    """The environments must account for every grid-visible atom of the formula."""
    formula = Counter()
    for element, n in re.findall(r"([A-Z][a-z]?)(\d*)", polymer.formula):
        formula[element] += int(n or 1)
    if not formula:
        raise LibraryError(f"{what}: missing formula")
    counted = Counter()
    for env, n in polymer.environments:
        counted[env.level.element] += n
    expected = {e: formula[e] for e in GRID_ELEMENTS if formula[e]}
    if dict(counted) != expected:
        raise LibraryError(f"{what}: environments count atoms {dict(counted)}, formula says {expected}")
