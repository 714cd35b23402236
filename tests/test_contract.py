import numpy as np
import pytest

from xpstream import contract as c


def test_grid_is_40_to_700_in_tenth_ev_steps():
    grid = c.energy_grid()
    assert grid.shape == (6601,) == (c.GRID_SIZE,)
    assert grid[0] == 40.0 and grid[-1] == 700.0
    assert np.allclose(np.diff(grid), 0.1)


def test_labels_are_32_unique_in_published_order():
    assert c.NUM_LABELS == 32
    assert len(set(c.LABEL_NAMES)) == 32
    assert c.LABEL_NAMES[0] == "alkene" and c.LABEL_NAMES[-1] == "alkane"
    assert c.LABEL_NAMES[c.label_index("pyridine")] == "pyridine"
    assert all(name.isidentifier() for name in c.LABEL_NAMES)
    with pytest.raises(c.ContractError, match="unknown functional-group label 'ketone'"):
        c.label_index("ketone")


def test_normalise_clips_and_sums_to_one():
    x = np.zeros((2, c.GRID_SIZE))
    x[0, 10] = 3.0
    x[0, 11] = -1.0
    out = c.normalise_spectrum(x)
    assert out.dtype == np.float32
    assert out[0].sum() == pytest.approx(1.0) and out[0, 11] == 0.0
    assert out[1].sum() == 0.0  # an empty row stays empty, no NaN
    with pytest.raises(c.ContractError, match="6600 points"):
        c.normalise_spectrum(np.ones(6600))


def test_check_spectra_refuses_nan_and_wrong_shape():
    with pytest.raises(c.ContractError, match="NaN"):
        c.check_spectra(np.full((1, c.GRID_SIZE), np.nan))
    with pytest.raises(c.ContractError, match="shape"):
        c.check_spectra(np.ones((1, 10)))


def outputs(probs, determined=None, score=0.0, shift=1.25, fraction=None):
    determined = np.ones(32) if determined is None else determined
    fraction = np.full(32, np.nan) if fraction is None else fraction
    return {
        "probabilities": probs,
        "shift_ev": shift,
        "determined": determined,
        "out_of_library_score": score,
        "group_fraction": fraction,
        "group_fraction_std": np.full(32, 0.02),
        "level_recorded": np.ones(9),
        "level_area": np.full(9, 1 / 9),
    }


def test_prediction_round_trip_and_version_refusal():
    probs = np.linspace(0, 1, 32)
    meta = c.ModelMetadata("xpstream-stn", "1", out_of_library_threshold=0.05)
    pred = c.Prediction.from_outputs("a.vms", outputs(probs), meta)
    assert pred.labels == [n for n, p in zip(c.LABEL_NAMES, probs, strict=True) if p >= 0.5]
    assert pred.in_library and pred.undetermined == [] and pred.shift_ev == 1.25
    again = c.Prediction.from_dict(pred.to_dict())
    assert again == pred
    wrong = {**pred.to_dict(), "contract_version": "0"}
    with pytest.raises(c.ContractError, match="version '0'.*version '3'"):
        c.Prediction.from_dict(wrong)


def test_prediction_separates_undetermined_labels_and_flags_out_of_library():
    meta = c.ModelMetadata("xpstream-stn", "1", out_of_library_threshold=0.05)
    determined = np.ones(32)
    determined[:3] = 0.0  # nothing recorded could show the first three labels
    determined[3] = 0.5  # half of this one's core levels recorded: still judged
    pred = c.Prediction.from_outputs("a.vms", outputs(np.full(32, 0.7), determined), meta)
    assert pred.undetermined == list(c.LABEL_NAMES[:3])
    assert pred.labels == list(c.LABEL_NAMES[3:])
    assert not c.Prediction.from_outputs("a.vms", outputs(np.full(32, 0.7), score=0.06), meta).in_library
    beside = c.Prediction.from_outputs("a.vms", outputs(np.full(32, 0.7)), meta, ["Cu 2p"])
    assert not beside.in_library and beside.unexplained_regions == ["Cu 2p"]


