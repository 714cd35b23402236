"""Shared preprocessing: Shirley background, resampling, normalisation; text parsing."""

import numpy as np
import pytest

from tests.conftest import REALXPS
from xpstream.contract import Region, energy_grid
from xpstream.daemon.parse import ParseError, parse_file
from xpstream.spectrum import background_limits, measured_mask, regions_to_grid, shirley_background

GRID = energy_grid()


def test_shirley_recovers_a_peak_on_a_step_background():
    be = np.linspace(280, 296, 321)
    peak = 1000 * np.exp(-0.5 * ((be - 287) / 0.6) ** 2)
    # a Shirley step: background rises with the peak area integrated from the low-BE end
    cumulative = np.cumsum(peak) / peak.sum()
    counts = 200 + 300 * cumulative + peak
    background = shirley_background(counts, be[1] - be[0])
    assert background[0] == pytest.approx(200, rel=1e-3) and background[-1] == pytest.approx(500, rel=1e-3)
    recovered = counts - background
    assert np.trapezoid(recovered, be) == pytest.approx(np.trapezoid(peak, be), rel=0.01)


def test_background_limits_stop_before_a_loss_tail_that_rises_at_the_window_edge():
    """A C 1s window that ends in the rising onset of the energy-loss tail (as the measured PET
    does): the limits sit in the flat valley after the pi->pi* satellite, so the satellite
    survives; anchored at the window's last points the background would run above it."""
    be = np.linspace(279.3, 299.3, 401)

    def gauss(centre, area, fwhm):
        sigma = fwhm / 2.3548
        return area / (sigma * np.sqrt(2 * np.pi)) * np.exp(-0.5 * ((be - centre) / sigma) ** 2)

    peaks = gauss(284.7, 1000, 1.1) + gauss(286.3, 380, 1.3) + gauss(288.7, 360, 1.1)
    satellite = gauss(291.4, 80, 2.0)
    step = 0.05 * np.cumsum(peaks + satellite) * (be[1] - be[0])  # Shirley-shaped step
    tail = 60 * np.clip((be - 296.0) / 3.3, 0, None) ** 2  # the loss onset beyond 296 eV
    counts = 100 + step + tail + peaks + satellite
    first, last, _, _ = background_limits(counts, be[1] - be[0])
    assert be[first] < 282.0 and 293.5 < be[last] < 296.5
    signal = counts - shirley_background(counts, be[1] - be[0])
    near_satellite = (be > 289.9) & (be < 294.0)
    kept = np.trapezoid(signal[near_satellite], be[near_satellite])
    assert 0.6 * 80 < kept < 1.4 * 80
    assert np.trapezoid(signal, be) == pytest.approx(1740, rel=0.05)
    # the measured PET: its satellite is kept (0.1 % of the area when the background was
    # anchored at 299 eV; the library's PET has 4.6 %)
    pet = regions_to_grid(parse_file(REALXPS / "lg4x_PET_C1s.csv").regions)
    assert 0.015 < pet[(GRID > 289.8) & (GRID < 293.5)].sum() < 0.06


def test_simulated_spectrum_written_as_a_region_file_comes_back(tmp_path, library):
    """A generator spectrum written as a two-column region file returns through parse +
    preprocess as the same grid spectrum (the representation the model is trained on)."""
    from xpstream.train.simulate import base_spectrum

    spectrum = base_spectrum(library, library.polymer("PVC"))
    window = (GRID >= 278) & (GRID <= 300)
    region_only = np.where(window, spectrum, 0.0)
    region_only /= region_only.sum()
    path = tmp_path / "pvc_c1s.csv"
    rows = "\n".join(f"{e:.2f},{1e6 * y:.6f}" for e, y in zip(GRID[window][::-1], spectrum[window][::-1], strict=True))
    path.write_text("BE/eV,PVC C 1s\n" + rows + "\n")
    parsed = parse_file(path)
    assert [r.name for r in parsed.regions] == ["PVC C 1s"]
    back = regions_to_grid(parsed.regions)
    # Shirley takes the Lorentzian tails' level at the region ends (~1e-3 of the peak) as
    # background; nothing else differs.
    assert np.max(np.abs(back - region_only)) < 5e-3 * region_only.max()


def test_kinetic_axis_uses_the_source_energy_from_the_header(tmp_path):
    path = tmp_path / "ke.csv"
    ke = np.linspace(1190, 1210, 201)
    path.write_text("KE/eV,hv=1486.6\n" + "\n".join(f"{k},{100 + k % 3}" for k in ke))
    region = parse_file(path).regions[0]
    assert region.binding_energy_ev[0] == pytest.approx(1486.6 - 1210)
    assert region.binding_energy_ev[-1] == pytest.approx(1486.6 - 1190)


