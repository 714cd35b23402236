"""The mixture generator: protocol, exact shifts, options and determinism."""

from dataclasses import replace

import numpy as np
import pytest

from tests.conftest import draw
from tests.test_simulate import GRID, direct_voigt, peak_position
from xpstream.contract import LABEL_NAMES
from xpstream.train.acquisition import REGION_WINDOWS_EV
from xpstream.train.mixtures import MixtureGenerator, MixtureSettings
from xpstream.train.settings import SettingsError
from xpstream.train.simulate import ZERO_BELOW, polymer_lines


def test_protocol_components_weights_labels(library):
    gen, b = draw(library, n=4000, max_shift_ev=3.0)
    assert b.spectra.shape == (4000, 6601) and b.spectra.dtype == np.float32
    assert np.allclose(b.spectra.sum(axis=1), 1.0, atol=1e-5)
    assert (b.spectra >= 0).all()
    used = b.components >= 0
    assert set(used.sum(axis=1)) == {2, 3, 4}
    assert np.allclose(b.weights.sum(axis=1), 1.0, atol=1e-6)
    assert (b.weights[~used] == 0).all() and (b.weights[used] > 0).all()
    for i in range(200):
        union = set()
        for c in b.components[i][used[i]]:
            union |= set(gen.polymers[c].labels)
        assert {LABEL_NAMES[j] for j in np.flatnonzero(b.labels[i])} == union
    assert np.abs(b.shift_ev).max() <= 3.0 and b.shift_ev.min() < -2.5 and b.shift_ev.max() > 2.5
    # broadening sigma ~ HalfNormal(0.2): mean 0.2 * sqrt(2 / pi) = 0.160
    assert b.broadening_ev.mean() == pytest.approx(0.2 * np.sqrt(2 / np.pi), abs=0.01)


def test_shift_moves_every_line_by_exactly_the_applied_shift(library):
    _, b = draw(
        library,
        n=32,
        max_shift_ev=5.0,
        broadening_scale_ev=0.0,
        polymers=("PVC",),
        min_components=1,
        max_components=1,
    )
    lines = polymer_lines(library, library.polymer("PVC"))
    unshifted = peak_position(direct_voigt(lines), 280, 292)
    for spectrum, shift in zip(b.spectra, b.shift_ev, strict=True):
        expected = direct_voigt(lines, shift_ev=float(shift))
        expected /= expected.sum()
        expected[expected < ZERO_BELOW] = 0.0  # the representation drops far tails ...
        expected /= expected.sum()  # ... and renormalises
        assert np.max(np.abs(spectrum - expected)) < 1e-4 * expected.max()
        assert peak_position(spectrum, 280 + shift, 292 + shift) - unshifted == pytest.approx(shift, abs=0.01)


def interpolated_fwhm(spectrum):
    """Full width at half maximum, flanks located by linear interpolation between samples."""
    half = spectrum.max() / 2
    above = np.flatnonzero(spectrum >= half)
    i, j = above[0], above[-1]
    left = GRID[i - 1] + (half - spectrum[i - 1]) / (spectrum[i] - spectrum[i - 1]) * (GRID[i] - GRID[i - 1])
    right = GRID[j] + (spectrum[j] - half) / (spectrum[j] - spectrum[j + 1]) * (GRID[j + 1] - GRID[j])
    return right - left


def test_broadening_widens_the_peak_as_a_gaussian_convolution(library):
    _, b = draw(
        library,
        n=64,
        max_shift_ev=0.0,
        broadening_scale_ev=0.4,
        polymers=("HDPE",),
        min_components=1,
        max_components=1,
    )
    g0 = polymer_lines(library, library.polymer("HDPE")).gauss_fwhm_ev[0]
    for spectrum, sigma in zip(b.spectra, b.broadening_ev, strict=True):
        fwhm = interpolated_fwhm(spectrum)
        gauss = np.hypot(g0, 2.3548 * sigma)
        voigt = 0.5346 * 0.09 + np.sqrt(0.2166 * 0.09**2 + gauss**2)
        assert fwhm == pytest.approx(voigt, abs=0.02)


