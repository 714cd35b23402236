"""The base-spectrum simulator against independent physics computations."""

import tomllib

import numpy as np
import pytest
from scipy.optimize import curve_fit
from scipy.special import voigt_profile

from xpstream.contract import GRID_STEP_EV, energy_grid
from xpstream.train.acquisition import REGION_WINDOWS_EV
from xpstream.train.library import DATA, Polymer
from xpstream.train.simulate import (
    FWHM_PER_SIGMA,
    Jitter,
    band_limit,
    base_spectrum,
    look_alikes,
    polymer_lines,
    render_fourier,
    to_grid,
)

GRID = energy_grid()
PHYSICS = tomllib.loads((DATA / "physics.toml").read_text())


def direct_voigt(lines, shift_ev=0.0):
    """Lines evaluated with scipy's Voigt profile, per grid sample (an independent renderer)."""
    out = np.zeros_like(GRID)
    for c, a, g, lz in zip(lines.centre_ev, lines.area, lines.gauss_fwhm_ev, lines.lorentz_fwhm_ev, strict=True):
        out += a * GRID_STEP_EV * voigt_profile(GRID - c - shift_ev, g / FWHM_PER_SIGMA, lz / 2)
    return out


def peak_position(spectrum, lo, hi):
    """Maximum in [lo, hi] eV, refined by a parabola through the top three samples."""
    idx = np.flatnonzero((lo <= GRID) & (hi >= GRID))
    i = idx[np.argmax(spectrum[idx])]
    y0, y1, y2 = spectrum[i - 1 : i + 2]
    return GRID[i] + 0.5 * GRID_STEP_EV * (y0 - y2) / (y0 - 2 * y1 + y2)


@pytest.mark.parametrize("abbr", ["PS", "PVC", "PBPP", "PTFEA", "P4BrS", "PDMS"])
def test_fourier_rendering_equals_direct_voigt(library, abbr):
    lines = polymer_lines(library, library.polymer(abbr))
    ours = to_grid(render_fourier(lines, band_limit(lines.gauss_fwhm_ev.min())))
    theirs = direct_voigt(lines)
    assert np.max(np.abs(ours - theirs)) < 1e-4 * theirs.max()


def test_every_environment_peaks_at_its_sourced_energy(library):
    for env in library.environments.values():
        lines = polymer_lines(library, Polymer(env.name, env.name, "", ((env, 1),)))
        spectrum = to_grid(render_fourier(lines, band_limit(lines.gauss_fwhm_ev.min())))
        lvl = env.level
        if lvl.split_ev:  # doublet: the area-weighted centre of both components
            window = (env.be_ev - 5 < GRID) & (env.be_ev + lvl.split_ev + 5 > GRID)
            centre = np.sum(GRID[window] * spectrum[window]) / spectrum[window].sum()
            expected = env.be_ev + lvl.split_ev * lvl.minor_ratio / (1 + lvl.minor_ratio)
        else:
            centre = peak_position(spectrum, env.be_ev - 1, env.be_ev + 1)
            expected = env.be_ev
        assert abs(centre - expected) <= 0.05, (env.name, centre, expected)


def expected_level_fractions(abbr):
    """Area share of each core level from the data files alone: n x sigma x KE^(a + b)."""
    polymers = tomllib.loads((DATA / "polymers.toml").read_text())["polymers"]
    entry = next(p for p in polymers if p["abbr"] == abbr)
    inst = PHYSICS["instrument"]
    exponent = inst["imfp_exponent"] + inst["transmission_exponent"]
    shares = {}
    for env_name, n in entry["environments"].items():
        env = PHYSICS["environments"][env_name]
        sigma = PHYSICS["levels"][env["level"]]["cross_section_barn"]
        ke = inst["photon_energy_ev"] - env["be_ev"]
        shares[env["level"]] = shares.get(env["level"], 0.0) + n * sigma * ke**exponent
    total = sum(shares.values())
    return {k: v / total for k, v in shares.items()}


@pytest.mark.parametrize("abbr", ["PMMA", "PVC", "PDMS", "PES", "P4BrS", "PBPP", "Kapton", "PTFE", "CN"])
def test_level_areas_follow_stoichiometry_cross_section_and_kinetic_factor(library, abbr):
    spectrum = base_spectrum(library, library.polymer(abbr))
    for level, share in expected_level_fractions(abbr).items():
        lo, hi = REGION_WINDOWS_EV[level]
        measured = spectrum[(lo <= GRID) & (hi >= GRID)].sum()
        assert measured == pytest.approx(share, rel=0.02), (abbr, level)


def voigt_doublet(x, centre, area, ratio, split, gauss, lorentz):
    return (
        area
        * GRID_STEP_EV
        * (
            voigt_profile(x - centre, gauss / FWHM_PER_SIGMA, lorentz / 2)
            + ratio * voigt_profile(x - centre - split, gauss / FWHM_PER_SIGMA, lorentz / 2)
        )
    )