def test_real_files_parse_or_are_refused_with_a_reason(tmp_path):
    pet = parse_file(REALXPS / "lg4x_PET_C1s.csv")
    assert len(pet.regions) == 1 and pet.regions[0].binding_energy_ev[0] == pytest.approx(279.3, abs=0.01)
    x = regions_to_grid(pet.regions)
    assert x.sum() == pytest.approx(1.0) and (x[(GRID < 279) | (GRID > 299.5)] == 0).all()
    pbttt = parse_file(REALXPS / "pynx_PBTTT_specs.xml")  # SPECS XML via pynxtools-xps
    assert [r.name for r in pbttt.regions] == ["2_C1s", "3_S_2p"]
    assert pbttt.skipped == ["1_Survey: survey (-0-701 eV) (another region is used)"]
    c1s = pbttt.regions[0]
    assert 280 < c1s.binding_energy_ev[0] < c1s.binding_energy_ev[-1] < 292
    ito = parse_file(REALXPS / "lg4x_ITO_survey_kinetic.csv")  # survey only: the survey is read
    assert [r.name for r in ito.regions] == ["lg4x_ITO_survey_kinetic"]
    (tmp_path / "valence.csv").write_text("BE,x\n" + "\n".join(f"{e},{e}" for e in range(0, 30)))
    with pytest.raises(ParseError, match="no core-level region or survey on the grid.*valence"):
        parse_file(tmp_path / "valence.csv")
    for content, message in [
        ("", "no data rows"),
        ("BE,x\n1,2\n2,3\n3,x4\n4,5\n", "line 4 is not two numbers"),
        ("x,y\n1,2\n2,3\n3,4\n", "binding \\(BE\\) or kinetic"),
        ("KE,x\n1,2\n2,3\n3,4\n", "no source energy"),
        ("BE,x\n1,2\n2,nan\n3,4\n", "NaN"),
        ("BE,x\n-1e308,1\n0,2\n1e308,3\n5,4\n", "not a binding-energy range"),
    ]:
        bad = tmp_path / "bad.csv"
        bad.write_text(content)
        with pytest.raises(ParseError, match=message):
            parse_file(bad)
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(ParseError, match="unsupported file type '.jpg'"):
        parse_file(tmp_path / "x.jpg")


def test_region_to_grid_is_zero_outside_regions():
    regions = [Region("a", np.linspace(280, 290, 101), np.ones(101) + np.arange(101))]
    x = regions_to_grid(regions)
    assert (x[(GRID < 280) | (GRID > 290)] == 0).all() and x.sum() == pytest.approx(1.0)


def test_preprocessing_graph_equals_the_numpy_reference(tmp_path, library):
    """The shipped ONNX graph and regions_to_grid agree to 1e-5 on a batch of real files,
    simulated regions and irregular, noisy random regions."""
    import onnxruntime as ort

    from xpstream.models import preprocess_model_path
    from xpstream.spectrum import pad_regions
    from xpstream.train.simulate import base_spectrum

    spectra = [
        parse_file(REALXPS / name).regions
        for name in ("lg4x_PET_C1s.csv", "pynx_PBTTT_specs.xml", "cheminfo_perovskite_kratos.vms", "matkrin_eis.vms")
    ]
    clean = base_spectrum(library, library.polymer("PVC"))
    for lo, hi in ((278, 300), (190, 212)):
        keep = (lo <= GRID) & (hi >= GRID)
        spectra.append([Region(f"{lo}", GRID[keep] + 0.37, 1e4 * clean[keep] + 30)])
    rng = np.random.default_rng(0)
    for n in (5, 17, 400):
        be = np.sort(rng.uniform(300, 330, n))
        be = be[np.r_[True, np.diff(be) > 1e-6]]
        spectra.append([Region("irregular", be, rng.poisson(100, len(be)) + 0.0)])

    def run(path):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, pad_regions(spectra).feeds())[0]

    out = run(preprocess_model_path())
    for regions, row in zip(spectra, out, strict=True):
        assert np.abs(row - regions_to_grid(regions)).max() < 1e-5
    # regenerating the graph from its torch source gives the shipped one's results
    from xpstream.train.preprocess_graph import export_preprocess

    again = run(export_preprocess(tmp_path / "p.onnx"))
    assert np.abs(again - out).max() < 1e-7


def test_measured_mask_holds_the_grid_points_inside_each_region():
    def region(lo, hi):
        return Region("x", np.linspace(lo, hi, 40), np.ones(40))

    grid = GRID
    assert measured_mask([region(279.95, 280.25)]).sum() == 3  # 280.0, 280.1, 280.2
    assert measured_mask([region(20.0, 40.0)])[0] == 1 and measured_mask([region(20.0, 40.0)]).sum() == 1
    assert measured_mask([region(700.05, 800.0)]).sum() == 0
    both = measured_mask([region(284.0, 286.0), region(531.0, 533.0)])
    expected = ((grid >= 284.0) & (grid <= 286.0)) | ((grid >= 531.0) & (grid <= 533.0))
    assert np.array_equal(both, expected.astype(np.float32)) and both.sum() == 42


def test_preprocessing_graph_metadata_are_checked_at_load(tmp_path):
    """The graph in front of every model carries the contract version and the Shirley constants
    of the numpy reference; a graph built with others is refused with the fix."""
    import onnx

    from xpstream.contract import ContractError
    from xpstream.daemon.infer import load_preprocessing
    from xpstream.models import preprocess_model_path

    assert load_preprocessing(preprocess_model_path()) is not None
    graph = onnx.load(str(preprocess_model_path()))
    for entry in graph.metadata_props:
        if entry.key == "shirley_iterations":
            entry.value = "3"
    onnx.save(graph, tmp_path / "pre.onnx")
    with pytest.raises(ContractError, match="shirley_iterations.*xpstream export-preprocess"):
        load_preprocessing(tmp_path / "pre.onnx")
