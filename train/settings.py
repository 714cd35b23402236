"""Generator settings: everything that defines a synthetic data set (`MixtureSettings`, stored
with the data and with every trained model), each field with its command-line help beside its
default, and the checks of a setting against the library (`validate`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from xpstream.contract import GRID_START_EV, GRID_STOP_EV
from xpstream.train.library import Library, LibraryError, Polymer
from xpstream.train.simulate import LINESHAPES, Jitter

MAX_COMPONENTS = 4
# A line must keep this many eV inside the grid at the largest shift.
EDGE_MARGIN_EV = 3.0
ACQUISITIONS = ("full", "regions", "random")
LABEL_RULES = ("union", "physics")
# "Most" air-exposed samples show adventitious carbon (Review2026: 5-20 % of C 1s on typical
# polymer films); a fifth are drawn clean (freshly cut, sputtered or measured in situ).
ADVENTITIOUS_SHARE_OF_SPECTRA = 0.8
SILICONE_SHARE_OF_SPECTRA = 0.25  # "in some spectra": release agents, gloves, vacuum grease
# Uneven charging of an insulating film: the surface potential varies across the analysed spot,
# so every line of the spectrum is smeared by the same potential distribution (reasoned: a
# uniform shift is its mean, the spread its width). Seen in the measured PBTTT film (C 1s ~4 eV
# wide, S 2p +2 eV). Drawn for some spectra only: charge neutralisation usually works.
CHARGING_BROADENED_SHARE_OF_SPECTRA = 0.2
MAX_CHARGING_BROADENING_EV = 2.0
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
    charging_broadening_ev: float = option(
        0.0,
        f"uneven charging: in {CHARGING_BROADENED_SHARE_OF_SPECTRA:.0%} of spectra every line gets an extra "
        f"Gaussian sigma U(0, x) eV (<= {MAX_CHARGING_BROADENING_EV:g})",
    )
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
    sub_polymers: bool = option(
        False, "also draw each polymer with several heteroatom groups as one group at a time on its skeleton"
    )
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


def select_polymers(library: Library, s: MixtureSettings) -> tuple[Polymer, ...]:
    """The polymers the settings choose (all by default), without the excluded ones; with
    sub_polymers, also the chosen ones' one-group-at-a-time variants."""
    chosen = tuple(library.polymer(n) for n in s.polymers) if s.polymers else library.polymers
    excluded = {library.polymer(n).name for n in s.exclude_polymers}
    kept = tuple(p for p in chosen if p.name not in excluded)
    if s.sub_polymers:
        kept += tuple(sub for p in kept for sub in p.one_group_at_a_time())
    return kept


def validate(library: Library, s: MixtureSettings, polymers) -> Jitter:
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
    if not 0.0 <= s.charging_broadening_ev <= MAX_CHARGING_BROADENING_EV:
        raise SettingsError(
            f"charging_broadening_ev must lie in [0, {MAX_CHARGING_BROADENING_EV:g}], got {s.charging_broadening_ev}"
        )
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
