"""Sequence numbers and replay: every record carries the daemon's `seq`, continued across
restarts; a subscriber that was away, or saw a gap, gets what it missed from the history."""

import json
import time

import msgpack
import pytest
import zmq

from tests.conftest import draw, run_cli
from tests.harness import DaemonProcess
from xpstream.client import Subscriber, fetch_replay
from xpstream.daemon.history import with_seq
from xpstream.daemon.messages import encode_spectrum

pytestmark = pytest.mark.integration


def test_with_seq_adds_a_key_to_small_and_large_maps():
    for body in ({"id": "a"}, {f"k{i}": i for i in range(15)}, {f"k{i}": i for i in range(40)}):
        assert msgpack.unpackb(with_seq(msgpack.packb(body), 7)) == {"seq": 7, **body}


def test_seq_continues_across_restarts_and_missed_records_are_replayed(tmp_path, library):
    _, batch = draw(library, n=4, seed=6)
    d = DaemonProcess(tmp_path, watch=False)
    try:
        for i in range(5):
            d.push.send(encode_spectrum(f"a{i}", "esca1", intensities=batch.spectra[i % 4]))
        first = d.receive(5)
        assert [body["seq"] for _, body in first] == [1, 2, 3, 4, 5]
        missed = fetch_replay(d.replay, since=3)
        assert [(r["seq"], r["id"]) for _, r in missed] == [(3, "a2"), (4, "a3"), (5, "a4")]
        assert missed[0][1] == first[2][1]  # the same record, byte for byte decoded
        request = zmq.Context.instance().socket(zmq.REQ)
        request.setsockopt(zmq.LINGER, 0)
        request.connect(d.replay)
        for hostile in (b"\xc1 not msgpack", msgpack.packb({"since": 1, "limit": -1})):  # refused, or bounded
            request.send(hostile)
            assert request.poll(5000) and request.recv_multipart()[0] in (b"error", b"ok")
        request.close()
        assert len(fetch_replay(d.replay, since=1)) == 5  # and it answers on
        # a subscriber that last saw seq 2 fills the gap before the next record
        with Subscriber(d.pub, ["xps/"], replay=d.replay) as subscriber:
            subscriber.last_seq = 2
            time.sleep(0.5)  # the subscription settles
            d.push.send(encode_spectrum("a5", "esca1", intensities=batch.spectra[0]))
            got = [r["seq"] for _, r in subscriber.messages(count=4, timeout=30)]
        assert got == [3, 4, 5, 6]
    finally:
        assert d.stop() == 0
    d = DaemonProcess(tmp_path, watch=False)  # the same history file
    try:
        d.push.send(encode_spectrum("b0", "esca1", intensities=batch.spectra[0]))
        ((_, body),) = d.receive(1)
        assert body["seq"] == 7 and body["id"] == "b0"
        out = run_cli("replay", "--since", "6", "--endpoint", d.replay, "--json").stdout.splitlines()
        assert [json.loads(line)["id"] for line in out] == ["a5", "b0"]
    finally:
        assert d.stop() == 0


def test_send_files_from_an_instrument_pc_and_wait_for_the_answers(tmp_path):
    from tests.conftest import REALXPS

    d = DaemonProcess(tmp_path, watch=False)
    try:
        files = [REALXPS / "lg4x_PET_C1s.csv", REALXPS / "pynx_PBTTT_specs.xml"]
        out = run_cli("send", *files, "--to", d.pull, "--replies", d.pub, "--instrument", "esca7", "--json")
        answers = [json.loads(line) for line in out.stdout.splitlines()]
        assert [a["topic"] for a in answers] == ["xps/esca7/prediction"] * 2
        assert [a["id"].split("@")[0] for a in answers] == ["lg4x_PET_C1s.csv", "pynx_PBTTT_specs.xml"]
        assert {"benzene_ring", "ester_aromatic"} <= set(answers[0]["labels"])
        assert answers[1]["atomic_percent"]["S"] > 0  # the S 2p region travelled with the C 1s
    finally:
        assert d.stop() == 0
