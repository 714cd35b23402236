"""Daemon configuration: a TOML file, validated with errors that name the key, and CLI overrides.

Every key and its default (an empty file is a valid configuration):

    [model]
    path = ""                 # ONNX model; "" = the shipped models/xpstream-stn.onnx
    folder = ""               # if set, a model path outside this folder is refused
    threads = 0               # onnxruntime intra-op threads; 0 = onnxruntime's choice
    ray_address = ""          # "" = in this process; "local" or a cluster address = on Ray actors
    ray_actors = 1            # model actors on Ray (round robin over batches)

    [watch]
    folders = ["~/xpstream/incoming"]   # [] = no folder watching
    patterns = ["*.vms", "*.xml", "*.xy", "*.spe", "*.txt", "*.csv", "*.dat", "*.tsv"]
    recursive = true
    polling = false           # polling observer, for network shares without inotify
    stable_s = 1.0            # a file is complete when its size stayed the same this long
    open_stable_s = 60.0      # ... or this long while a writer holds it open (inotify: no close yet)
    done_dir = ""             # move processed files here ("" = leave them)
    failed_dir = ""           # move files that failed here ("" = leave them)
    max_file_bytes = 268435456  # larger files are refused unread

    [zmq]
    pull = []                 # endpoints to bind PULL sockets on (back-pressure when full)
    sub = []                  # endpoints to connect SUB sockets to (drop-oldest when full)
    sub_topics = [""]         # SUB topic prefixes
    pub = "tcp://127.0.0.1:5556"        # predictions and errors are published here
    replay = "tcp://127.0.0.1:5557"     # REP: records since a seq, from the history ("" = off)
    max_message_bytes = 16777216

    [batch]
    max_batch = 64
    max_wait_ms = 5.0
    capacity = 1024           # queued spectra before the overload policy applies
    capacity_mb = 256         # ... or queued spectra's arrays of this many MiB
    memory_mb = 1024          # resident-memory ceiling: above it, while spectra are queued, PULL
                              # and folders wait and SUB input is dropped (counted); 0 = none
    drain_s = 10.0            # on SIGTERM, publish what is queued for at most this long

    [metrics]
    address = "127.0.0.1:9310"          # Prometheus /metrics and /healthz; "" = off

    [state]
    journal = "~/.local/state/xpstream/journal.sqlite"
    history = "~/.local/state/xpstream/history.sqlite"  # published records, for replay
    history_max = 100000      # records kept

    [security]
    curve_server_secret = ""  # CURVE secret key file (zmq.auth format) of the daemon: PULL and
                              # PUB become CURVE servers; "" = no encryption
    curve_clients_dir = ""    # folder of allowed clients' public key files (*.key)
    curve_publisher_key = ""  # public key file of the publishers zmq.sub connects to: SUB sockets
                              # become CURVE clients (with the daemon's keys) and hear no one else

    [instruments.NAME]        # per instrument (the name in topics and messages), optional:
    transmission_exponent = -0.5  # analyser transmission ~ KE^x (default: the model's library)
    photon_energy_ev = 1486.6     # X-ray source (default: the model's library, Al Ka)
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from xpstream.quantify import InstrumentResponse


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key."""


@dataclass
class ModelConfig:
    path: str = ""
    folder: str = ""
    threads: int = 0
    ray_address: str = ""
    ray_actors: int = 1


@dataclass
class WatchConfig:
    folders: list[str] = field(default_factory=lambda: ["~/xpstream/incoming"])
    patterns: list[str] = field(
        default_factory=lambda: ["*.vms", "*.xml", "*.xy", "*.spe", "*.txt", "*.csv", "*.dat", "*.tsv"]
    )
    recursive: bool = True
    polling: bool = False
    stable_s: float = 1.0
    open_stable_s: float = 60.0
    done_dir: str = ""
    failed_dir: str = ""
    max_file_bytes: int = 256 * 1024 * 1024


@dataclass
class ZmqConfig:
    pull: list[str] = field(default_factory=list)
    sub: list[str] = field(default_factory=list)
    sub_topics: list[str] = field(default_factory=lambda: [""])
    pub: str = "tcp://127.0.0.1:5556"
    replay: str = "tcp://127.0.0.1:5557"
    max_message_bytes: int = 16 * 1024 * 1024


@dataclass
class BatchConfig:
    max_batch: int = 64
    max_wait_ms: float = 5.0
    capacity: int = 1024
    capacity_mb: float = 256.0
    memory_mb: float = 1024.0
    drain_s: float = 10.0


@dataclass
class MetricsConfig:
    address: str = "127.0.0.1:9310"


@dataclass
class SecurityConfig:
    curve_server_secret: str = ""
    curve_clients_dir: str = ""
    curve_publisher_key: str = ""


