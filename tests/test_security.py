"""CURVE: with keys configured, only clients whose public key is in the allowed folder can push
spectra in or read predictions out (real sockets on 127.0.0.1, real authenticator)."""

import contextlib
import time

import msgpack
import pytest
import zmq
import zmq.auth

from tests.conftest import draw
from tests.harness import DaemonProcess, free_port
from xpstream.daemon.messages import encode_spectrum

pytestmark = pytest.mark.integration


def keys(folder, name):
    folder.mkdir(exist_ok=True)
    public_file, secret_file = zmq.auth.create_certificates(folder, name)
    return zmq.auth.load_certificate(secret_file)


def client(context, kind, endpoint, client_keys, server_public):
    socket = context.socket(kind)
    socket.setsockopt(zmq.LINGER, 0)
    if client_keys is not None:
        socket.curve_publickey, socket.curve_secretkey = client_keys
        socket.curve_serverkey = server_public
    if kind == zmq.SUB:
        socket.setsockopt_string(zmq.SUBSCRIBE, "xps/")
    socket.connect(endpoint)
    return socket


def drain(socket, seconds):
    got, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        if socket.poll(100):
            got.append(msgpack.unpackb(socket.recv_multipart()[1], raw=False)["id"])
    return got


def test_only_allowed_clients_push_and_subscribe(tmp_path, library):
    server = keys(tmp_path / "server", "server")
    allowed = keys(tmp_path / "allowed", "robot")  # its public key lands in the allowed folder
    stranger = keys(tmp_path / "strangers", "stranger")
    config = tmp_path / "secure.toml"
    config.write_text(
        f'[security]\ncurve_server_secret = "{tmp_path / "server" / "server.key_secret"}"\n'
        f'curve_clients_dir = "{tmp_path / "allowed"}"\n'
    )
    (tmp_path / "allowed" / "robot.key_secret").unlink()  # the daemon needs public keys only
    d = DaemonProcess(tmp_path / "state", "--config", str(config), watch=False)
    context = zmq.Context()
    try:
        good_sub = client(context, zmq.SUB, d.pub, allowed, server[0])
        bad_sub = client(context, zmq.SUB, d.pub, stranger, server[0])
        plain_sub = client(context, zmq.SUB, d.pub, None, None)
        good_push = client(context, zmq.PUSH, d.pull, allowed, server[0])
        bad_push = client(context, zmq.PUSH, d.pull, stranger, server[0])
        plain_push = client(context, zmq.PUSH, d.pull, None, None)
        time.sleep(1.0)
        _, batch = draw(library, n=3)
        for socket, name, spectrum in (
            (bad_push, "from-stranger", batch.spectra[0]),
            (plain_push, "from-plain", batch.spectra[1]),
        ):
            with contextlib.suppress(zmq.Again):  # a refused client has no connection: it may not even send
                socket.send(encode_spectrum(name, "esca1", intensities=spectrum), zmq.NOBLOCK)
        good_push.send(encode_spectrum("from-robot", "esca1", intensities=batch.spectra[2]))
        assert drain(good_sub, 5) == ["from-robot"]  # the strangers' spectra never got in
        assert drain(bad_sub, 0.5) == [] and drain(plain_sub, 0.5) == []  # nor predictions out
    finally:
        for socket in (good_sub, bad_sub, plain_sub, good_push, bad_push, plain_push):
            socket.close(linger=0)
        context.term()
        assert d.stop() == 0


def test_sub_inputs_hear_only_the_keyed_publisher(tmp_path, library):
    """SUB inputs as CURVE clients: spectra from the publisher holding the configured key are
    predicted; a publisher with another key, or none, is never heard."""
    server = keys(tmp_path / "server", "server")
    allowed = keys(tmp_path / "allowed", "robot")
    instrument = keys(tmp_path / "instrument", "instrument")
    rogue = keys(tmp_path / "rogue", "rogue")
    endpoints = {name: f"tcp://127.0.0.1:{free_port()}" for name in ("instrument", "rogue", "plain")}
    config = tmp_path / "secure.toml"
    config.write_text(
        f"[zmq]\nsub = {list(endpoints.values())!r}\n".replace("'", '"')
        + f'[security]\ncurve_server_secret = "{tmp_path / "server" / "server.key_secret"}"\n'
        f'curve_clients_dir = "{tmp_path / "allowed"}"\n'
        f'curve_publisher_key = "{tmp_path / "instrument" / "instrument.key"}"\n'
    )
    context = zmq.Context()
    publishers = {}
    for name, pair in (("instrument", instrument), ("rogue", rogue), ("plain", None)):
        socket = context.socket(zmq.PUB)
        socket.setsockopt(zmq.LINGER, 0)
        if pair is not None:
            socket.curve_publickey, socket.curve_secretkey = pair
            socket.curve_server = True
        socket.bind(endpoints[name])
        publishers[name] = socket
    d = DaemonProcess(tmp_path / "state", "--config", str(config), watch=False)
    reader = client(context, zmq.SUB, d.pub, allowed, server[0])
    try:
        _, batch = draw(library, n=1)
        heard, deadline = [], time.monotonic() + 20
        for i in range(100):  # publishers repeat until the subscriptions have settled
            for name, socket in publishers.items():
                socket.send_multipart(
                    [b"spectra", encode_spectrum(f"{name}-{i}", "esca1", intensities=batch.spectra[0])]
                )
            heard += drain(reader, 0.2)
            if len(heard) >= 5 or time.monotonic() > deadline:
                break
        heard += drain(reader, 1.0)
        assert len(heard) >= 5 and all(name.startswith("instrument-") for name in heard), heard
    finally:
        for socket in (reader, *publishers.values()):
            socket.close(linger=0)
        context.term()
        assert d.stop() == 0
