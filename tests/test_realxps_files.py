"""Every file in ../shared/realxps parses into the regions the model reads: its core-level
regions, or its survey when it holds none (the table in the README)."""

import csv

import numpy as np
import pytest

from tests.conftest import REALXPS
from xpstream.daemon.parse import parse_file
from xpstream.spectrum import regions_to_grid

KEPT = {
    "cheminfo_ARXPS_Al_foil_kratos.vms": ["O 1s", "C 1s", "Al 2p"],
    "cheminfo_Ta_multiplex_kratos.vms": ["O 1s"],
    "cheminfo_perovskite_kratos.vms": ["I3d", "Pb4f", "O1s", "N1s", "C 1s", "S 2p"],
    "lg4x_NiW_kratos_blank_lead_lines.vms": ["O 1s", "C 1s", "W 4f"],
    "lg4x_PET_C1s.csv": ["InPET_C1s"],
    "matkrin_eis.vms": ["block 2", "block 3", "block 4"],
    "pynx_MgFe2O4_small_specs.xy": ["Fe2p"],
    "pynx_PBTTT_specs.xml": ["2_C1s", "3_S_2p"],
    "xpsdl_Cu_references.vms": ["O 1s"],
    # survey-only files: the survey is read (the model is trained on survey-resolution spectra)
    "cheminfo_Al_foil_survey_kratos.vms": ["wide"],
    "lg4x_ITO_survey_kinetic.csv": ["lg4x_ITO_survey_kinetic"],
    "pynx_CuHHTP_scienta.txt": ["001__survey"],
    "pynx_SnO2_phi.spe": ["Su1s"],
    "pynx_irregular.vms": ["Survey"],
    "pynx_regular.vms": ["Survey"],
}
SKIPPED = {
    "cheminfo_perovskite_kratos.vms": ["HeI VBM: UPS", "HeI SECO: UPS", "wide: survey (-5-1200 eV) (another region"],
    "xpsdl_Cu_references.vms": ["Cu LMM: Auger", "Cu 2p: above the grid"],
    "lg4x_NiW_kratos_blank_lead_lines.vms": ["wide: survey", "Ni 2p: above the grid"],
}


def test_the_table_covers_every_file_in_the_manifest():
    with open(REALXPS / "MANIFEST.tsv") as fh:
        listed = {row["file"] for row in csv.DictReader(fh, delimiter="\t")}
    assert listed == set(KEPT)


@pytest.mark.parametrize("name", sorted(KEPT))
def test_parses_into_core_level_regions(name):
    parsed = parse_file(REALXPS / name)
    assert [r.name for r in parsed.regions] == KEPT[name]
    for expected in SKIPPED.get(name, []):
        assert any(s.startswith(expected) for s in parsed.skipped), (expected, parsed.skipped)
    spectrum = regions_to_grid(parsed.regions)
    assert spectrum.sum() == pytest.approx(1.0) and np.isfinite(spectrum).all()
