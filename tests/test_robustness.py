"""A daemon its input cannot stop: hostile messages and files, a failing journal, a steady
producer at SIGTERM, a busy queue. Each probe is followed by a canary that must still be
answered, and /healthz must tell the truth. Real daemon subprocesses, real sockets and files."""

import collections
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import msgpack
import numpy as np
import pytest

from tests.conftest import REALXPS, draw
from tests.harness import DaemonProcess, upstream_publisher
from xpstream.daemon.messages import SCHEMA, encode_spectrum

pytestmark = pytest.mark.integration

PET = REALXPS / "lg4x_PET_C1s.csv"


def healthz(d: DaemonProcess) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{d.metrics}/healthz", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_hostile_messages_are_refused_and_the_socket_reads_on(tmp_path, library):
    d = DaemonProcess(tmp_path, watch=False)
    try:
        head = {"schema": SCHEMA, "instrument": "esca1", "kind": "grid"}
        huge = {**head, "id": "huge", "intensities": {"shape": [0, 2**63], "data": b""}}
        deep = {**head, "id": "deep", "intensities": {"shape": [1] * 65, "data": b"\0\0\0\0"}}
        d.push.send(msgpack.packb(huge))
        d.push.send(msgpack.packb(deep))
        d.push.send(msgpack.packb({**head, "id": "schema", "schema": "x" * 10_000_000}))
        energy = np.linspace(280.0, 290.0, 100_000)
        regions = [("C 1s", energy, 1.0 + np.hanning(len(energy)))]
        regions += [(f"O 1s {i}", np.array([530.0, 531.0, 532.0]), np.ones(3)) for i in range(1000)]
        d.push.send(encode_spectrum("padded", "esca1", regions=regions))
        _, batch = draw(library, n=1, seed=3)
        d.push.send(encode_spectrum("canary", "esca1", intensities=batch.spectra[0]))
        messages = d.receive(5, timeout=60)
        errors = [body for topic, body in messages if topic.endswith("/error")]
        assert sorted(e["reason"] for e in errors) == ["schema", "shape", "shape", "size"]
        assert all(len(e["message"]) <= 200 for e in errors)  # the 10 MB schema is not echoed
        assert [(t, b["id"]) for t, b in messages if t.endswith("/prediction")] == [("xps/esca1/prediction", "canary")]
        assert healthz(d) == (200, "ok\n")
        assert d.scrape()['xpstream_stage_up{stage="zmq-pull"}'] == 1
    finally:
        assert d.stop() == 0


def test_hostile_files_are_refused_unread_and_the_folder_watches_on(tmp_path):
    d = DaemonProcess(tmp_path, "--done-dir", str(tmp_path / "done"), "--failed-dir", str(tmp_path / "failed"))
    try:
        folder = os.fsencode(d.folder)
        shutil.copy(PET, folder + b"/bad\xff.csv")  # a name that is not UTF-8
        os.mkfifo(d.folder / "pipe.csv")
        os.symlink("/dev/zero", d.folder / "zero.csv")
        os.symlink("/etc/passwd", d.folder / "passwd.csv")
        shutil.copy(PET, d.folder / "pet.csv")
        shutil.copy(PET, d.folder / "UPPER.CSV")  # patterns match any case
        (d.folder / "notes.md").write_text("no spectrum")  # no pattern takes it: logged once, counted
        got = {os.path.basename(body["source"]): (topic, body) for topic, body in d.receive(6, timeout=60)}
        assert got["UPPER.CSV"][0] == "xps/incoming/prediction"
        assert d.scrape()['xpstream_files_ignored_total{instrument="incoming"}'] == 1
        assert got["bad\\xff.csv"][0] == "xps/incoming/prediction"
        assert got["pet.csv"][0] == "xps/incoming/prediction"
        for name, says in (("pipe.csv", "FIFO"), ("zero.csv", "out of the watched"), ("passwd.csv", "out of the")):
            topic, body = got[name]
            assert topic == "xps/incoming/error" and body["reason"] == "io" and says in body["message"]
        assert "root:" not in str(got["passwd.csv"][1])  # nothing of the target is echoed
        # the same name again with other content: another measurement, another id, no overwrite
        shutil.copy(REALXPS / "lg4x_PET_C1s.csv", d.folder / "other.csv")
        (d.folder / "pet.csv").write_text(PET.read_text().replace(",", ", "))  # same numbers, other bytes
        again = {os.path.basename(b["source"]): b for _, b in d.receive(2, timeout=60)}
        assert again["pet.csv"]["id"] != got["pet.csv"][1]["id"] and again["pet.csv"]["id"].startswith("pet.csv@")
        assert again["other.csv"]["id"].split("@")[1] == got["pet.csv"][1]["id"].split("@")[1]  # same content
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(list((tmp_path / "done").iterdir())) < 5:
            time.sleep(0.1)
        assert sorted(p.name for p in (tmp_path / "done").iterdir()) == sorted(
            ["bad\udcff.csv", "pet.csv", "pet.1.csv", "other.csv", "UPPER.CSV"]
        )
        # a file moved back from failed/ is taken again
        (d.folder / "corrupt.csv").write_text("BE/eV,x\n280,1\n281,oops\n")
        assert d.receive(1, timeout=30)[0][1]["reason"] == "parse"
        while time.monotonic() < deadline + 10 and not (tmp_path / "failed" / "corrupt.csv").exists():
            time.sleep(0.1)
        shutil.move(tmp_path / "failed" / "corrupt.csv", d.folder / "corrupt.csv")
        assert d.receive(1, timeout=30)[0][1]["reason"] == "parse"
        assert healthz(d) == (200, "ok\n")
        start = time.monotonic()
    finally:
        assert d.stop(timeout=30) == 0
    assert time.monotonic() - start < 15  # the FIFO holds nothing up


