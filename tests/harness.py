"""`xpstream serve` in a subprocess with a PUSH and a SUB client on 127.0.0.1: what the
benchmarks and the tests drive. Every wait is bounded."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import msgpack
import zmq


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def upstream_publisher(context: zmq.Context) -> tuple[zmq.Socket, str]:
    """A PUB socket on a free 127.0.0.1 port that never drops (SNDHWM 0), for a daemon's
    `--sub` to connect to; returns (socket, endpoint)."""
    upstream = context.socket(zmq.PUB)
    upstream.setsockopt(zmq.SNDHWM, 0)
    return upstream, f"tcp://127.0.0.1:{upstream.bind_to_random_port('tcp://127.0.0.1')}"


class DaemonProcess:
    def __init__(
        self,
        state: Path,
        *extra: str,
        watch: bool = True,
        env: dict | None = None,
        ready_s: float = 120,
        prefix: tuple[str, ...] = (),
    ):
        """prefix: a command the daemon runs under (e.g. prlimit and its options)."""
        self.pull = f"tcp://127.0.0.1:{free_port()}"
        self.pub = f"tcp://127.0.0.1:{free_port()}"
        self.metrics = f"127.0.0.1:{free_port()}"
        self.replay = f"tcp://127.0.0.1:{free_port()}"
        self.folder = state / "incoming"
        self.folder.mkdir(parents=True, exist_ok=True)
        args = [*prefix, sys.executable, "-m", "xpstream", "serve", "--pull", self.pull, "--pub", self.pub]
        args += ["--metrics", self.metrics, "--journal", str(state / "journal.sqlite"), "--stable-s", "0.3"]
        args += ["--replay", self.replay, "--history", str(state / "history.sqlite"), *extra]
        args += ["--watch", str(self.folder)] if watch else ["--no-watch"]
        # The clients connect before the daemon binds (ZeroMQ retries every 10 ms), so the
        # subscription exists before the daemon publishes what its start-up scan finds.
        self.context = zmq.Context()
        self.sub = self.context.socket(zmq.SUB)
        self.sub.setsockopt_string(zmq.SUBSCRIBE, "xps/")
        self.sub.setsockopt(zmq.RCVHWM, 0)
        self.sub.setsockopt(zmq.RECONNECT_IVL, 10)
        self.sub.connect(self.pub)
        self.push = self.context.socket(zmq.PUSH)
        self.push.setsockopt(zmq.SNDHWM, 0)
        self.push.connect(self.pull)
        self.log = open(state / "daemon.log", "ab")  # noqa: SIM115 - open while the daemon runs, closed in close()
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self.arrivals: list[float] = []  # time.monotonic() of each message `receive` returned
        self._wait_ready(ready_s)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited during start-up ({self.proc.returncode})")
            try:
                if urllib.request.urlopen(f"http://{self.metrics}/healthz", timeout=1).status == 200:
                    time.sleep(0.5)  # let the SUB connection settle (ZeroMQ slow joiner)
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("daemon not ready in time")

    def receive(self, n: int, timeout: float = 60.0) -> list[tuple[str, dict]]:
        """Up to n published messages as (topic, body), waiting at most timeout seconds."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            try:
                topic, payload = self.sub.recv_multipart(zmq.NOBLOCK)  # no poll while messages wait
            except zmq.Again:
                left_ms = int(1000 * (deadline - time.monotonic()))
                if not self.sub.poll(max(0, min(100, left_ms))) and left_ms <= 0:  # timeout 0: one look
                    break
                continue
            self.arrivals.append(time.monotonic())
            out.append((topic.decode(), msgpack.unpackb(payload, raw=False)))
        return out

    def rss_mb(self) -> float:
        """The daemon's resident memory now, in MiB (Linux /proc)."""
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS in /proc")

    def scrape(self) -> dict[str, float]:
        """The xpstream_* samples of /metrics."""
        text = urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=5).read().decode()
        values = {}
        for line in text.splitlines():
            if line.startswith("xpstream_") and " " in line:
                key, value = line.rsplit(" ", 1)
                values[key] = float(value)
        return values

    def stop(self, sig=signal.SIGTERM, timeout: float = 60) -> int:
        """Signal the daemon, wait for it, close the clients; returns its exit status."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.close()

    def close(self) -> None:
        """Kill the daemon if it still runs and close the clients (safe to call twice)."""
        if self.context.closed:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.sub.close(linger=0)
        self.push.close(linger=0)
        self.context.term()
        self.log.close()
