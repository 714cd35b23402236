"""The daemon as a subprocess, with real files, real ZeroMQ sockets on 127.0.0.1 and a real
scrape of /metrics. Every wait is bounded."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from tests.conftest import REALXPS, draw
from tests.harness import DaemonProcess, upstream_publisher
from xpstream.contract import GRID_SIZE, energy_grid
from xpstream.daemon.messages import encode_spectrum

pytestmark = pytest.mark.integration

GRID = energy_grid()


def Daemon(tmp: Path, *extra: str, watch: bool = True, env: dict | None = None) -> DaemonProcess:
    return DaemonProcess(tmp, *extra, watch=watch, env=env, ready_s=60)


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path)
    yield d
    d.close()


def write_region_csv(path: Path, be, counts, name="C 1s"):
    path.write_text(f"BE/eV,{name}\n" + "\n".join(f"{e:.3f},{c:.5f}" for e, c in zip(be, counts, strict=True)))


def test_pushed_spectra_grid_and_regions_and_malformed_ones(daemon, library):
    _, batch = draw(library, n=20, seed=11, max_shift_ev=4.0)
    for i, spectrum in enumerate(batch.spectra):
        daemon.push.send(encode_spectrum(f"grid-{i}", "esca1", intensities=spectrum * 1e5))
    ps = batch.spectra[0]  # also as a region message on a kinetic axis
    keep = (GRID >= 278) & (GRID <= 300)
    for i in range(5):
        daemon.push.send(
            encode_spectrum(
                f"reg-{i}",
                "esca2",
                regions=[("C 1s", 1486.6 - GRID[keep], 1e5 * ps[keep] + 50)],
                axis="kinetic",
                source_energy_ev=1486.6,
            )
        )
    daemon.push.send(b"not msgpack at all")
    daemon.push.send(encode_spectrum("short", "esca1", intensities=np.ones(100)))
    daemon.push.send(encode_spectrum("nan", "esca1", intensities=np.full(GRID_SIZE, np.nan)))
    good = encode_spectrum("after", "esca1", intensities=batch.spectra[1])
    daemon.push.send(good)  # bad input does not stop the flow
    # out of the library: an iodine line on the grid; a copper region above it
    iodine = batch.spectra[2] + 0.3 * np.exp(-0.5 * ((GRID - 619.3) / 0.6) ** 2) / 15.0
    daemon.push.send(encode_spectrum("iodine", "esca1", intensities=iodine))
    cu_be = np.linspace(925.0, 965.0, 401)
    cu_counts = 500 + 5e4 * np.exp(-0.5 * ((cu_be - 933.0) / 0.8) ** 2)
    c1s = ("C 1s", GRID[keep], 1e5 * ps[keep] + 50)
    daemon.push.send(encode_spectrum("copper", "esca1", regions=[c1s, ("Cu 2p", cu_be, cu_counts)]))
    messages = daemon.receive(31)
    predictions = {m["id"]: (t, m) for t, m in messages if t.endswith("/prediction")}
    errors = [(t, m) for t, m in messages if t.endswith("/error")]
    foreign = {"iodine", "copper"}
    expected = {f"grid-{i}" for i in range(20)} | {f"reg-{i}" for i in range(5)} | {"after"} | foreign
    assert set(predictions) == expected
    assert [k for k, (_, m) in predictions.items() if not m["in_library"]] == ["iodine", "copper"]
    assert predictions["copper"][1]["unexplained_regions"] == ["Cu 2p"]
    assert predictions["iodine"][1]["out_of_library_score"] > 0.05
    assert sorted(m["reason"] for _, m in errors) == ["msgpack", "nan", "shape"]
    assert predictions["reg-0"][0] == "xps/esca2/prediction"
    shifts = np.array([predictions[f"grid-{i}"][1]["shift_ev"] for i in range(20)])
    assert np.abs(shifts - batch.shift_ev).mean() < 0.15  # the shipped model measures charging
    metrics = daemon.scrape()
    assert metrics['xpstream_spectra_processed_total{source="pull"}'] == 28
    assert metrics['xpstream_spectra_out_of_library_total{source="pull"}'] == 2
    assert metrics['xpstream_spectra_failed_total{reason="msgpack",source="pull"}'] == 1
    assert metrics['xpstream_spectra_failed_total{reason="shape",source="pull"}'] == 1
    assert metrics["xpstream_latency_seconds_count"] == 28
    assert daemon.stop() == 0


def test_files_complete_slow_corrupt_done_and_failed_folders(tmp_path, library):
    from xpstream.train.simulate import base_spectrum

    d = Daemon(tmp_path, "--done-dir", str(tmp_path / "done"), "--failed-dir", str(tmp_path / "failed"))
    try:
        shutil.copy(REALXPS / "lg4x_PET_C1s.csv", d.folder / "pet.csv")
        (d.folder / "esca9").mkdir()
        (d.folder / "esca9" / "corrupt.csv").write_text("BE/eV,x\n280,1\n281,oops\n")
        spectrum = base_spectrum(library, library.polymer("PMMA"))
        keep = (GRID >= 278) & (GRID <= 300)
        rows = [f"{e + 2.0:.2f},{1e5 * v + 20:.4f}\n" for e, v in zip(GRID[keep], spectrum[keep], strict=True)]
        # pieces 0.5 s apart on one handle, longer than the harness's --stable-s 0.3: the writer holds
        # the file, so it is complete at its close-write event, not at a pause in the writing
        with open(d.folder / "slow.csv", "w") as fh:
            fh.write("BE/eV,PMMA C 1s\n")
            for start in range(0, len(rows), 80):
                fh.writelines(rows[start : start + 80])
                fh.flush()
                time.sleep(0.5)
        messages = d.receive(3)
        by_source = {Path(m["source"]).name: (t, m) for t, m in messages}
        assert set(by_source) == {"pet.csv", "corrupt.csv", "slow.csv"}
        topic, corrupt = by_source["corrupt.csv"]
        assert topic == "xps/esca9/error" and corrupt["reason"] == "parse" and "line 3" in corrupt["message"]
        topic, slow = by_source["slow.csv"]
        assert topic == "xps/incoming/prediction"
        assert slow["shift_ev"] == pytest.approx(2.0, abs=0.3)  # the complete file, not a piece of it
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and [
            len(list((tmp_path / f).rglob("*.csv"))) for f in ("done", "failed")
        ] != [2, 1]:
            time.sleep(0.1)
        assert sorted(p.name for p in (tmp_path / "done").rglob("*.csv")) == ["pet.csv", "slow.csv"]
        assert [p.relative_to(tmp_path / "failed").as_posix() for p in (tmp_path / "failed").rglob("*.csv")] == [
            "esca9/corrupt.csv"
        ]
        assert d.scrape()['xpstream_spectra_processed_total{source="folder"}'] == 2
    finally:
        assert d.stop() == 0


def test_restart_neither_loses_nor_repeats_files(tmp_path):
    d = Daemon(tmp_path)
    for i in range(3):
        shutil.copy(REALXPS / "lg4x_PET_C1s.csv", d.folder / f"pet{i}.csv")
    assert len(d.receive(3)) == 3
    assert d.stop() == 0
    shutil.copy(REALXPS / "lg4x_PET_C1s.csv", d.folder / "while-down.csv")
    d = Daemon(tmp_path)
    try:
        messages = d.receive(4, timeout=8)
        assert [Path(m["source"]).name for _, m in messages] == ["while-down.csv"]
    finally:
        assert d.stop() == 0


def test_sigterm_with_a_full_queue_loses_nothing(tmp_path, library):
    d = Daemon(tmp_path, "--max-batch", "8", "--max-wait-ms", "1", "--capacity", "64", watch=False)
    try:
        _, batch = draw(library, n=64, seed=5)
        for i in range(400):
            d.push.send(encode_spectrum(f"s{i}", "esca1", intensities=batch.spectra[i % 64]))
        time.sleep(0.05)
        d.proc.send_signal(signal.SIGTERM)
        messages = d.receive(400, timeout=120)
        assert d.proc.wait(timeout=60) == 0
        ids = [m["id"] for _, m in messages]
        assert ids == [f"s{i}" for i in range(400)]  # every one, once, in order
    finally:
        d.close()


def test_bad_config_is_refused_with_the_key(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[batch]\nmax_batch = 'many'\n")
    proc = subprocess.run(
        [sys.executable, "-m", "xpstream", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert proc.returncode == 2 and "batch.max_batch must be int" in proc.stderr


def test_sub_socket_drops_oldest_when_overloaded_and_counts_it(tmp_path, library):
    """A publisher the daemon subscribes to floods it: the queue keeps the newest spectra,
    every drop is counted, and what is kept is answered."""
    context = zmq.Context()
    upstream, endpoint = upstream_publisher(context)
    d = Daemon(
        tmp_path,
        "--sub",
        endpoint,
        "--capacity",
        "16",
        "--max-batch",
        "16",
        "--max-wait-ms",
        "1",
        watch=False,
    )
    try:
        _, batch = draw(library, n=8, seed=2)
        time.sleep(0.5)  # SUB connection settles
        n = 3000
        for i in range(n):
            upstream.send_multipart([b"spectra", encode_spectrum(f"f{i}", "esca1", intensities=batch.spectra[i % 8])])
        answered = d.receive(n, timeout=20)
        metrics = d.scrape()
        dropped = metrics.get('xpstream_spectra_dropped_total{source="sub"}', 0)
        processed = metrics['xpstream_spectra_processed_total{source="sub"}']
        assert dropped > 0 and processed + dropped == n == len(answered) + dropped
        assert answered[-1][1]["id"] == f"f{n - 1}"  # the newest survive
    finally:
        assert d.stop() == 0
        upstream.close(linger=0)
        context.term()


def test_model_file_change_reloads_without_losing_spectra(tmp_path, library):
    from xpstream.models import default_model_path

    model = tmp_path / "model.onnx"
    shutil.copy(default_model_path(), model)
    d = Daemon(tmp_path, "--model", str(model), watch=False)
    try:
        _, batch = draw(library, n=8, seed=4)
        for i in range(50):
            d.push.send(encode_spectrum(f"a{i}", "esca1", intensities=batch.spectra[i % 8]))
        corrupt = tmp_path / "corrupt.onnx"
        corrupt.write_bytes(b"not a model")
        os.replace(corrupt, model)  # a bad model is refused; the old one keeps serving
        time.sleep(1.5)
        os.replace(shutil.copy(default_model_path(), tmp_path / "new.onnx"), model)
        d.proc.send_signal(signal.SIGHUP)
        for i in range(50):
            d.push.send(encode_spectrum(f"b{i}", "esca1", intensities=batch.spectra[i % 8]))
        ids = [m["id"] for _, m in d.receive(100)]
        assert sorted(ids) == sorted([f"a{i}" for i in range(50)] + [f"b{i}" for i in range(50)])
    finally:
        assert d.stop() == 0
    log = (tmp_path / "daemon.log").read_text()
    assert "model reload refused, keeping the current model" in log
    assert log.count("serving model xpstream-stn") >= 2


def test_systemd_notifications_ready_watchdog_stopping(tmp_path):
    """Under systemd (NOTIFY_SOCKET set) the daemon says READY=1, then WATCHDOG=1 at half the
    watchdog interval, and STOPPING=1 on SIGTERM."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(30)
    d = Daemon(tmp_path, watch=False, env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"})
    try:
        seen = []
        while "WATCHDOG=1" not in seen:
            seen.append(notify.recv(4096).decode())
        assert seen[0] == "READY=1"
        assert d.stop() == 0
        while "STOPPING=1" not in seen:
            seen.append(notify.recv(4096).decode())
    finally:
        d.close()
        notify.close()


def test_polling_observer_for_network_shares(tmp_path):
    d = Daemon(tmp_path, "--polling")
    try:
        (d.folder / "deep" / "er").mkdir(parents=True)
        shutil.copy(REALXPS / "pynx_PBTTT_specs.xml", d.folder / "deep" / "er" / "pbttt.xml")
        ((topic, message),) = d.receive(1)
        assert topic == "xps/deep/prediction" and message["id"].startswith("pbttt.xml@")
    finally:
        assert d.stop() == 0


def test_oversized_files_and_messages_are_refused(tmp_path):
    config = tmp_path / "limits.toml"
    config.write_text("[watch]\nmax_file_bytes = 4096\n[zmq]\nmax_message_bytes = 100000\n")
    d = Daemon(tmp_path, "--config", str(config))
    try:
        shutil.copy(REALXPS / "lg4x_PET_C1s.csv", d.folder / "big.csv")  # about 10 kB
        ((topic, error),) = d.receive(1)
        assert topic == "xps/incoming/error" and error["reason"] == "io" and "max_file_bytes" in error["message"]
        d.push.send(b"x" * 200_000)  # above ZMQ_MAXMSGSIZE: ZeroMQ drops the connection, not the daemon
        d.push.send(encode_spectrum("ok", "esca1", intensities=np.ones(GRID_SIZE)))
        assert d.proc.poll() is None
    finally:
        assert d.stop() == 0


def test_model_outside_the_configured_folder_is_refused(tmp_path):
    from xpstream.models import default_model_path

    (tmp_path / "models").mkdir()
    elsewhere = tmp_path / "elsewhere.onnx"
    shutil.copy(default_model_path(), elsewhere)
    link = tmp_path / "models" / "link.onnx"
    link.symlink_to(elsewhere)  # a link out of the folder counts as outside
    for path in (elsewhere, link):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "xpstream",
                "serve",
                "--model",
                str(path),
                "--no-watch",
                "--metrics",
                "",
                "--config",
                str(_write(tmp_path / "c.toml", f'[model]\nfolder = "{tmp_path / "models"}"\n')),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2 and "outside model.folder" in proc.stderr, proc.stderr


def _write(path, text):
    path.write_text(text)
    return path
