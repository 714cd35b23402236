"""Every file in ../shared/realxps either parses into core-level regions or is refused with a
clear reason (the table in the README)."""

import csv

import numpy as np
import pytest

from tests.conftest import REALXPS
from xpstream.daemon.parse import ParseError, parse_file
from xpstream.daemon.preprocess import regions_to_grid

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
}
REFUSED = {
    "cheminfo_Al_foil_survey_kratos.vms": "no core-level region (wide: survey",
    "lg4x_ITO_survey_kinetic.csv": "no core-level region (lg4x_ITO_survey_kinetic: survey",
    "pynx_CuHHTP_scienta.txt": "no core-level region (001__survey: survey",
    "pynx_SnO2_phi.spe": "no core-level region (Su1s: survey",
    "pynx_irregular.vms": "no core-level region (Survey: survey",
    "pynx_regular.vms": "no core-level region (Survey: survey",
}
SKIPPED = {
    "cheminfo_perovskite_kratos.vms": ["HeI VBM: UPS", "HeI SECO: UPS", "wide: survey"],
    "xpsdl_Cu_references.vms": ["Cu LMM: Auger", "Cu 2p: above the grid"],
    "lg4x_NiW_kratos_blank_lead_lines.vms": ["wide: survey", "Ni 2p: above the grid"],
}


def test_the_table_covers_every_file_in_the_manifest():
    with open(REALXPS / "MANIFEST.tsv") as fh:
        listed = {row["file"] for row in csv.DictReader(fh, delimiter="\t")}
    assert listed == set(KEPT) | set(REFUSED)


@pytest.mark.parametrize("name", sorted(KEPT))
def test_parses_into_core_level_regions(name):
    parsed = parse_file(REALXPS / name)
    assert [r.name for r in parsed.regions] == KEPT[name]
    for expected in SKIPPED.get(name, []):
        assert any(s.startswith(expected) for s in parsed.skipped), (expected, parsed.skipped)
    spectrum = regions_to_grid(parsed.regions)
    assert spectrum.sum() == pytest.approx(1.0) and np.isfinite(spectrum).all()


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_with_a_reason(name):
    with pytest.raises(ParseError) as err:
        parse_file(REALXPS / name)
    assert REFUSED[name] in str(err.value) and str(err.value).startswith(name)
