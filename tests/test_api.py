"""The Python API: the daemon's analysis core from a notebook."""

import subprocess
import sys

import numpy as np
import pytest

import xpstream
from tests.conftest import REALXPS, REPO
from xpstream.contract import Prediction


def test_analyse_files_folders_regions_and_grid_spectra(tmp_path, library):
    from xpstream.daemon.parse import parse_file
    from xpstream.train.simulate import base_spectrum

    pet = REALXPS / "lg4x_PET_C1s.csv"
    (one,) = xpstream.analyse(pet)
    assert isinstance(one, Prediction) and {"benzene_ring", "ester_aromatic"} <= set(one.labels)
    (tmp_path / "notes.tsv").write_text("not\ta spectrum\n")
    (tmp_path / "PET.CSV").write_bytes(pet.read_bytes())
    with pytest.warns(UserWarning, match="notes.tsv"):
        from_folder = xpstream.analyse(tmp_path)
    assert [p.source for p in from_folder] == [str(tmp_path / "PET.CSV")]
    assert from_folder[0].probabilities == pytest.approx(one.probabilities, abs=1e-6)
    with pytest.raises(ValueError, match="notes.tsv"):
        xpstream.analyse(tmp_path, errors="raise")
    (from_regions,) = xpstream.analyse(parse_file(pet).regions, model=xpstream.load_model())
    assert from_regions.labels == one.labels
    grid = np.stack([base_spectrum(library, library.polymer(n)) for n in ("PTFE", "PS")])
    ptfe, ps = xpstream.analyse(grid)
    assert "alkyl_halide_f" in ptfe.labels and "benzene_ring" in ps.labels
    frame = xpstream.to_frame([ptfe, ps])
    assert len(frame) == 2 and frame.loc[0, "p_alkyl_halide_f"] == pytest.approx(ptfe.probabilities["alkyl_halide_f"])


def test_example_script_runs():
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "analyse_folder.py"), str(REALXPS)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "lg4x_PET_C1s.csv: in library" in proc.stdout
