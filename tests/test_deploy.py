"""deploy/: the systemd unit, Prometheus configuration and rules, the Grafana dashboard and the
robot example, each checked with the real tool or against a running daemon."""

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, draw
from tests.harness import DaemonProcess
from xpstream.contract import energy_grid
from xpstream.daemon.messages import encode_spectrum

pytestmark = pytest.mark.integration

DEPLOY = REPO / "deploy"


def _tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (.ci/run installs it)")
    return path


def test_systemd_unit_verifies(tmp_path):
    """systemd-analyze verify, with ExecStart pointing at this installation's xpstream."""
    unit = (DEPLOY / "systemd" / "xpstream.service").read_text()
    for required in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "DynamicUser=yes",
        "StateDirectory=",
        "ProtectSystem=strict",
        "ReadWritePaths=",
        "NoNewPrivileges=yes",
    ):
        assert required in unit, required
    executable = Path(sys.executable).parent / "xpstream"
    local = tmp_path / "xpstream.service"
    local.write_text(unit.replace("/opt/xpstream/.venv/bin/xpstream", str(executable)))
    proc = subprocess.run([_tool("systemd-analyze"), "verify", str(local)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), proc.stdout + proc.stderr


def test_prometheus_config_and_rules_pass_promtool():
    promtool = _tool("promtool")
    folder = DEPLOY / "prometheus"
    for args in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "xpstream-rules.yml"],
        ["test", "rules", "xpstream-rules.test.yml"],
    ):
        proc = subprocess.run([promtool, *args], cwd=folder, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def _queried_metrics() -> set[str]:
    exprs = [
        t["expr"]
        for p in json.loads((DEPLOY / "grafana" / "xpstream-dashboard.json").read_text())["panels"]
        for t in p["targets"]
    ]
    exprs.append((DEPLOY / "prometheus" / "xpstream-rules.yml").read_text())  # every expression in it
    return set(re.findall(r"\bxpstream_[a-z_]+", " ".join(exprs)))


def test_every_metric_the_dashboard_and_alerts_query_is_exported(tmp_path, library):
    d = DaemonProcess(tmp_path, watch=False)
    try:
        _, batch = draw(library, n=2)
        d.push.send(encode_spectrum("a", "esca1", intensities=batch.spectra[0]))
        d.receive(1)
        families = set()
        text = urllib.request.urlopen(f"http://{d.metrics}/metrics", timeout=5).read().decode()
        for name, kind in re.findall(r"^# TYPE (\S+) (\S+)", text, re.M):
            if kind == "histogram":
                families |= {name + s for s in ("_bucket", "_sum", "_count")}
            elif kind == "counter":
                families.add(name if name.endswith("_total") else name + "_total")
            else:
                families.add(name)
    finally:
        assert d.stop() == 0
    queried = _queried_metrics()
    assert len(queried) >= 9 and queried <= families, queried - families


def test_robot_example_acts_on_its_label(tmp_path, library):
    d = DaemonProcess(tmp_path, watch=False)
    robot = subprocess.Popen(
        [sys.executable, str(DEPLOY / "robot_example.py"), d.pub, "--label", "alkyl_halide_f", "--count", "4"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # the robot's subscription settles
        _, ptfe = draw(library, n=1, polymers=("PTFE",), min_components=1, max_components=1)
        _, ps = draw(library, n=1, polymers=("PS",), min_components=1, max_components=1)
        d.push.send(encode_spectrum("sample-ptfe", "esca1", intensities=ptfe.spectra[0]))
        d.push.send(encode_spectrum("sample-ps", "esca1", intensities=ps.spectra[0]))
        grid = energy_grid()
        iodine = ps.spectra[0] + 0.02 * np.exp(-0.5 * ((grid - 619.3) / 0.6) ** 2)
        d.push.send(encode_spectrum("sample-iodine", "esca1", intensities=iodine))
        _, peg = draw(library, n=1, polymers=("PEG",), min_components=1, max_components=1)
        o1s_only = ((grid >= 524) & (grid <= 542)).astype(np.float32)  # cannot show C-F
        d.push.send(encode_spectrum("sample-o1s", "esca1", intensities=peg.spectra[0] * o1s_only, measured=o1s_only))
        out, _ = robot.communicate(timeout=60)
    finally:
        robot.kill()
        d.stop()
    lines = [line.split(" ", 1) for line in out.strip().splitlines()]
    assert [verb for verb, _ in lines] == ["ACT", "PASS", "HOLD", "HOLD"]
    assert lines[0][1].startswith("sample-ptfe: alkyl_halide_f") and lines[1][1].startswith("sample-ps")
    assert lines[2][1].startswith("sample-iodine: out of the polymer library")
    assert lines[3][1].startswith("sample-o1s: alkyl_halide_f not determinable")
