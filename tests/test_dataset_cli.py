"""`xpstream simulate` writes the documented HDF5 file; the other training commands run."""

import json

import h5py
import numpy as np
import pytest

from tests.conftest import REALXPS, run_cli
from xpstream.contract import LABEL_NAMES
from xpstream.train.dataset import read_dataset

pytestmark = pytest.mark.integration


def test_simulate_writes_the_documented_hdf5(tmp_path, library):
    out = tmp_path / "sim.h5"
    run_cli("simulate", "--n", 700, "--max-shift", 3, "--seed", 0, "--out", out, "--chunk", 256)
    with h5py.File(out) as h5:
        assert h5["spectra"].shape == (700, 6601) and h5["spectra"].dtype == np.float32
        assert h5["labels"].shape == (700, 32) and h5["labels"].dtype == np.uint8
        assert h5["shift_ev"].shape == (700,) and h5["shift_ev"].dtype == np.float32
        assert h5["weights"].shape == (700, 4)
        assert np.allclose(h5["spectra"][:].sum(axis=1), 1.0, atol=1e-5)
        assert np.abs(h5["shift_ev"][:]).max() <= 3.0
        assert json.loads(h5.attrs["label_names"]) == list(LABEL_NAMES)
        assert json.loads(h5.attrs["settings"])["max_shift_ev"] == 3.0
        assert h5.attrs["seed"] == 0
    batch, attrs = read_dataset(out)
    polymers = attrs["polymers"]
    for i in range(50):  # labels are the union of the recorded components' labels
        union = set()
        for c in batch.components[i][batch.components[i] >= 0]:
            union |= set(library.polymer(polymers[c]).labels)
        assert {LABEL_NAMES[j] for j in np.flatnonzero(batch.labels[i])} == union
    again = tmp_path / "again.h5"
    run_cli("simulate", "--n", 700, "--max-shift", 3, "--seed", 0, "--out", again, "--chunk", 256)
    assert np.array_equal(read_dataset(again)[0].spectra, batch.spectra)


def test_bad_input_exits_non_zero_and_writes_nothing(tmp_path):
    cases = [
        (["--max-shift", 9], "pushes environment 'F_CF2' off"),
        (["--polymers", "PMMA", "unobtainium"], "unknown polymer 'unobtainium'"),
        (["--be-jitter", 0.5], "jitter must lie in"),
        (["--n", 0], "--n must be positive"),
    ]
    for extra, message in cases:
        out = tmp_path / "bad.h5"
        args = ["simulate", "--n", 10, "--out", out, *extra]
        proc = run_cli(*args, check=False)
        assert proc.returncode != 0 and message in proc.stderr, (extra, proc.stderr)
        assert not list(tmp_path.iterdir()), extra


def test_malformed_library_file_exits_non_zero(tmp_path):
    bad = tmp_path / "polymers.toml"
    bad.write_text(
        '[[polymers]]\nname = "x"\nabbr = "x"\nformula = "C2H4"\nenvironments = { C_XX = 2 }\nsource = "BB92"\n'
    )
    proc = run_cli("library", "--polymer-file", bad, check=False)
    assert proc.returncode == 2 and "polymer 'x': unknown environment 'C_XX'" in proc.stderr


def test_plot_command_draws_pngs(tmp_path):
    run_cli("plot", "--base", "PET", "PVC", "--mixtures", 2, "--out", tmp_path)
    for name in ("base_spectra.png", "mixtures.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000


def test_compare_command_on_measured_pet():
    out = run_cli("compare", "PET", REALXPS / "lg4x_PET_C1s.csv").stdout
    rows = {line[:42].strip(): line[42:].split() for line in out.splitlines()[2:]}
    assert set(rows) == {"C_arom", "C_ester_arom_CO_O", "C_ester_arom_CO", "C_arom shake-up"}
    # measured PET: C-O and O-C=O lie 1-2.5 eV and 3-5 eV above the aromatic C
    assert 1.0 < float(rows["C_ester_arom_CO_O"][2]) < 2.5
    assert 3.0 < float(rows["C_ester_arom_CO"][2]) < 5.0
