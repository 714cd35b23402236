"""`xpstream predict` with the shipped model on real and simulated files."""

import json

import numpy as np

from tests.conftest import REALXPS, run_cli
from xpstream.contract import LABEL_NAMES, energy_grid
from xpstream.daemon.infer import load_model
from xpstream.models import default_model_path


def test_shipped_model_loads_under_the_contract():
    model = load_model(default_model_path())
    assert model.metadata.labels == list(LABEL_NAMES)
    assert model.provider == "CPUExecutionProvider"
    assert model.metadata.training_data["generator"]["max_shift_ev"] == 5.0


def test_predict_json_on_a_real_file_and_a_bad_one(tmp_path, library):
    from xpstream.train.simulate import base_spectrum

    grid = energy_grid()
    spectrum = base_spectrum(library, library.polymer("PTFE"))
    rows = []
    for lo, hi in ((278, 300), (678, 698)):  # C 1s and F 1s regions, shifted by +1.5 eV
        keep = (grid >= lo) & (grid <= hi)
        rows.append((grid[keep] + 1.5, spectrum[keep]))
    for i, (be, y) in enumerate(rows):
        (tmp_path / f"ptfe{i}.csv").write_text(
            "BE/eV,PTFE\n" + "\n".join(f"{e:.2f},{1e5 * v + 10:.4f}" for e, v in zip(be, y, strict=True))
        )
    bad = tmp_path / "bad.csv"
    bad.write_text("BE/eV,x\n1,2\n")
    proc = run_cli("predict", REALXPS / "lg4x_PET_C1s.csv", bad, tmp_path / "ptfe1.csv", "--json", check=False)
    assert proc.returncode == 1 and "bad.csv: error:" in proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 2
    for record in records:
        assert set(record) >= {"source", "labels", "probabilities", "shift_ev", "model"}
        assert set(record["probabilities"]) == set(LABEL_NAMES)
        assert all(0.0 <= p <= 1.0 for p in record["probabilities"].values())
    ptfe = records[1]
    assert "alkyl_halide_f" in ptfe["labels"]
    assert np.isfinite(ptfe["shift_ev"])
