import math
import re
import tomllib

import pytest

from tests.conftest import run_cli
from xpstream.contract import LABEL_NAMES
from xpstream.train.library import DATA, LibraryError, load_library

PHYSICS = (DATA / "physics.toml").read_text()
POLYMERS = (DATA / "polymers.toml").read_text()


def test_library_has_100_polymers_covering_every_label(library):
    assert len(library.polymers) >= 100
    counts = library.label_counts()
    assert list(counts) == list(LABEL_NAMES)
    assert all(n >= 1 for n in counts.values()), {k: v for k, v in counts.items() if v == 0}


def test_every_entry_cites_a_source():
    physics = tomllib.loads(PHYSICS)
    keys = physics["sources"]
    tables = [physics["instrument"], *physics["levels"].values(), *physics["environments"].values()]
    tables.append(physics["adventitious_carbon"])
    tables += tomllib.loads(POLYMERS)["polymers"]
    for entry in tables:
        assert any(k in entry["source"] for k in keys), entry


def test_labels_follow_the_environments(library):
    pmma = library.polymer("pmma")
    assert pmma.labels == ("ester_aliphatic", "alkane")
    assert library.polymer("poly(ethylene glycol)").labels == ("ether_aliphatic",)
    assert set(library.polymer("Kapton").labels) == {"benzene_ring", "ether_aromatic", "imide"}
    with pytest.raises(LibraryError, match="unknown polymer 'PXYZ'"):
        library.polymer("PXYZ")


def _load_modified(tmp_path, physics=PHYSICS, polymers=POLYMERS):
    (tmp_path / "p.toml").write_text(physics)
    (tmp_path / "q.toml").write_text(polymers)
    return load_library(tmp_path / "p.toml", tmp_path / "q.toml")


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("fwhm_ev = 0.90", "fwhm_ev = nan", r"level 'C 1s': fwhm_ev must be a finite number"),
        (
            "fwhm_ev = 1.15\nsplit_ev = 0.61",
            "fwhm_ev = -1.15\nsplit_ev = 0.61",
            r"level 'Si 2p': fwhm_ev must be positive",
        ),
        (
            'group = "nitrile"',
            'group = "cyanide"',
            r"environment 'C_nitrile': unknown functional-group label 'cyanide'",
        ),
        ("be_ev = 70.45", "be_ev = 20.0", r"environment 'Br_arom': be_ev 20.0 lies outside the grid"),
        (
            'source = "BB92 (PVF 287.9-288.0)"',
            'source = "my notebook"',
            r"environment 'C_CHF': source 'my notebook'",
        ),
        ("[environments.C_CH]", "[environments.C_CH\n", r"cannot read library file"),
        (
            "environments = { C_adv_CH = 15,",
            "environments = { C_CH = 15,",
            r"\[adventitious_carbon\]: its environments must carry no group, got \('alkane',\)",
        ),
    ],
)
def test_malformed_physics_file_is_refused_naming_the_entry(tmp_path, old, new, message):
    assert old in PHYSICS
    with pytest.raises(LibraryError, match=message):
        _load_modified(tmp_path, physics=PHYSICS.replace(old, new, 1))


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "environments = { C_CH = 2 }",
            "environments = { C_HH = 2 }",
            r"polymer 'high-density polyethylene': unknown environment 'C_HH'",
        ),
        ("environments = { C_CH = 2 }", "environments = { C_CH = 3 }", r"formula says \{'C': 2\}"),
        ("environments = { C_CH = 2 }", "environments = { C_CH = -2 }", r"positive integer"),
        ('abbr = "PP"', 'abbr = "HDPE"', r"duplicate name/abbreviation 'hdpe'"),
    ],
)
def test_malformed_polymer_file_is_refused_naming_the_entry(tmp_path, old, new, message):
    assert old in POLYMERS
    with pytest.raises(LibraryError, match=message):
        _load_modified(tmp_path, polymers=POLYMERS.replace(old, new, 1))


def test_formulas_match_environment_counts(library):
    # load_library checks this; here an independent recount for a few polymers
    for abbr, expected in {
        "PMMA": {"C": 5, "O": 2},
        "Kapton": {"C": 22, "N": 2, "O": 5},
        "PSS-Na": {"C": 8, "O": 3, "S": 1},
    }.items():
        counted = {}
        for env, n in library.polymer(abbr).environments:
            counted[env.level.element] = counted.get(env.level.element, 0) + n
        assert counted == expected


def test_scofield_1s_ratios_agree_with_xraylib():
    """K-shell ratios to C 1s from xraylib agree with the tabulated Scofield values (2 %).

    (xraylib's L and M subshell partition at 1.49 keV does not reproduce Scofield's p/d
    values, which is why the library tabulates Scofield instead of calling xraylib.)"""
    xraylib = pytest.importorskip("xraylib")
    levels = tomllib.loads(PHYSICS)["levels"]
    c1s = xraylib.CSb_Photo_Partial(6, xraylib.K_SHELL, 1.4866)
    for name, z in {"N 1s": 7, "O 1s": 8, "F 1s": 9}.items():
        ours = levels[name]["cross_section_barn"] / levels["C 1s"]["cross_section_barn"]
        theirs = xraylib.CSb_Photo_Partial(z, xraylib.K_SHELL, 1.4866) / c1s
        assert math.isclose(ours, theirs, rel_tol=0.02), (name, ours, theirs)


def test_library_command_prints_every_label_with_a_count():
    out = run_cli("library").stdout
    assert int(re.match(r"(\d+) polymers", out).group(1)) >= 100
    for line in out.splitlines()[2:34]:
        assert int(line.split()[-1]) >= 1, line
    assert len(out.splitlines()) == 34