def test_same_seed_same_data_whatever_the_threads(library):
    gen = MixtureGenerator(
        library, MixtureSettings(noise_counts=1e4, be_jitter_ev=0.05, width_scale=(0.95, 1.05)), seed=7
    )
    a = gen.generate(300, chunk=64, workers=1)
    b = gen.generate(300, chunk=64, workers=2)
    again = MixtureGenerator(library, gen.settings, seed=7).generate(300, chunk=64, workers=2)
    other = MixtureGenerator(library, gen.settings, seed=8).generate(300, chunk=64, workers=2)
    for name in ("spectra", "labels", "shift_ev", "weights", "components"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
        assert np.array_equal(getattr(a, name), getattr(again, name))
    assert not np.array_equal(a.spectra, other.spectra)
    gen.new_epoch(1)
    assert not np.array_equal(gen.generate(300, chunk=64).spectra, a.spectra)


def test_counting_noise_has_poisson_magnitude(library):
    counts = 1e5
    _, clean = draw(library, n=200, seed=3)
    _, noisy = draw(library, n=200, seed=3, noise_counts=counts)
    assert np.array_equal(clean.shift_ev, noisy.shift_ev)
    strong = clean.spectra > 1e-3
    z = (noisy.spectra - clean.spectra)[strong] / np.sqrt(clean.spectra[strong] / counts)
    assert z.std() == pytest.approx(1.0, rel=0.1)
    assert np.allclose(noisy.spectra.sum(axis=1), 1.0, atol=1e-5)


def test_regions_acquisition_zeroes_everything_outside_the_recorded_regions(library):
    gen, b = draw(library, n=300, acquisition="regions", residual_background=0.05)
    for i in range(300):
        levels = set()
        for c in b.components[i][b.components[i] >= 0]:
            levels |= set(gen.polymers[c].levels)
        inside = np.zeros(GRID.size, dtype=bool)
        for level in levels:
            lo, hi = REGION_WINDOWS_EV[level]
            inside |= (lo <= GRID) & (hi >= GRID)
        assert (b.spectra[i][~inside] == 0).all()
        assert b.spectra[i].sum() == pytest.approx(1.0, abs=1e-5)


def test_residual_background_changes_only_recorded_regions(library):
    _, clean = draw(library, n=100, seed=5, acquisition="regions")
    _, residual = draw(library, n=100, seed=5, acquisition="regions", residual_background=0.05)
    changed = np.abs(residual.spectra - clean.spectra) > 1e-7
    assert changed.any()
    assert not (changed & (clean.spectra == 0) & (residual.spectra == 0)).any()


def test_adventitious_carbon_adds_c_and_o_lines_but_no_label(library):
    """PTFE has no C-C/C-H and no oxygen: whatever appears at 285 eV and in O 1s is the
    contamination layer. It takes U(0, 0.25) of the C 1s area in about 80 % of the spectra, and
    the labels and the sample's composition stay PTFE's."""
    common = dict(max_shift_ev=0.0, broadening_scale_ev=0.0, polymers=("PTFE",), min_components=1, max_components=1)
    _, clean = draw(library, n=1000, **common)
    _, dirty = draw(library, n=1000, adventitious_carbon=0.25, **common)
    hydrocarbon = (GRID > 283.5) & (GRID < 290.5)
    c1s = (GRID > 278.0) & (GRID < 300.0)
    oxygen = (GRID > 528.0) & (GRID < 538.0)
    assert clean.spectra[:, hydrocarbon].sum(axis=1).max() < 1e-3 and clean.spectra[:, oxygen].sum() == 0

    def hydrocarbon_share(batch):
        return batch.spectra[:, hydrocarbon].sum(axis=1) / batch.spectra[:, c1s].sum(axis=1)

    share = hydrocarbon_share(dirty) - hydrocarbon_share(clean).max()  # less PTFE's own far tails
    assert share.max() <= 0.25 + 1e-3 and share.max() > 0.23
    assert np.mean(share < 1e-4) == pytest.approx(0.2, abs=0.04)  # clean samples
    assert (dirty.spectra[:, oxygen].sum(axis=1) > 0).mean() == pytest.approx(0.8, abs=0.04)
    np.testing.assert_array_equal(dirty.labels, clean.labels)
    np.testing.assert_allclose(dirty.group_fraction, clean.group_fraction)
    assert (
        1.0 - dirty.weights.sum(axis=1)
    ).max() > 0.03  # 1 - weights: the contamination's area (F 1s is most of PTFE's)


def test_sub_polymers_show_one_heteroatom_group_at_a_time_and_never_reach_test_sets(library):
    """--sub-polymers: PEEK (ring, aromatic ether, aromatic ketone) is also drawn as its ring
    with the ether only and with the ketone only; a polymer with one heteroatom group adds
    nothing; the transfer and evaluation test sets hold library polymers only."""
    from xpstream.train.transfer import transfer_settings

    ether, ketone = library.polymer("PEEK").one_group_at_a_time()
    assert ether.labels == ("benzene_ring", "ether_aromatic") and ketone.labels == ("benzene_ring", "ketone_aromatic")
    rings = {env.name: n for env, n in library.polymer("PEEK").environments}["C_arom"]
    assert {env.name: n for env, n in ketone.environments} == {"C_arom": rings, "C_ketone_arom": 1, "O_ketone_arom": 1}
    assert library.polymer("PMMA").one_group_at_a_time() == ()
    settings = MixtureSettings(polymers=("PEEK", "PMMA"), sub_polymers=True, max_shift_ev=0.0, min_components=1)
    generator = MixtureGenerator(library, replace(settings, max_components=1), seed=1)
    assert [p.abbr for p in generator.polymers] == ["PEEK", "PMMA", "PEEK:ether_aromatic", "PEEK:ketone_aromatic"]
    batch = generator.generate(400)
    drawn = {tuple(np.flatnonzero(row)) for row in batch.labels}
    assert {tuple(LABEL_NAMES.index(g) for g in p.labels) for p in generator.polymers} <= drawn
    for test in transfer_settings(settings).values():
        assert len(MixtureGenerator(library, test).polymers) == 2


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"max_shift_ev": 9.0}, r"pushes environment 'F_CF2' off the .* largest allowed is 7.35 eV"),
        ({"min_components": 0}, r"components must satisfy"),
        ({"max_components": 5}, r"components must satisfy"),
        ({"be_jitter_ev": 0.4}, r"jitter must lie in \[0, 0.3\]"),
        ({"broadening_scale_ev": float("nan")}, r"broadening_scale_ev must be a finite number"),
        ({"noise_counts": -1.0}, r"noise_counts must be a finite number >= 0"),
        ({"adventitious_carbon": 1.0}, r"adventitious_carbon must lie in \[0, 0.5\)"),
        ({"lineshapes": ("lorentz",)}, r"lineshapes must be some of"),
        ({"label_rule": "any"}, r"label_rule must be one of"),
        ({"noise_counts": 1e5, "noise_counts_max": 1e3}, r"noise_counts_max .* is below noise_counts"),
        ({"shakeup_jitter": 2.0}, r"shake-up jitter must lie in \[0, 1\]"),
    ],
)
def test_bad_settings_raise_a_clear_error(library, settings, message):
    with pytest.raises(SettingsError, match=message):
        MixtureGenerator(library, MixtureSettings(**settings))
