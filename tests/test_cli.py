"""The command line: thin, quick to start, and plain about errors."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REALXPS, run_cli

pytestmark = pytest.mark.integration

TRAINING_MODULES = "[m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx') or m.startswith('xpstream.train')]"


def _modules_after(command: list[str]) -> list[str]:
    """Training modules loaded in a fresh interpreter after running `command` through main()
    (the command fails fast on a missing config file, after all of its imports)."""
    code = f"import sys\nfrom xpstream.cli import main\nrc = main({command!r})\nprint(rc, {TRAINING_MODULES})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    rc, modules = out.stdout.split(" ", 1)
    return int(rc), eval(modules)


def test_serve_and_subscribe_import_no_training_code(tmp_path):
    rc, modules = _modules_after(["serve", "--config", str(tmp_path / "missing.toml")])
    assert rc == 2 and modules == []
    rc, modules = _modules_after(["subscribe", "tcp://127.0.0.1:1", "--timeout", "0.1"])
    assert rc == 2 and modules == []  # timed out after 0 messages


EXTRAS_ONLY = ("torch", "scipy", "h5py", "pandas", "xarray", "pynxtools", "pynxtools_xps", "ray")
BLOCK_EXTRAS = f"""
import sys
class BlockExtras:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRAS_ONLY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
sys.meta_path.insert(0, BlockExtras())
"""


def test_serving_and_predict_need_none_of_the_extras_and_name_the_vendor_extra():
    """The first set-up command installs no extra but a runtime: reading CSV and VAMAS and
    predicting must work without torch, scipy, h5py, pandas or pynxtools, and a native vendor
    file is refused with reason `unsupported` naming the extra (not a traceback)."""
    files = [REALXPS / "lg4x_PET_C1s.csv", REALXPS / "cheminfo_perovskite_kratos.vms", REALXPS / "pynx_PBTTT_specs.xml"]
    command = ["predict", *map(str, files), "--json"]
    code = BLOCK_EXTRAS + f"from xpstream.cli import main\nsys.exit(main({command!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    records = {r["source"].rsplit("/", 1)[-1]: r for r in map(json.loads, out.stdout.splitlines())}
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert {"benzene_ring", "ester_aromatic"} <= set(records["lg4x_PET_C1s.csv"]["labels"])
    assert "probabilities" in records["cheminfo_perovskite_kratos.vms"]
    refused = records["pynx_PBTTT_specs.xml"]
    assert refused["reason"] == "unsupported" and "SPECS XML files need" in refused["error"]
    assert "pip install 'xpstream[vendor]'" in refused["error"]


def test_help_lists_every_command_and_their_defaults():
    from xpstream.cli import COMMANDS

    top = run_cli("--help").stdout
    assert all(name in top for name in COMMANDS)
    train = run_cli("train", "--help").stdout
    assert "stn-region" in train and "(default: 100000)" in train and "--max-shift" in train


def test_predict_reads_folders_refuses_missing_files_and_exclusive_formats(tmp_path):
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "PET.CSV").write_bytes((REALXPS / "lg4x_PET_C1s.csv").read_bytes())  # upper case
    (tmp_path / "notes.md").write_text("not a spectrum")
    proc = run_cli("predict", tmp_path, "--json")
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["source"] for r in records] == [str(tmp_path / "nested" / "PET.CSV")]
    assert {"benzene_ring", "ester_aromatic"} <= set(records[0]["labels"])
    missing = run_cli("predict", tmp_path / "gone.vms", check=False)
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    both = run_cli("predict", tmp_path, "--json", "--markdown", check=False)
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_markdown_table_has_a_row_per_file_errors_included(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("BE/eV,x\n1,2\n")
    proc = run_cli("predict", REALXPS / "lg4x_PET_C1s.csv", bad, "--markdown", check=False)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1 and lines[0].startswith("| file |") and len(lines) == 4
    assert "lg4x_PET_C1s.csv" in lines[2] and "benzene_ring" in lines[2] and "refused:" in lines[3]


def test_message_lines_name_the_measurement_and_never_print_minus_zero():
    from xpstream.present import format_message, signed_ev

    assert signed_ev(-0.001) == "+0.00 eV" and signed_ev(-0.26) == "-0.26 eV"
    line = format_message("xps/esca1/prediction", {"id": "a.vms", "shift_ev": -0.0, "labels": [], "in_library": True})
    assert line == "xps/esca1/prediction a.vms: shift +0.00 eV, (none)"
    error = format_message("xps/esca1/error", {"id": None, "source": "tcp://x", "reason": "parse", "message": "bad"})
    assert error == "xps/esca1/error tcp://x parse: bad"


def test_version_names_package_contract_and_shipped_model():
    from xpstream import __version__
    from xpstream.contract import CONTRACT_VERSION
    from xpstream.daemon.infer import load_model
    from xpstream.models import default_model_path

    meta = load_model(default_model_path()).metadata
    out = run_cli("--version").stdout.strip()
    assert out == f"xpstream {__version__}, contract {CONTRACT_VERSION}, shipped model {meta.model_id} {meta.version}"


def test_empty_spectra_are_refused_with_reason_empty(tmp_path):
    flat = tmp_path / "flat.csv"
    flat.write_text("BE/eV,C 1s\n" + "\n".join(f"{280 + 0.1 * i:.1f},0" for i in range(100)))
    proc = run_cli("predict", flat, "--json", check=False)
    (record,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 1 and record["reason"] == "empty" and "no signal" in record["error"]


def test_busy_ports_stop_start_up_with_one_line_naming_them(tmp_path):
    from tests.harness import DaemonProcess, free_port

    d = DaemonProcess(tmp_path / "first", watch=False)
    try:
        common = ["serve", "--no-watch", "--history", "", "--replay", ""]
        busy_pub = run_cli(*common, "--pub", d.pub, "--metrics", f"127.0.0.1:{free_port()}", check=False)
        busy_metrics = run_cli(*common, "--pub", f"tcp://127.0.0.1:{free_port()}", "--metrics", d.metrics, check=False)
    finally:
        assert d.stop() == 0
    for proc, key, where in ((busy_pub, "zmq.pub", d.pub), (busy_metrics, "metrics.address", d.metrics)):
        line = proc.stderr.strip().splitlines()[-1]
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert line.startswith(f"xpstream serve: error: {key} '{where}'") and "e.g." in line
