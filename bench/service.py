"""End-to-end daemon benchmark through real ZeroMQ sockets on 127.0.0.1, with its references
measured in the same run: the model alone at the same batch size, and a naive one-at-a-time
loop (decode, preprocess, one inference call, publish). Prints a table and writes JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import msgpack
import numpy as np
import zmq

from tests.harness import DaemonProcess, free_port, upstream_publisher
from xpstream.contract import GRID_SIZE, energy_grid, whole_grid_mask
from xpstream.daemon.analysis import Analyser, Spectrum
from xpstream.daemon.infer import load_model
from xpstream.daemon.messages import decode_spectrum, encode_prediction, encode_spectrum
from xpstream.models import default_model_path
from xpstream.spectrum import measured_mask, regions_to_grid


def synthetic_messages(n: int, kind: str, seed: int = 0) -> list[bytes]:
    """n messages of plausible spectra: grid-ready, or C 1s + O 1s regions on a kinetic axis."""
    rng = np.random.default_rng(seed)
    grid = energy_grid()
    out = []
    for i in range(n):
        shift = rng.uniform(-3, 3)
        y = np.zeros(GRID_SIZE)
        for centre, height in ((285.0, 1.0), (286.6, 0.5), (289.0, 0.3), (532.2, 0.6), (533.7, 0.6)):
            y += height * np.exp(-0.5 * ((grid - centre - shift) / 0.45) ** 2)
        if kind == "grid":
            out.append(encode_spectrum(f"g{i}", "bench", intensities=y * 1e4))
        else:
            regions = []
            for name, lo, hi in (("C 1s", 278, 300), ("O 1s", 524, 542)):
                keep = (grid >= lo) & (grid <= hi)
                regions.append((name, 1486.6 - grid[keep], 1e4 * y[keep] + 100 + rng.poisson(5, keep.sum())))
            out.append(encode_spectrum(f"r{i}", "bench", regions=regions, axis="kinetic", source_energy_ev=1486.6))
    return out


def _daemon(state: Path, batch: int, watch: bool = False) -> DaemonProcess:
    extra = ["--max-batch", str(batch), "--max-wait-ms", "5", "--capacity", str(max(4 * batch, 1024))]
    return DaemonProcess(state, *extra, "--log-level", "warning", "--stable-s", "0.2", watch=watch)


def _process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _throughput(d: DaemonProcess, messages: list[bytes]) -> tuple[float, float, float]:
    """(spectra/s, daemon CPU us per spectrum, client CPU us per spectrum) for one burst."""
    daemon_cpu, client_cpu = _process_cpu_s(d.proc.pid), _own_cpu_s()
    start = time.monotonic()
    for m in messages:
        d.push.send(m)
    got = d.receive(len(messages), timeout=300)
    if len(got) != len(messages):
        raise RuntimeError(f"received {len(got)} of {len(messages)} predictions")
    rate = len(messages) / (d.arrivals[-1] - start)
    per_spectrum = 1e6 / len(messages)
    daemon_cpu = (_process_cpu_s(d.proc.pid) - daemon_cpu) * per_spectrum
    return rate, daemon_cpu, (_own_cpu_s() - client_cpu) * per_spectrum


def _latency_at(d: DaemonProcess, messages: list[bytes], rate: float) -> tuple[float, float, float]:
    """Send at a fixed rate; (p50 ms, p99 ms, achieved rate) from send to receipt."""
    sent, received = {}, []
    first = len(d.arrivals)
    start = time.monotonic()
    for i, m in enumerate(messages):
        due = start + i / rate
        while time.monotonic() < due:
            received += d.receive(1, timeout=0)  # collect while waiting for the next send
            time.sleep(0.0002)
        sent[msgpack.unpackb(m, raw=False)["id"]] = time.monotonic()
        d.push.send(m)
    achieved = len(messages) / (time.monotonic() - start)
    received += d.receive(len(messages) - len(received), timeout=60)
    arrivals = d.arrivals[first:]
    latency = np.array([(t - sent[body["id"]]) * 1000 for t, (_, body) in zip(arrivals, received, strict=True)])
    return float(np.percentile(latency, 50)), float(np.percentile(latency, 99)), achieved


def _naive(messages: list[bytes], model) -> float:
    """One at a time: decode, preprocess (numpy), one analysis call, publish."""
    analyser = Analyser(model)
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind(f"tcp://127.0.0.1:{free_port()}")
    start = time.monotonic()
    for payload in messages:
        msg = decode_spectrum(payload)
        if msg.spectrum is not None:
            spectrum, measured = msg.spectrum, msg.measured
        else:
            spectrum, measured = regions_to_grid(msg.regions), measured_mask(msg.regions)
        one = Spectrum(msg.id, spectrum, measured=measured, recorded=msg.recorded, instrument=msg.instrument)
        pred = analyser.analyse([one])[0]
        pub.send_multipart([b"xps/bench/prediction", encode_prediction(pred, msg.id, {})])
    rate = len(messages) / (time.monotonic() - start)
    pub.close(linger=0)
    ctx.term()
    return rate


def batch_rate(run_batch, batch: int, seconds: float = 2.0) -> float:
    """Spectra/s of `run_batch()` (one call = one batch of `batch` spectra), after one warm-up call."""
    run_batch()
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run_batch()
        runs += 1
    return runs * batch / (time.perf_counter() - start)


def model_only_rate(model, batch: int, seconds: float = 2.0) -> float:
    """Spectra/s of a loaded model (LoadedModel.run) on one repeated batch of whole-grid spectra."""
    x = np.random.default_rng(0).random((batch, GRID_SIZE), dtype=np.float32)
    measured = whole_grid_mask(batch)
    return batch_rate(lambda: model.run(x, measured), batch, seconds)


def _report(title: str, results: dict, ratios: dict, json_path: str | None) -> None:
    """Print a benchmark's measurements and ratios; also write them to json_path if given."""
    print(title)
    for key, value in results.items():
        print(f"  {key:28s} {value:12,.1f}")
    for key, value in ratios.items():
        print(f"  {key:40s} {value:6.2f}")
    if json_path:
        Path(json_path).write_text(json.dumps({"results": results, "ratios": ratios}, indent=1))