@dataclass
class StateConfig:
    journal: str = "~/.local/state/xpstream/journal.sqlite"
    history: str = "~/.local/state/xpstream/history.sqlite"
    history_max: int = 100_000


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    zmq: ZmqConfig = field(default_factory=ZmqConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    state: StateConfig = field(default_factory=StateConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    instruments: dict[str, InstrumentResponse] = field(default_factory=dict)  # element composition


def load_config(path: str | Path | None = None, overrides: dict[str, object] | None = None) -> Config:
    """Read a TOML file (optional), apply "section.key" overrides, validate."""
    raw: dict = {}
    if path:
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(f"cannot read config {path}: {err}") from None
    for dotted, value in (overrides or {}).items():
        section, key = dotted.split(".", 1)
        raw.setdefault(section, {})[key] = value
    config = Config()
    sections = {f.name: f for f in fields(Config)}
    config.instruments = _instruments(raw.pop("instruments", {}))
    for name, values in raw.items():
        if name not in sections:
            raise ConfigError(f"unknown config section [{name}]; known: {', '.join(sections)}")
        if not isinstance(values, dict):
            raise ConfigError(f"[{name}] must be a table")
        target = getattr(config, name)
        known = {f.name: f for f in fields(target)}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"unknown key {name}.{key}; known: {', '.join(known)}")
            default = getattr(target, key)
            setattr(target, key, _typed(f"{name}.{key}", value, default))
    _check(config)
    z = config.zmq
    z.pub = endpoint("zmq.pub", z.pub)
    z.replay = endpoint("zmq.replay", z.replay) if z.replay else ""
    z.pull = [endpoint("zmq.pull", e) for e in z.pull]
    z.sub = [endpoint("zmq.sub", e) for e in z.sub]
    return config


ENDPOINT_SCHEMES = ("tcp://", "ipc://", "inproc://", "pgm://", "epgm://", "ws://", "wss://")


def endpoint(key: str, value: str) -> str:
    """A ZeroMQ endpoint: HOST:PORT is read as tcp://HOST:PORT; anything else without a known
    scheme is refused with an example."""
    if value.startswith(ENDPOINT_SCHEMES):
        return value
    host, _, port = value.rpartition(":")
    if host and port.isdigit() and "/" not in value:
        return f"tcp://{value}"
    raise ConfigError(f"{key} {value!r} is not a ZeroMQ endpoint; write it as tcp://127.0.0.1:5556")


def _instruments(raw) -> dict[str, InstrumentResponse]:
    if not isinstance(raw, dict):
        raise ConfigError("[instruments] must hold one table per instrument, e.g. [instruments.esca1]")
    known = {f.name for f in fields(InstrumentResponse)}
    out = {}
    for name, values in raw.items():
        if not isinstance(values, dict):
            raise ConfigError(f"[instruments.{name}] must be a table")
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"unknown key instruments.{name}.{key}; known: {', '.join(sorted(known))}")
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"instruments.{name}.{key} must be a number, got {value!r}")
        if values.get("photon_energy_ev", 1.0) <= 0:
            raise ConfigError(f"instruments.{name}.photon_energy_ev must be positive")
        out[name] = InstrumentResponse(**{k: float(v) for k, v in values.items()})
    return out


def _typed(key: str, value, default):
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"{key} must be {type(default).__name__}, got {value!r}")
    return value


def _check(c: Config) -> None:
    checks = [
        (c.batch.max_batch >= 1, "batch.max_batch must be >= 1"),
        (c.batch.capacity >= c.batch.max_batch, "batch.capacity must be >= batch.max_batch"),
        (c.batch.max_wait_ms >= 0, "batch.max_wait_ms must be >= 0"),
        (c.batch.capacity_mb > 0, "batch.capacity_mb must be positive"),
        (c.batch.memory_mb >= 0, "batch.memory_mb must be >= 0 (0 = no ceiling)"),
        (c.watch.stable_s >= 0, "watch.stable_s must be >= 0"),
        (c.watch.open_stable_s >= 0, "watch.open_stable_s must be >= 0"),
        (c.watch.max_file_bytes > 0, "watch.max_file_bytes must be positive"),
        (c.zmq.max_message_bytes > 0, "zmq.max_message_bytes must be positive"),
        (c.model.threads >= 0, "model.threads must be >= 0"),
        (c.model.ray_actors >= 1, "model.ray_actors must be >= 1"),
        (not c.metrics.address or ":" in c.metrics.address, "metrics.address must be HOST:PORT or empty"),
        (bool(c.zmq.pub), "zmq.pub must name an endpoint"),
        (
            bool(c.security.curve_server_secret) == bool(c.security.curve_clients_dir),
            "security.curve_server_secret and security.curve_clients_dir go together",
        ),
        (
            not c.security.curve_publisher_key or bool(c.security.curve_server_secret),
            "security.curve_publisher_key needs security.curve_server_secret (the daemon's own keys)",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
