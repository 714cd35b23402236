"""`xpstream batch` on a real local Ray instance: the daemon's predictions, Parquet out, failed
files recorded with their reason."""

import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REALXPS, run_cli
from tests.harness import DaemonProcess
from xpstream.contract import LABEL_NAMES

pytestmark = pytest.mark.integration

pytest.importorskip("ray", reason="the cluster extra is not installed")

FILES = ["lg4x_PET_C1s.csv", "pynx_PBTTT_specs.xml", "cheminfo_perovskite_kratos.vms", "pynx_MgFe2O4_small_specs.xy"]


def test_batch_equals_the_daemon_and_records_failures(tmp_path):
    archive = tmp_path / "archive" / "2024"
    archive.mkdir(parents=True)
    for name in FILES:
        shutil.copy(REALXPS / name, archive / name)
    (archive / "broken.vms").write_text("this is not VAMAS")
    (archive / "survey.vms").write_bytes((REALXPS / "pynx_regular.vms").read_bytes())  # read from its survey
    (archive / "valence.csv").write_text("BE,x\n" + "\n".join(f"{e},{e}" for e in range(30)))
    (archive / "notes.doc").write_text("ignored: not a spectrum pattern")
    run_cli(
        "batch", tmp_path / "archive", "--out", tmp_path / "results", "--workers", 2, "--batch-size", 2, timeout=600
    )
    rows = pd.read_parquet(tmp_path / "results").set_index("source")
    names = {p.split("/")[-1] for p in rows.index}
    assert names == set(FILES) | {"broken.vms", "survey.vms", "valence.csv"}
    errors = {p.split("/")[-1]: e for p, e in rows["error"].items() if isinstance(e, str)}
    assert set(errors) == {"broken.vms", "valence.csv"}
    assert "not a readable VAMAS file" in errors["broken.vms"] and "no core-level region" in errors["valence.csv"]
    assert not rows.loc[str(archive / "cheminfo_perovskite_kratos.vms"), "in_library"]  # Pb 4f, I 3d

    daemon = DaemonProcess(tmp_path / "daemon")
    try:
        for name in FILES:
            shutil.copy(REALXPS / name, daemon.folder / name)
        published = {Path(body["source"]).name: body for _, body in daemon.receive(len(FILES))}
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


def test_daemon_inference_on_ray_actors(tmp_path, library):
    """`serve --ray local`: the same batching, publishing and metrics, the model on Ray actors."""
    from tests.conftest import draw
    from xpstream.daemon.infer import load_model
    from xpstream.daemon.messages import encode_spectrum
    from xpstream.models import default_model_path

    _, batch = draw(library, n=6, seed=9, max_shift_ev=3.0)
    d = DaemonProcess(tmp_path, "--ray", "local", watch=False, ready_s=180)
    try:
        for i, spectrum in enumerate(batch.spectra):
            d.push.send(encode_spectrum(f"s{i}", "esca1", intensities=spectrum))
        published = {body["id"]: body for _, body in d.receive(6, timeout=120)}
        info = [k for k in d.scrape() if k.startswith("xpstream_model_info")]
    finally:
        assert d.stop() == 0
    assert len(info) == 1 and 'provider="ray:CPUExecutionProvider"' in info[0]
    model = load_model(default_model_path())
    out = model.run(batch.spectra)
    thresholds = model.metadata.thresholds
    for i in range(6):
        body = published[f"s{i}"]
        assert body["shift_ev"] == pytest.approx(float(out["shift_ev"][i]), abs=1e-5)
        probs, judged = out["probabilities"][i], out["determined"][i] > 0  # alkene: never judged
        expected = [n for n, p, t, d in zip(LABEL_NAMES, probs, thresholds, judged, strict=True) if p >= t and d]
        assert body["labels"] == expected
