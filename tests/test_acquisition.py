"""Acquisition plans, determinability, calibration and the out-of-library flag (issue 9)."""

import numpy as np
import pytest
import torch

from tests.conftest import REALXPS, draw
from xpstream.contract import GRID_SIZE, LABEL_NAMES, NUM_LABELS, Region, energy_grid
from xpstream.daemon.parse import parse_file, select_regions
from xpstream.spectrum import element_named, measured_mask, peak_significance, unexplained_regions
from xpstream.train.acquisition import CARBON, LEVELS, REGION_WINDOWS_EV, label_determined, window_slices
from xpstream.train.metrics import reliability
from xpstream.train.models import Acquisition, build_model, normalise
from xpstream.train.trainer import fit_temperature, warm_start

GRID = energy_grid()


def test_random_plans_record_subsets_surveys_and_extra_regions(library):
    gen, b = draw(library, n=3000, seed=3, acquisition="random", noise_counts=2e5, max_shift_ev=5.0)
    mask = b.measured()
    assert np.all(b.spectra[mask == 0] == 0)  # nothing outside what was recorded
    assert np.all(b.spectra.sum(axis=1) > 0.99)  # every plan records a region with signal
    regions = b.whole == 0
    only_carbon = regions & (b.recorded.sum(axis=1) == 1) & (b.recorded[:, CARBON] == 1)
    assert 0.04 < only_carbon.mean() < 0.3  # the c1s plan, when no extra region joined it
    assert 0.15 < b.whole.mean() < 0.35  # full acquisitions and surveys
    present = np.zeros_like(b.recorded)
    for i, comps in enumerate(b.components):
        for c in comps[comps >= 0]:
            present[i] |= gen.polymer_levels[c].astype(np.uint8)
    extra = regions[:, None] & (b.recorded == 1) & (present == 0)
    missing = regions[:, None] & (b.recorded == 0) & (present == 1)
    assert extra.any(axis=1).mean() > 0.2 and missing.any(axis=1).mean() > 0.2
    c1s = window_slices()[CARBON]
    # surveys are broader: the C 1s peak of a survey row is lower for the same area
    height = b.spectra[:, c1s].max(axis=1) / np.maximum(b.spectra[:, c1s].sum(axis=1), 1e-9)
    survey = (b.whole == 1) & (b.broadening_ev > 0.5)
    assert height[survey].mean() < 0.7 * height[(b.whole == 1) & (b.broadening_ev < 0.3)].mean()


def test_determinability_follows_the_recorded_levels():
    acq = Acquisition()
    x = torch.zeros(3, GRID_SIZE)
    x[:, 2450] = 1.0
    measured = torch.zeros(3, GRID_SIZE)
    lo, hi = REGION_WINDOWS_EV["C 1s"]
    measured[0, (torch.from_numpy(GRID) >= lo) & (torch.from_numpy(GRID) <= hi)] = 1.0  # C 1s only
    measured[1] = 1.0  # whole grid
    determined, *_ = acq(normalise(x), measured)
    index = {name: i for i, name in enumerate(LABEL_NAMES)}
    assert determined[0, index["alkane"]] == 1.0  # alkane shows in C 1s alone
    assert determined[0, index["ester_aliphatic"]] == pytest.approx(0.5)  # C 1s of C 1s + O 1s
    assert determined[0, index["phosphazene"]] == 0.0  # N 1s, O 1s, P 2p: none recorded
    # a heteroatom group needs its element's level: a sulfone or a nitrile from C 1s alone is no evidence
    assert determined[0, index["sulfone"]] == 0.0 and determined[0, index["nitrile"]] == 0.0
    # alkene is never determined: C=C sits on C-C and the ring under an unknown shift
    assert determined[1, index["alkene"]] == 0.0
    settled = torch.ones(NUM_LABELS)
    settled[index["alkene"]] = 0.0
    assert torch.all(determined[1] == settled) and torch.all(determined[2] == 0.0)


def test_the_numpy_and_graph_rules_agree(library):
    """`label_determined` (scoring) and the exported graph's `determined` are one rule."""
    _, b = draw(library, n=300, seed=6, acquisition="random")
    graph, *_ = Acquisition()(normalise(torch.from_numpy(b.spectra)), torch.from_numpy(b.measured()))
    recorded = b.recorded.astype(bool) | b.whole.astype(bool)[:, None]
    np.testing.assert_allclose(graph.numpy(), label_determined(library, recorded), atol=1e-6)
    nitrate = LABEL_NAMES.index("nitrate")
    n1s, o1s = LEVELS.index("N 1s"), LEVELS.index("O 1s")
    without_n = recorded[:, o1s] & ~recorded[:, n1s]
    assert without_n.any() and (graph.numpy()[without_n, nitrate] == 0).all()


