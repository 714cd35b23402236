"""`xpstream batch` on a real local Ray instance: the daemon's predictions, Parquet out, failed
files recorded with their reason."""

import shutil

import pandas as pd
import pytest

from tests.conftest import REALXPS, run_cli
from xpstream.contract import LABEL_NAMES
from xpstream.daemon.harness import DaemonProcess

pytest.importorskip("ray", reason="the cluster extra is not installed")

FILES = ["lg4x_PET_C1s.csv", "pynx_PBTTT_specs.xml", "cheminfo_perovskite_kratos.vms", "pynx_MgFe2O4_small_specs.xy"]


def test_batch_equals_the_daemon_and_records_failures(tmp_path):
    archive = tmp_path / "archive" / "2024"
    archive.mkdir(parents=True)
    for name in FILES:
        shutil.copy(REALXPS / name, archive / name)
    (archive / "broken.vms").write_text("this is not VAMAS")
    (archive / "survey.vms").write_bytes((REALXPS / "pynx_regular.vms").read_bytes())
    (archive / "notes.doc").write_text("ignored: not a spectrum pattern")
    run_cli(
        "batch", tmp_path / "archive", "--out", tmp_path / "results", "--workers", 2, "--batch-size", 2, timeout=600
    )
    rows = pd.read_parquet(tmp_path / "results").set_index("source")
    names = {p.split("/")[-1] for p in rows.index}
    assert names == set(FILES) | {"broken.vms", "survey.vms"}
    errors = {p.split("/")[-1]: e for p, e in rows["error"].items() if isinstance(e, str)}
    assert set(errors) == {"broken.vms", "survey.vms"}
    assert "not a readable VAMAS file" in errors["broken.vms"] and "no core-level region" in errors["survey.vms"]

    daemon = DaemonProcess(tmp_path / "daemon")
    try:
        for name in FILES:
            shutil.copy(REALXPS / name, daemon.folder / name)
        published = {body["id"]: body for _, body in daemon.receive(len(FILES))}
    finally:
        assert daemon.stop() == 0
    assert set(published) == set(FILES)
    for path, row in rows.iterrows():
        name = path.split("/")[-1]
        if name not in FILES:
            continue
        body = published[name]
        assert list(row["labels"]) == body["labels"]
        assert row["shift_ev"] == pytest.approx(body["shift_ev"], abs=1e-5)
        assert list(row["probabilities"]) == pytest.approx([body["probabilities"][n] for n in LABEL_NAMES], abs=1e-5)
        assert row["model"] == body["model"] and row["model_version"] == body["model_version"]
