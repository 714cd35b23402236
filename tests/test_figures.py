"""Pictures a scientist reads: `predict --plot` PNGs and the `report` HTML page, rendered in a
real headless browser."""

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REALXPS, run_cli
from xpstream.figures import FIGURE_DPI, FIGURE_INCHES

pytestmark = pytest.mark.integration


def _not_blank(path) -> bool:
    pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
    return pixels.std() > 10 and (pixels < 128).mean() > 0.005  # dark lines and text on white


def test_predict_plot_draws_a_real_image_per_file(tmp_path):
    out = tmp_path / "pet.png"
    run_cli("predict", REALXPS / "lg4x_PET_C1s.csv", "--plot", out)
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.size == (FIGURE_INCHES[0] * FIGURE_DPI, FIGURE_INCHES[1] * FIGURE_DPI)
    assert _not_blank(out)
    run_cli("predict", REALXPS / "lg4x_PET_C1s.csv", REALXPS / "pynx_PBTTT_specs.xml", "--plot", tmp_path / "x.png")
    assert sorted(p.name for p in tmp_path.glob("x-*.png")) == ["x-lg4x_PET_C1s.png", "x-pynx_PBTTT_specs.png"]


def test_report_is_one_page_a_browser_renders(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
    report = tmp_path / "report.html"
    files = [REALXPS / "lg4x_PET_C1s.csv", REALXPS / "pynx_PBTTT_specs.xml", REALXPS / "MANIFEST.tsv"]
    run_cli("report", *files, "-o", report)
    page = report.read_text()
    assert page.count("data:image/png;base64,") == 2 and "refused: MANIFEST.tsv" in page
    assert 'src="http' not in page and "href=" not in page  # self-contained
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=1200,900",
            report.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert _not_blank(shot)