def test_a_failing_journal_makes_the_daemon_unhealthy_not_silent(tmp_path):
    """Disk full (the file-size limit): predictions are still published, the journal records
    are retried, and /healthz names the journal."""
    d = DaemonProcess(tmp_path, prefix=("prlimit", "--fsize=200000"))
    try:
        for i in range(80):
            shutil.copy(PET, d.folder / f"p{i:03d}.csv")
        published = d.receive(80, timeout=120)
        assert len(published) == 80
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and healthz(d)[0] == 200:
            time.sleep(0.2)
        status, text = healthz(d)
        assert status == 503 and "journal down" in text
        assert d.scrape()['xpstream_stage_up{stage="journal"}'] == 0
    finally:
        d.close()


def test_a_corrupt_journal_is_a_one_line_start_error(tmp_path):
    journal = tmp_path / "journal.sqlite"
    journal.write_bytes(b"SQLite format 3\0" + os.urandom(8192))
    proc = subprocess.run(
        [sys.executable, "-m", "xpstream", "serve", "--journal", str(journal), "--watch", str(tmp_path / "in")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]  # after the start-up log lines
    assert line.startswith("xpstream serve: error: state journal") and str(journal) in line and "move it aside" in line


def test_sigterm_ends_within_the_drain_deadline_under_a_steady_producer(tmp_path, library):
    config = tmp_path / "xpstream.toml"
    config.write_text("[batch]\ndrain_s = 2.0\n")
    d = DaemonProcess(tmp_path, "--config", str(config), watch=False)
    _, batch = draw(library, n=8, seed=4)
    stop = threading.Event()

    def produce():
        i = 0
        while not stop.is_set():
            d.push.send(encode_spectrum(f"s{i}", "esca1", intensities=batch.spectra[i % 8]))
            i += 1
            time.sleep(0.001)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        time.sleep(1.0)
        start = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(timeout=30) == 0
        assert time.monotonic() - start < 10
    finally:
        stop.set()
        producer.join()
        d.close()


def test_no_file_is_published_twice_under_a_busy_queue(tmp_path):
    """The daemon's own reads cause inotify events; they never put a file back."""
    d = DaemonProcess(tmp_path, "--stable-s", "1.0", "--max-batch", "4", "--max-wait-ms", "50")
    try:
        for i in range(200):
            shutil.copy(PET, d.folder / f"f{i:03d}.csv")
        messages = d.receive(200, timeout=180)
        messages += d.receive(10, timeout=3)  # anything published twice
    finally:
        assert d.stop() == 0
    counts = collections.Counter(body["source"] for _, body in messages)
    assert len(counts) == 200 and max(counts.values()) == 1


def test_a_message_above_the_size_limit_is_counted_and_its_sender_heard_again(tmp_path, library):
    """ZeroMQ drops a message above zmq.max_message_bytes with its sender's connection: the
    drop shows in xpstream_zmq_disconnects_total, and the sender's next message is answered."""
    config = tmp_path / "small.toml"
    config.write_text("[zmq]\nmax_message_bytes = 65536\n")
    d = DaemonProcess(tmp_path, "--config", config, watch=False)
    try:
        d.push.send(b"\0" * 200_000)
        key = 'xpstream_zmq_disconnects_total{source="pull"}'
        deadline = time.monotonic() + 10
        while d.scrape().get(key, 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert d.scrape()[key] == 1
        _, batch = draw(library, n=1, seed=4)
        d.push.send(encode_spectrum("after", "esca1", intensities=batch.spectra[0]))  # sent once reconnected
        assert [b["id"] for _, b in d.receive(1, timeout=30)] == ["after"]
    finally:
        assert d.stop() == 0


def test_above_the_memory_ceiling_pull_waits_and_sub_drops_but_nothing_stalls(tmp_path, library):
    """A ceiling the daemon is always above (1 MiB): input is taken only into an empty queue, so
    every PULL message is still answered (back-pressure, nothing lost), SUB input beyond that is
    dropped and counted, and both show in xpstream_memory_waits_total."""
    import zmq

    context = zmq.Context()
    upstream, endpoint = upstream_publisher(context)
    d = DaemonProcess(tmp_path, "--sub", endpoint, "--memory-mb", "1", watch=False)
    try:
        _, batch = draw(library, n=8, seed=5)
        time.sleep(0.5)  # the SUB connection settles
        for i in range(2000):
            upstream.send_multipart([b"s", encode_spectrum(f"sub{i}", "esca1", intensities=batch.spectra[i % 8])])
        for i in range(200):
            d.push.send(encode_spectrum(f"pull{i}", "esca1", intensities=batch.spectra[i % 8]))
        answered = set()
        deadline = time.monotonic() + 120
        while not {f"pull{i}" for i in range(200)} <= answered and time.monotonic() < deadline:
            answered |= {b["id"] for _, b in d.receive(500, timeout=1)}
        assert {f"pull{i}" for i in range(200)} <= answered
        metrics = d.scrape()
        assert metrics["xpstream_memory_ceiling_bytes"] == 1024 * 1024
        assert metrics['xpstream_memory_waits_total{source="pull"}'] > 0
        assert metrics['xpstream_memory_waits_total{source="sub"}'] > 0
        assert metrics['xpstream_spectra_dropped_total{source="sub"}'] > 0
        assert healthz(d) == (200, "ok\n")
    finally:
        assert d.stop() == 0
        upstream.close(linger=0)
        context.term()