def test_group_shares_are_reported_in_per_cent_for_determined_labels_only():
    meta = c.ModelMetadata("xpstream-stn", "3")
    fraction = np.zeros(32)
    fraction[c.label_index("ester_aliphatic")], fraction[c.label_index("alkane")] = 4 / 7, 3 / 7  # PMMA
    determined = np.ones(32)
    determined[c.label_index("alkene")] = 0.0
    composition = ({"C": 71.43, "O": 28.57}, {"N": "no signal"})
    pred = c.Prediction.from_outputs(
        "pmma.vms", outputs(np.full(32, 0.7), determined, fraction=fraction), meta, (), composition
    )
    assert pred.group_percent["ester_aliphatic"] == pytest.approx(57.14) and pred.group_percent["alkane"] == 42.86
    assert "alkene" not in pred.group_percent and pred.group_percent_std["alkane"] == 2.0
    assert (pred.atomic_percent, pred.not_quantified) == composition
    without_head = c.Prediction.from_outputs("pmma.vms", outputs(np.full(32, 0.7)), meta)
    assert without_head.group_percent == {} == without_head.group_percent_std


def test_prediction_batch_equals_its_rows_and_refuses_a_length_mismatch():
    meta = c.ModelMetadata("xpstream-stn", "1", thresholds=[0.6] * 32, out_of_library_threshold=0.05)
    rows = [outputs(np.linspace(0, 1, 32), score=0.01, shift=-0.5), outputs(np.full(32, 0.7), score=0.2, shift=2.0)]
    batch = {key: np.stack([np.asarray(row[key]) for row in rows]) for key in rows[0]}
    preds = c.Prediction.from_batch(["a.vms", "b.vms"], batch, meta, [[], ["Cu 2p"]])
    singles = [
        c.Prediction.from_outputs("a.vms", rows[0], meta),
        c.Prediction.from_outputs("b.vms", rows[1], meta, ["Cu 2p"]),
    ]
    assert preds == singles
    assert preds[0].labels == [n for n, p in zip(c.LABEL_NAMES, np.linspace(0, 1, 32), strict=True) if p >= 0.6]
    assert preds[0].in_library and not preds[1].in_library and preds[1].shift_ev == 2.0
    with pytest.raises(c.ContractError, match="expected 3 rows"):
        c.Prediction.from_batch(["a", "b", "c"], batch, meta, [[], [], []])


def test_model_metadata_round_trip_and_refusals():
    meta = c.ModelMetadata("xpstream-stn", "3", thresholds=[0.4] * 32, metrics={"exact_match": 0.9})
    props = meta.to_strings()
    assert all(isinstance(v, str) for v in props.values())
    assert c.ModelMetadata.from_strings(props) == meta
    with pytest.raises(c.ContractError, match="labels disagree"):
        c.ModelMetadata.from_strings({**props, "labels": '["alkane"]'})
    with pytest.raises(c.ContractError, match="grid"):
        c.ModelMetadata.from_strings({**props, "grid": '{"start": 0, "stop": 700, "step": 0.1}'})
    with pytest.raises(c.ContractError, match="contract version '1'"):
        c.ModelMetadata.from_strings({**props, "contract_version": "1"})
    with pytest.raises(c.ContractError, match="lacks the key 'thresholds'"):
        c.ModelMetadata.from_strings({k: v for k, v in props.items() if k != "thresholds"})
    with pytest.raises(c.ContractError, match="cannot be read"):
        c.ModelMetadata.from_strings({**props, "thresholds": "[0.5, "})
    with pytest.raises(c.ContractError, match="cannot be read"):
        c.ModelMetadata.from_strings({**props, "out_of_library_threshold": "high"})
    older = c.ModelMetadata.from_strings({**props, "contract_version": "2"}, any_version=True)
    assert older.contract_version == "2"  # training reads the last release to compare, never to serve


def test_region_sorts_axis_and_refuses_bad_input():
    r = c.Region("C 1s", [290.0, 289.9, 289.8], [1.0, 2.0, 3.0])
    assert list(r.binding_energy_ev) == [289.8, 289.9, 290.0] and list(r.counts) == [3.0, 2.0, 1.0]
    with pytest.raises(c.ContractError, match="NaN"):
        c.Region("x", [1.0, 2.0, 3.0], [1.0, np.nan, 1.0])
    with pytest.raises(c.ContractError, match="differ"):
        c.Region("x", [1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(c.ContractError, match="repeated"):
        c.Region("x", [1.0, 1.0, 3.0], [1.0, 2.0, 3.0])


def test_contract_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, xpstream.contract, xpstream.spectrum; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
