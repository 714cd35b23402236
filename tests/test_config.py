"""The daemon's configuration: what a person types is read or refused with the fix."""

import pytest


def test_endpoints_without_a_scheme_are_read_as_tcp_or_refused_with_an_example():
    from xpstream.daemon.config import ConfigError, load_config

    config = load_config(None, {"zmq.pub": "127.0.0.1:7000", "zmq.pull": ["localhost:7001", "ipc:///tmp/x"]})
    assert config.zmq.pub == "tcp://127.0.0.1:7000" and config.zmq.pull == ["tcp://localhost:7001", "ipc:///tmp/x"]
    with pytest.raises(ConfigError, match="zmq.pub 'nonsense' .* tcp://127.0.0.1:5556"):
        load_config(None, {"zmq.pub": "nonsense"})
