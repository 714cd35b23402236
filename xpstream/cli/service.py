"""Subcommands of the live service: serve (the daemon) and subscribe (a client of it)."""

from __future__ import annotations

import json
from pathlib import Path

from xpstream.client import DEFAULT_ENDPOINT, DEFAULT_PULL, DEFAULT_REPLAY

# `xpstream serve` option -> configuration key it overrides
SERVE_OVERRIDES = {
    "model": "model.path",
    "ray": "model.ray_address",
    "stable_s": "watch.stable_s",
    "done_dir": "watch.done_dir",
    "failed_dir": "watch.failed_dir",
    "pull": "zmq.pull",
    "sub": "zmq.sub",
    "pub": "zmq.pub",
    "replay": "zmq.replay",
    "max_batch": "batch.max_batch",
    "max_wait_ms": "batch.max_wait_ms",
    "capacity": "batch.capacity",
    "memory_mb": "batch.memory_mb",
    "metrics": "metrics.address",
    "journal": "state.journal",
    "history": "state.history",
}


def arguments_serve(p) -> None:
    p.add_argument("--config", type=Path, help="TOML configuration (keys in the README)")
    p.add_argument("--model", help="ONNX model file (default: the shipped one)")
    p.add_argument("--ray", help="run inference on Ray actors: 'local' or a cluster address (cluster extra)")
    p.add_argument("--watch", action="append", help="folder to watch (repeatable; default: ~/xpstream/incoming)")
    p.add_argument("--no-watch", action="store_true", help="watch no folder")
    p.add_argument("--polling", action="store_true", help="polling observer (network shares)")
    p.add_argument("--stable-s", type=float, help="seconds a file size must stay unchanged")
    p.add_argument("--done-dir", help="move processed files here")
    p.add_argument("--failed-dir", help="move refused files here")
    p.add_argument("--pull", action="append", help="ZeroMQ endpoint to bind a PULL socket on (repeatable)")
    p.add_argument("--sub", action="append", help="ZeroMQ endpoint to connect a SUB socket to (repeatable)")
    p.add_argument("--pub", help="ZeroMQ endpoint to publish predictions on (default: tcp://127.0.0.1:5556)")
    p.add_argument("--replay", help="ZeroMQ endpoint of the replay service ('' = off; default: tcp://127.0.0.1:5557)")
    p.add_argument("--max-batch", type=int, help="spectra per inference batch")
    p.add_argument("--max-wait-ms", type=float, help="longest wait to fill a batch")
    p.add_argument("--capacity", type=int, help="queued spectra before the overload policy applies")
    p.add_argument("--memory-mb", type=float, help="resident-memory ceiling in MiB (0 = none; default: 1024)")
    p.add_argument("--metrics", help="HOST:PORT of /metrics and /healthz ('' = off; default: 127.0.0.1:9310)")
    p.add_argument("--journal", help="SQLite journal of processed files")
    p.add_argument("--history", help="SQLite history of published records, for replay ('' = none)")
    p.add_argument("--log-level", default="info", help="(default: %(default)s)")


def run_serve(args) -> None:
    import logging

    from xpstream.daemon.config import load_config
    from xpstream.daemon.service import JsonFormatter, Service
    from xpstream.models import default_model_path

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    overrides = {key: getattr(args, option) for option, key in SERVE_OVERRIDES.items()}
    overrides["watch.folders"] = [] if args.no_watch else args.watch
    overrides["watch.polling"] = True if args.polling else None
    config = load_config(args.config, {key: value for key, value in overrides.items() if value is not None})
    model_path = Path(config.model.path).expanduser() if config.model.path else Path(str(default_model_path()))
    Service(config, model_path).run()  # the model folder is checked where the model is opened


def arguments_subscribe(p) -> None:
    p.add_argument("endpoint", nargs="?", default=DEFAULT_ENDPOINT, help="(default: %(default)s)")
    p.add_argument("--topics", nargs="+", default=["xps/"], help="topic prefixes, e.g. xps/esca1/prediction")
    p.add_argument("--count", type=int, help="exit after this many messages")
    p.add_argument("--timeout", type=float, help="give up after this many seconds (exit code 2)")
    p.add_argument("--json", action="store_true", help="one JSON object per message")
    p.add_argument(
        "--replay",
        default=DEFAULT_REPLAY,
        help="the daemon's replay endpoint: gaps in seq are filled from it ('' = none; default: %(default)s)",
    )


def _print(topic: str, record: dict, as_json: bool) -> None:
    from xpstream.present import format_message

    print(json.dumps({"topic": topic, **record}) if as_json else format_message(topic, record), flush=True)


def run_subscribe(args) -> None:
    """The example client a robot would run: print predictions (and errors) as they arrive."""
    from xpstream.client import Subscriber

    with Subscriber(args.endpoint, args.topics, args.replay or None) as subscriber:
        for topic, record in subscriber.messages(args.count, args.timeout):
            _print(topic, record, args.json)


def arguments_replay(p) -> None:
    p.add_argument("--since", type=int, default=1, help="first sequence number (default: %(default)s)")
    p.add_argument("--endpoint", default=DEFAULT_REPLAY, help="the daemon's replay endpoint (default: %(default)s)")
    p.add_argument("--topics", nargs="+", default=["xps/"], help="topic prefixes, e.g. xps/esca1/prediction")
    p.add_argument("--limit", type=int, default=10_000, help="most records (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON object per message")


def run_replay(args) -> None:
    """Print what the daemon published from sequence number --since on (its history)."""
    from xpstream.client import fetch_replay

    for topic, record in fetch_replay(args.endpoint, args.since, args.limit, tuple(args.topics)):
        _print(topic, record, args.json)


def arguments_send(p) -> None:
    p.add_argument("files", nargs="+", help="instrument files to send")
    p.add_argument("--to", default=DEFAULT_PULL, help="the daemon's PULL endpoint (--pull) (default: %(default)s)")
    p.add_argument("--instrument", default="remote", help="instrument name for the topics (default: %(default)s)")
    p.add_argument("--replies", default=DEFAULT_ENDPOINT, help="the daemon's PUB endpoint ('' = do not wait)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answers (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON object per answer")


def run_send(args) -> None:
    """Send files from an instrument PC to a daemon and print its answers."""
    from xpstream.client import send_files

    for topic, record in send_files(args.files, args.to, args.instrument, args.replies or None, args.timeout):
        _print(topic, record, args.json)