def test_out_of_library_score_sees_lines_the_library_lacks(library):
    _, b = draw(library, n=200, seed=4, acquisition="random", max_shift_ev=5.0, noise_counts=2e5)
    acq = Acquisition()
    x = torch.from_numpy(b.spectra)
    _, clean, *_ = acq(normalise(x), torch.from_numpy(b.measured()))
    assert clean.max() < 0.02
    al2s = torch.from_numpy(np.exp(-0.5 * ((GRID - library.foreign_lines["I 3d"]) / 0.6) ** 2)).float()
    foreign = 0.9 * x + 0.1 * al2s / al2s.sum()
    _, flagged, *_ = acq(normalise(foreign), torch.ones_like(foreign))
    assert torch.all(flagged > 0.08)


def test_warm_start_reproduces_the_smaller_model_exactly():
    torch.manual_seed(0)
    old = build_model("stn-shift").eval()
    new = build_model("stn-acq")
    warm_start(new, old.state_dict())
    new.eval()
    x = torch.rand(5, GRID_SIZE)
    with torch.no_grad():
        assert torch.allclose(old(x)[0], new(x, torch.ones_like(x))[0], atol=1e-6)


def test_reliability_and_expected_calibration_error_by_hand():
    probs = np.array([[0.1, 0.1, 0.9, 0.9]])
    truth = np.array([[0, 1, 1, 1]])
    rel = reliability(truth, probs, bins=10)
    # bin [0.1, 0.2): confidence 0.1, observed 0.5; bin [0.9, 1.0): 0.9 vs 1.0; half the entries each
    assert rel["ece"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)
    assert reliability(truth, probs, scored=np.array([[0, 0, 1, 1]]), bins=10)["ece"] == pytest.approx(0.1)


def test_temperature_fit_undoes_overconfidence():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, size=(20000, 3))
    truth = (rng.random(true_logits.shape) < 1 / (1 + np.exp(-true_logits))).astype(np.uint8)
    overconfident = 3.0 * true_logits
    t = fit_temperature(overconfident, truth, np.ones_like(truth))
    assert t == pytest.approx([3.0] * 3, rel=0.1)
    before = reliability(truth, 1 / (1 + np.exp(-overconfident)))["ece"]
    after = reliability(truth, 1 / (1 + np.exp(-overconfident / t)))["ece"]
    assert after < 0.02 < before


def test_regions_above_the_grid_with_peaks_are_unexplained():
    parsed = parse_file(REALXPS / "xpsdl_Cu_references.vms")
    assert [r.name for r in parsed.regions] == ["O 1s"]
    assert unexplained_regions(parsed.recorded, []) == ["Cu 2p"]  # above the grid: no library lines there
    rng = np.random.default_rng(0)
    be = np.linspace(925.0, 965.0, 401)
    empty = Region("Cu 2p", be, rng.poisson(500, size=be.size).astype(float))  # checked, nothing there
    peak = Region("Cu 2p", be, empty.counts + 5000 * np.exp(-0.5 * ((be - 933) / 0.8) ** 2))
    assert peak_significance(empty.counts) < 10 < peak_significance(peak.counts)
    assert unexplained_regions([empty], []) == [] and unexplained_regions([peak], []) == ["Cu 2p"]
    al2p = Region(
        "Al 2p", np.linspace(65, 85, 201), 100 + 5000 * np.exp(-0.5 * ((np.linspace(65, 85, 201) - 74) / 0.7) ** 2)
    )
    assert unexplained_regions([al2p], ["C", "O"]) == ["Al 2p"]  # on the grid, named after a foreign element
    assert unexplained_regions([al2p], []) == []  # the model names no elements: energy only
    assert element_named("2_C1s") == "C" and element_named("3_S_2p") == "S" and element_named("Pb4f") == "Pb"
    assert element_named("InPET_C1s") == "C" and element_named("block 2") is None and element_named("Su1s") is None


def test_a_survey_is_used_when_no_core_level_region_was_recorded():
    parsed = parse_file(REALXPS / "cheminfo_Al_foil_survey_kratos.vms")
    assert len(parsed.regions) == 1 and measured_mask(parsed.regions).all()
    survey = Region("wide", np.linspace(0, 1200, 1201), np.ones(1201))
    c1s = Region("C 1s", np.linspace(280, 296, 161), 1.0 + np.hanning(161))
    both = select_regions("x", [survey, c1s])
    assert [r.name for r in both.regions] == ["C 1s"] and "another region is used" in both.skipped[0]
    mask = measured_mask(both.regions)
    assert mask[(GRID >= 280) & (GRID <= 296)].all() and mask.sum() == 161


def test_every_level_of_the_library_has_an_acquisition_window(library):
    assert set(LEVELS) == set(library.levels)
    for level in LEVELS:
        lo, hi = library.level_extent_ev(level)
        w_lo, w_hi = REGION_WINDOWS_EV[level]
        assert w_lo + 5 <= lo and hi <= w_hi - 5  # room for a +-5 eV shift