@pytest.mark.parametrize("abbr, level", [("PVC", "Cl 2p"), ("P4BrS", "Br 3d"), ("PPS", "S 2p"), ("PBPP", "P 2p")])
def test_doublet_ratio_and_splitting_recovered_by_a_fit(library, abbr, level):
    spectrum = base_spectrum(library, library.polymer(abbr))
    lvl = PHYSICS["levels"][level]
    lo, hi = REGION_WINDOWS_EV[level]
    window = (lo <= GRID) & (hi >= GRID)
    x, y = GRID[window], spectrum[window]
    lorentz = lvl["lorentzian_fwhm_ev"]
    start = (x[np.argmax(y)], y.sum() / GRID_STEP_EV, 0.6, 1.0, 1.0)
    (_, _, ratio, split, _), _ = curve_fit(
        lambda x, c, a, r, s, g: voigt_doublet(x, c, a, r, s, g, lorentz), x, y, p0=start
    )
    assert ratio == pytest.approx(lvl["minor_ratio"], rel=0.02)
    assert split == pytest.approx(lvl["split_ev"], abs=0.02)


def test_aromatic_shake_up_satellite(library):
    spectrum = base_spectrum(library, library.polymer("PS"))
    shake = PHYSICS["environments"]["C_arom"]["shakeup"]
    position = peak_position(spectrum, 289.5, 294.0)
    assert position == pytest.approx(284.7 + shake["offset_ev"], abs=0.1)
    c1s = spectrum[(GRID >= 278) & (GRID <= 300)].sum()
    satellite = spectrum[(GRID >= 289.0) & (GRID <= 300)].sum()
    # PS: 6 aromatic C of 8, satellite takes `fraction` of their area (KE factors differ < 0.1 %)
    assert satellite / c1s == pytest.approx(shake["fraction"] * 6 / 8, abs=0.004)


def test_shake_up_jitter_keeps_a_share_of_the_satellite_and_the_main_line(library):
    polymer = library.polymer("PS")
    exact = polymer_lines(library, polymer)
    satellite = exact.centre_ev > 289.0
    rng = np.random.default_rng(3)
    kept = []
    for _ in range(200):
        lines = polymer_lines(library, polymer, rng, Jitter(shakeup=1.0))
        np.testing.assert_allclose(lines.area[~satellite], exact.area[~satellite])
        kept.append(lines.area[satellite].sum() / exact.area[satellite].sum())
    assert 0.0 <= min(kept) < 0.1 and 0.9 < max(kept) <= 1.0
    np.testing.assert_allclose(polymer_lines(library, polymer, rng, Jitter(shakeup=0.0)).area, exact.area)
    with pytest.raises(ValueError, match="shake-up jitter"):
        Jitter(shakeup=1.5)


def test_jitter_moves_each_environment_on_its_own_within_bounds(library):
    """Binding-energy scatter up to +-0.3 eV, drawn independently per environment; widths
    scaled within the asked range; bad values refused."""
    polymer = library.polymer("PMMA")
    exact = polymer_lines(library, polymer)
    rng = np.random.default_rng(1)
    moves, ratios = [], []
    for _ in range(400):
        lines = polymer_lines(library, polymer, rng, Jitter(be_ev=0.3, width_scale=(0.7, 1.5)))
        moves.append(lines.centre_ev - exact.centre_ev)
        lorentz = exact.lorentz_fwhm_ev
        ratios.append((lines.fwhm_ev - lorentz) / (exact.fwhm_ev - lorentz))
    moves, ratios = np.array(moves), np.array(ratios)
    assert np.abs(moves).max() <= 0.3 + 1e-9 and np.abs(moves).max() > 0.28
    correlation = np.corrcoef(moves.T)[np.triu_indices(moves.shape[1], 1)]
    assert np.abs(correlation).max() < 0.2  # environments scatter independently
    assert ratios.min() > 0.69 and ratios.max() < 1.51 and ratios.min() < 0.75 and ratios.max() > 1.45
    with pytest.raises(ValueError, match="lie in"):
        Jitter(be_ev=0.35)
    with pytest.raises(ValueError, match="width scale"):
        Jitter(width_scale=(1.2, 0.8))


def test_look_alikes_are_the_closest_pairs_with_different_labels(library):
    pairs = look_alikes(library, 30)
    distances = [distance for distance, *_ in pairs]
    assert distances == sorted(distances) and 0 < distances[0] < 2
    for distance, a, b, differ in pairs:
        assert set(differ) == set(a.labels) ^ set(b.labels) and differ
        assert distance == pytest.approx(float(np.abs(base_spectrum(library, a) - base_spectrum(library, b)).sum()))
    # quaterphenyl's ring C (284.7) and naphthalene's (284.65): the library's closest pair
    assert {pairs[0][1].abbr, pairs[0][2].abbr} == {"4P", "P2VN"}
    # olefinic C=C sits on the aromatic ring's energy (284.7): only the shake-up tells them apart
    assert any(differ == ["alkene", "benzene_ring"] for *_, differ in pairs[:10])
