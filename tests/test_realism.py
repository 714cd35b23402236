"""The generator's realism options (issue 17): each does what it says, and labels and compositions
follow the physics rules."""

import math

import numpy as np
import pytest
import scipy.fft

from tests.conftest import draw
from xpstream.contract import GRID_STEP_EV, LABEL_NAMES, energy_grid
from xpstream.train.acquisition import LEVELS, label_determined
from xpstream.train.mixtures import MixtureGenerator, MixtureSettings
from xpstream.train.settings import CHARGING_BROADENED_SHARE_OF_SPECTRA, SettingsError
from xpstream.train.simulate import FFT_SIZE, Jitter, Lines, polymer_lines, render_fourier, to_grid

GRID = energy_grid()
ONE = dict(max_shift_ev=0.0, broadening_scale_ev=0.0, min_components=1, max_components=1)


def fwhm_of(profile):
    above = np.flatnonzero(profile >= profile.max() / 2)
    return (above[-1] - above[0] + 1) * GRID_STEP_EV


@pytest.mark.parametrize("shape, parameter", [("gl_sum", 0.3), ("gl_product", 0.3), ("pearson7", 2.0)])
def test_line_shape_families_keep_area_centre_and_width(shape, parameter):
    lines = Lines(np.array([300.0]), np.ones(1), np.array([1.2]), np.array([0.1]), ("C 1s",))
    profile = to_grid(render_fourier(lines, FFT_SIZE // 2 + 1, shape, parameter))
    assert profile.sum() == pytest.approx(1.0, abs=1e-3)  # Lorentzian wings reach past the cropped grid
    assert GRID[np.argmax(profile)] == pytest.approx(300.0, abs=0.051)
    assert fwhm_of(profile) == pytest.approx(float(lines.fwhm_ev[0]), abs=0.11)
    gauss = to_grid(render_fourier(lines, FFT_SIZE // 2 + 1, "gl_sum", 0.0))
    far = np.abs(GRID - 300.0) > 3.0
    assert profile[far].sum() > 5 * gauss[far].sum()  # Lorentzian wings a Gaussian lacks


def test_gl_sum_is_the_area_weighted_sum_of_gaussian_and_lorentzian():
    lines = Lines(np.array([300.0]), np.ones(1), np.array([1.0]), np.array([1e-9]), ("C 1s",))
    x = GRID - 300.0
    gauss = np.exp(-4 * math.log(2) * x**2)
    lorentz = 1 / (1 + 4 * x**2)
    expected = 0.7 * gauss / gauss.sum() + 0.3 * lorentz / lorentz.sum()
    ours = to_grid(render_fourier(lines, FFT_SIZE // 2 + 1, "gl_sum", 0.3))
    assert np.abs(ours - expected).max() < 2e-3 * expected.max()  # Lorentz wings beyond the grid differ


def test_hydrocarbon_tail_moves_area_to_higher_binding_energy_only_on_hydrocarbon_lines(library):
    pe, pmma = library.polymer("HDPE"), library.polymer("PMMA")
    rng = np.random.default_rng(0)
    tailed = polymer_lines(library, pe, rng, Jitter(tail=0.5))
    plain = polymer_lines(library, pe)
    a = to_grid(render_fourier(tailed, FFT_SIZE // 2 + 1))
    b = to_grid(render_fourier(plain, FFT_SIZE // 2 + 1))
    assert a.sum() == pytest.approx(b.sum(), rel=1e-6)
    centroid = [float((GRID * s).sum() / s.sum()) for s in (a, b)]
    assert 0.0 < centroid[0] - centroid[1] < 0.5 * 1.0 + 1e-6  # at most tail x decay length
    pmma_lines = polymer_lines(library, pmma, rng, Jitter(tail=0.5))
    assert pmma_lines.tail[pmma_lines.centre_ev < 286.0].all()  # CH3, CH2 and the quaternary C
    assert not pmma_lines.tail[pmma_lines.centre_ev > 286.0].any()  # ester carbons and oxygens


def test_differential_charging_moves_levels_apart_within_bounds(library):
    settings = dict(ONE, polymers=("PMMA",))
    _, fixed = draw(library, n=200, seed=1, **settings)
    _, charged = draw(library, n=200, seed=1, differential_charging_ev=0.2, **settings)

    def centroid(batch, lo, hi):
        window = (lo < GRID) & (hi > GRID)
        return (batch.spectra[:, window] * GRID[window]).sum(1) / batch.spectra[:, window].sum(1)

    gap = centroid(charged, 525, 540) - centroid(charged, 280, 296)
    gap0 = centroid(fixed, 525, 540) - centroid(fixed, 280, 296)
    moved = gap - gap0
    assert np.abs(moved).max() <= 0.4 + 0.01 and moved.std() > 0.1  # two levels, each +-0.2 eV


def test_charging_broadening_widens_every_line_of_some_spectra_by_the_same_sigma(library):
    settings = dict(ONE, polymers=("PMMA",), broadening_scale_ev=0.0)
    _, sharp = draw(library, n=400, seed=6, **settings)
    _, smeared = draw(library, n=400, seed=6, charging_broadening_ev=1.5, **settings)
    widened = smeared.broadening_ev > 0
    assert (sharp.broadening_ev == 0).all() and smeared.broadening_ev.max() <= 1.5
    assert abs(widened.mean() - CHARGING_BROADENED_SHARE_OF_SPECTRA) < 0.06  # some spectra, not all

    def spread(batch, lo, hi):
        window = (lo < GRID) & (hi > GRID)
        y, x = batch.spectra[:, window], GRID[window]
        mean = (y * x).sum(1) / y.sum(1)
        return np.sqrt((y * (x - mean[:, None]) ** 2).sum(1) / y.sum(1))

    for lo, hi in ((278, 298), (526, 540)):  # C 1s and O 1s: variance grows by sigma^2 on both
        grown = spread(smeared, lo, hi) ** 2 - spread(sharp, lo, hi) ** 2
        big = widened & (smeared.broadening_ev > 0.5)
        assert np.allclose(grown[big], smeared.broadening_ev[big] ** 2, rtol=0.25)
        assert np.abs(grown[~widened]).max() < 1e-3
    with pytest.raises(SettingsError):
        draw(library, n=1, charging_broadening_ev=3.0)


def test_kinetic_energy_response_scatters_element_ratios(library):
    settings = dict(ONE, polymers=("PMMA",))
    _, fixed = draw(library, n=400, seed=2, **settings)
    _, scattered = draw(library, n=400, seed=2, ke_exponent_scatter=0.8, **settings)

    def o_to_c(batch):
        return batch.spectra[:, (GRID > 525) & (GRID < 542)].sum(1) / batch.spectra[:, (GRID > 278) & (GRID < 300)].sum(
            1
        )

    ratio = o_to_c(scattered) / o_to_c(fixed)[0]
    assert np.ptp(o_to_c(fixed)) < 1e-6
    assert 0.78 < ratio.min() < 0.84 and 1.18 < ratio.max() < 1.24  # (955/1202)^+-0.8: about +-20 %
    np.testing.assert_array_equal(scattered.atomic_fraction, fixed.atomic_fraction)  # the sample is the same


def test_oxidation_and_silicone_add_lines_but_no_labels(library):
    settings = dict(ONE, polymers=("HDPE",), label_rule="physics")
    _, clean = draw(library, n=800, seed=3, **settings)
    _, dirty = draw(library, n=800, seed=3, oxidation=0.05, silicone=0.05, **settings)

    def oxidised(batch):  # C-O, C=O and O-C=O carbon beside the C-C line (less its own far tail)
        return batch.spectra[:, (GRID > 286.0) & (GRID < 290.5)].sum(1) / batch.spectra[
            :, (GRID > 278) & (GRID < 300)
        ].sum(1)

    share = oxidised(dirty) - oxidised(clean).max()
    assert share.max() < 0.05 + 0.005 and share.max() > 0.04
    silicon = dirty.spectra[:, (GRID > 98) & (GRID < 106)].sum(1)
    assert (silicon > 1e-4).mean() == pytest.approx(0.25, abs=0.05) and silicon.max() < 0.05
    window = (GRID > 98) & (GRID < 106)
    assert 101.5 < GRID[window][np.argmax(dirty.spectra[np.argmax(silicon), window])] < 102.3  # PDMS Si 2p
    np.testing.assert_array_equal(dirty.labels, clean.labels)
    assert dirty.labels[:, LABEL_NAMES.index("siloxane")].sum() == 0


def test_tail_cut_residues_and_noise_ranges(library):
    settings = dict(polymers=("PMMA", "PS"), acquisition="regions", max_shift_ev=0.0)
    _, cut = draw(library, n=300, seed=4, tail_cut=0.02, **settings)
    _, whole = draw(library, n=300, seed=4, **settings)
    c1s = (GRID >= 278) & (GRID <= 300)
    edges = c1s & ((GRID < 281) | (GRID > 297))
    assert (cut.spectra[:, edges] == 0).mean() > (whole.spectra[:, edges] == 0).mean()
    lost = 1 - cut.spectra[:, c1s].sum(1) / whole.spectra[:, c1s].sum(1)
    assert lost.max() < 0.05
    _, residue = draw(library, n=300, seed=4, linear_background=0.05, **settings)
    assert np.abs(residue.spectra - whole.spectra).max() > 0
    _, noisy = draw(library, n=400, seed=5, noise_counts=1e3, noise_counts_max=1e6, **settings)
    _, quiet = draw(library, n=400, seed=5, **settings)
    roughness = np.abs(np.diff(noisy.spectra - quiet.spectra, axis=1)).sum(1)
    assert roughness.max() / roughness.min() > 10  # three decades of counts


def test_physics_labels_traces_alkane_and_group_shares(library):
    """PMMA's shares are the contract's worked example; a trace is neither required nor wrong;
    alkane counts only above what adventitious carbon explains."""
    gen, pmma = draw(library, n=5, seed=6, polymers=("PMMA",), label_rule="physics", **{**ONE})
    ester, alkane = LABEL_NAMES.index("ester_aliphatic"), LABEL_NAMES.index("alkane")
    assert pmma.group_fraction[0, ester] == pytest.approx(4 / 7) and pmma.group_fraction[0, alkane] == pytest.approx(
        3 / 7
    )
    _, mix = draw(library, n=3000, seed=7, polymers=("PET", "PMMA"), label_rule="physics", adventitious_carbon=0.25)
    trace = (mix.group_fraction > 0) & (mix.group_fraction < 0.05)
    others = np.arange(32) != alkane
    assert trace[:, others].any()
    np.testing.assert_array_equal(mix.ambiguous[:, others].astype(bool), trace[:, others])
    assert not mix.labels[trace].any()
    # PET alone has no alkane carbon: never an alkane label, whatever the adventitious carbon
    _, pet = draw(library, n=500, seed=8, polymers=("PET",), label_rule="physics", adventitious_carbon=0.25, **ONE)
    assert pet.labels[:, alkane].sum() == 0 and pet.ambiguous[:, alkane].sum() == 0
    union = MixtureGenerator(library, MixtureSettings(polymers=("PET", "PMMA")), seed=7).generate(200)
    assert union.ambiguous.sum() == 0  # the paper's rule: the union of the components' labels


def test_atomic_fraction_counts_contamination_and_library_offsets_are_fixed(library):
    _, peg = draw(library, n=400, seed=9, polymers=("PEG",), adventitious_carbon=0.25, **ONE)
    carbon, oxygen = LEVELS.index("C 1s"), LEVELS.index("O 1s")
    assert peg.atomic_fraction[:, oxygen].max() == pytest.approx(1 / 3, abs=1e-5)  # C2H4O, clean
    # a quarter of the carbon from adventitious carbon (7 O per 20 C): O falls to 37 / 117 = 0.316
    assert 0.316 <= peg.atomic_fraction[:, oxygen].min() < 0.318
    np.testing.assert_allclose(peg.atomic_fraction[:, [carbon, oxygen]].sum(1), 1.0, atol=1e-6)
    a = MixtureGenerator(library, MixtureSettings(library_offset_ev=0.2), seed=1)
    b = MixtureGenerator(library, MixtureSettings(library_offset_ev=0.2), seed=2)
    assert a.offsets_ev == b.offsets_ev and max(map(abs, a.offsets_ev.values())) <= 0.2


def test_alkene_and_heteroatom_groups_need_what_physics_needs(library):
    recorded = np.zeros((3, len(LEVELS)), dtype=bool)
    recorded[0, [LEVELS.index("C 1s"), LEVELS.index("O 1s")]] = True
    recorded[1] = True
    determined = label_determined(library, recorded)
    for name in ("nitrate", "sulfone", "siloxane", "alkyl_halide_f", "amide"):
        assert determined[0, LABEL_NAMES.index(name)] == 0, name
    assert determined[0, LABEL_NAMES.index("ester_aromatic")] == 1.0
    assert determined[1, LABEL_NAMES.index("alkene")] == 0 and determined[2].sum() == 0


def test_realistic_generator_is_deterministic_and_normalised(library):
    settings = MixtureSettings(
        max_shift_ev=5.0,
        min_components=1,
        be_jitter_ev=0.3,
        width_scale=(0.7, 1.5),
        lineshapes=("voigt", "gl_sum", "gl_product"),
        hydrocarbon_tail=0.3,
        shakeup_jitter=1.0,
        differential_charging_ev=0.2,
        ke_exponent_scatter=0.8,
        adventitious_carbon=0.25,
        oxidation=0.05,
        silicone=0.05,
        noise_counts=1e3,
        noise_counts_max=1e6,
        residual_background=0.03,
        linear_background=0.03,
        tail_cut=0.01,
        acquisition="random",
        label_rule="physics",
        variants=2,
    )
    a = MixtureGenerator(library, settings, seed=3).generate(256, chunk=64, workers=2)
    b = MixtureGenerator(library, settings, seed=3).generate(256, chunk=64, workers=1)
    np.testing.assert_array_equal(a.spectra, b.spectra)
    assert np.allclose(a.spectra.sum(1), 1.0, atol=1e-5) and (a.spectra >= 0).all()
    assert np.isfinite(scipy.fft.rfft(a.spectra[:2])).all()