def bench_daemon(
    source: Path, n: int = 20000, batch: int = 256, rate: float = 1000.0, files: int = 300, json_path: str | None = None
):
    """Run every measurement and print the table; `source`: the instrument file copied into the
    watched folder `files` times."""
    tmp = Path(tempfile.mkdtemp())
    model = load_model(default_model_path(), threads=2)
    grid_msgs, region_msgs = synthetic_messages(n, "grid"), synthetic_messages(n // 4, "regions", seed=1)
    results = {"model_only_per_s": model_only_rate(model, batch), "batch": batch, "cpu_cores": os.cpu_count()}
    d = _daemon(tmp / "pushed", batch)
    try:
        _throughput(d, grid_msgs[:1000])  # warm-up
        grid = _throughput(d, grid_msgs)
        results["daemon_grid_per_s"] = grid[0]
        results["daemon_grid_cpu_us_per_spectrum"], results["clients_grid_cpu_us_per_spectrum"] = grid[1:]
        results["daemon_regions_per_s"] = _throughput(d, region_msgs)[0]
        p50, p99, achieved = _latency_at(d, synthetic_messages(int(5 * rate), "grid", seed=2), rate)
        results.update(latency_p50_ms=p50, latency_p99_ms=p99, offered_per_s=achieved)
    finally:
        d.stop()
    results["naive_grid_per_s"] = _naive(grid_msgs[:2000], model)
    results["naive_regions_per_s"] = _naive(region_msgs[:1000], model)
    d = _daemon(tmp / "folder", batch, watch=True)
    try:
        start = time.monotonic()
        for i in range(files):
            shutil.copy(source, d.folder / f"f{i:05d}{source.suffix}")
        got = d.receive(files, timeout=600)
        results["folder_vamas_files_per_s"] = len(got) / (d.arrivals[-1] - start) if got else 0.0
    finally:
        d.stop()
    ratios = {
        "daemon grid / model-only (same batch)": results["daemon_grid_per_s"] / results["model_only_per_s"],
        "daemon grid / naive grid": results["daemon_grid_per_s"] / results["naive_grid_per_s"],
        "daemon regions / naive regions": results["daemon_regions_per_s"] / results["naive_regions_per_s"],
    }
    _report(f"daemon benchmark (CPU, onnxruntime 2 threads, batch {batch}, max wait 5 ms)", results, ratios, json_path)
    return results, ratios


def bench_flood(source: Path, seconds: float = 60.0, memory_mb: float = 1024.0, json_path: str | None = None):
    """A mixed flood for `seconds`: grid spectra on SUB as fast as they can be sent, 2 MB region
    messages on PULL, and `source` copied into the watched folder every 20 ms. Prints the
    daemon's peak resident memory against its ceiling (`batch.memory_mb`), and what became of
    each input."""
    import threading

    tmp = Path(tempfile.mkdtemp())
    context = zmq.Context()
    upstream, endpoint = upstream_publisher(context)
    d = DaemonProcess(tmp, "--sub", endpoint, "--memory-mb", str(memory_mb), "--log-level", "warning", watch=True)
    grid = synthetic_messages(64, "grid")
    energy = np.linspace(270.0, 300.0, 1 << 17)  # one 131k-point C 1s region: a 2 MB message
    large = encode_spectrum("large", "bench", regions=[("C 1s", energy, 100 + 1e4 * np.exp(-((energy - 285) ** 2)))])
    sent = {"sub": 0, "pull": 0, "folder": 0}
    stop = threading.Event()

    def flood_sub():
        while not stop.is_set():
            upstream.send_multipart([b"s", grid[sent["sub"] % 64]])
            sent["sub"] += 1

    def flood_pull():
        push = context.socket(zmq.PUSH)
        push.setsockopt(zmq.SNDTIMEO, 100)  # PULL applies back-pressure: the sender waits
        push.connect(d.pull)
        while not stop.is_set():
            with contextlib.suppress(zmq.Again):
                push.send(large)
                sent["pull"] += 1
        push.close(linger=0)

    def flood_folder():
        while not stop.wait(0.02):
            shutil.copy(source, d.folder / f"f{sent['folder']:06d}{source.suffix}")
            sent["folder"] += 1

    threads = [threading.Thread(target=f) for f in (flood_sub, flood_pull, flood_folder)]
    peak, received = 0.0, 0
    try:
        for t in threads:
            t.start()
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            peak = max(peak, d.rss_mb())
            received += len(d.receive(100_000, timeout=0.1))
        stop.set()
        for t in threads:
            t.join()
        metrics = d.scrape()
    finally:
        stop.set()
        d.stop()
        upstream.close(linger=0)
        context.term()
    results = {"seconds": seconds, "memory_ceiling_mb": memory_mb, "peak_rss_mb": peak, "received": received}
    for name in sent:
        results[f"sent_{name}"] = sent[name]
        for metric in ("spectra_processed", "spectra_dropped", "memory_waits"):
            results[f"{metric}_{name}"] = metrics.get(f'xpstream_{metric}_total{{source="{name}"}}', 0)
    ratios = {"peak RSS / memory ceiling": peak / memory_mb}
    title = f"mixed flood for {seconds:.0f} s (SUB grid spectra, PULL 2 MB region messages, folder files)"
    _report(title, results, ratios, json_path)
    return results, ratios


def bench_ray(source: Path, files: int = 1500, json_path: str | None = None) -> dict:
    """`xpstream batch` on one local Ray instance (started before the clock): files/s with 1
    and 2 workers over `files` copies of the instrument file `source`, actor start-up included."""
    import ray

    from xpstream.daemon.archive import run_batch

    tmp = Path(tempfile.mkdtemp())
    archive = tmp / "archive"
    archive.mkdir()
    for i in range(files):
        shutil.copy(source, archive / f"f{i:05d}{source.suffix}")
    rates = {}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for workers in (1, 2):
            start = time.monotonic()
            run_batch([str(archive)], str(tmp / f"out{workers}"), str(default_model_path()), workers=workers)
            rates[workers] = files / (time.monotonic() - start)
    finally:
        ray.shutdown()
    print(f"xpstream batch on a local Ray instance (2 CPUs), {files} VAMAS files")
    for workers, rate in rates.items():
        print(f"  {workers} worker(s): {rate:8.1f} files/s")
    print(f"  2 / 1 workers: {rates[2] / rates[1]:.2f}")
    if json_path:
        Path(json_path).write_text(json.dumps({"files": files, "files_per_s": rates}, indent=1))
    return rates
