"""Generator benchmark: synthetic spectra per second on the batch path, as measured here.

Each configuration is timed over whole chunks after one warm-up chunk. The ceiling row is a
bare inverse FFT of the same shape (the one transform each spectrum needs), measured in the
same run, so the ratio to it is comparable across machines.
"""

from __future__ import annotations

import json
import time

import numpy as np

from bench.service import batch_rate
from xpstream.train.library import load_library
from xpstream.train.mixtures import MixtureGenerator, MixtureSettings
from xpstream.train.simulate import to_grid

FLOOR_PER_S = 20_000

CONFIGS = {
    "paper (shift + broadening)": MixtureSettings(max_shift_ev=5.0),
    "paper + noise": MixtureSettings(max_shift_ev=5.0, noise_counts=1e5),
    "all options": MixtureSettings(
        max_shift_ev=5.0,
        noise_counts=1e5,
        be_jitter_ev=0.1,
        width_scale=(0.9, 1.1),
        residual_background=0.02,
        acquisition="random",
    ),
}


def _rate(generator: MixtureGenerator, n: int, chunk: int, workers: int) -> float:
    for _ in generator.iter_chunks(chunk, chunk, workers):  # warm-up
        pass
    start = time.perf_counter()
    count = sum(len(b.spectra) for b in generator.iter_chunks(n, chunk, workers))
    return count / (time.perf_counter() - start)


def _fft_ceiling(generator: MixtureGenerator, n: int, chunk: int) -> float:
    coeffs = np.ones((chunk, generator.n_bins), dtype=np.complex64)
    to_grid(coeffs)
    start = time.perf_counter()
    for _ in range(max(1, n // chunk)):
        to_grid(coeffs)
    return max(1, n // chunk) * chunk / (time.perf_counter() - start)


def bench_generator(n: int = 65536, chunk: int = 1024, json_path: str | None = None) -> list[dict]:
    """Print and return spectra/s for each configuration with 1 and 2 worker threads."""
    library = load_library()
    rows = []
    ceiling = None
    for name, settings in CONFIGS.items():
        generator = MixtureGenerator(library, settings, seed=0)
        if ceiling is None:
            ceiling = _fft_ceiling(generator, n, chunk)
        for workers in (1, 2):
            rate = _rate(generator, n, chunk, workers)
            rows.append(
                {
                    "config": name,
                    "workers": workers,
                    "spectra_per_s": round(rate),
                    "vs_floor": round(rate / FLOOR_PER_S, 2),
                    "vs_single_thread_fft": round(rate / ceiling, 2),
                }
            )
    print(f"generator benchmark: {n} spectra per row, chunk {chunk}; bare irfft ceiling {ceiling:,.0f}/s (1 thread)")
    print(f"{'configuration':28s} {'workers':>7s} {'spectra/s':>10s} {'/ floor':>8s} {'/ fft':>6s}")
    for r in rows:
        print(
            f"{r['config']:28s} {r['workers']:7d} {r['spectra_per_s']:10,d} "
            f"{r['vs_floor']:8.2f} {r['vs_single_thread_fft']:6.2f}"
        )
    if json_path:
        with open(json_path, "w") as fh:
            json.dump({"floor_per_s": FLOOR_PER_S, "fft_ceiling_per_s": round(ceiling), "rows": rows}, fh, indent=1)
    return rows


def _onnx_rate(path, batch: int, threads: int, seconds: float = 1.5) -> float:
    """Spectra/s of a bare onnxruntime session (any opset: no merge with the preprocessing graph)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((batch, 6601), dtype=np.float32)
    feed = {"spectra": x, "measured": np.ones_like(x)}
    return batch_rate(lambda: session.run(None, feed), batch, seconds)


def bench_models(model_path: str, batches=(1, 16, 64, 256, 1024), threads: int = 2, json_path: str | None = None):
    """Model-only onnxruntime CPU throughput: the shipped model against the paper-style STN
    (affine_grid + grid_sample, opset 20) at the shipped classifier's sizes and at Appendix A's,
    and a plain MLP of the shipped classifier's layer sizes (the matrix-multiply ceiling), all
    exported here and timed in this run."""
    import tempfile
    from pathlib import Path

    from xpstream.contract import ModelMetadata
    from xpstream.daemon.infer import load_model
    from xpstream.train.export import export_onnx
    from xpstream.train.models import MLP, PaperSTN, build_model

    shipped = build_model(load_model(model_path).metadata.training_data.get("model", "stn-shift"))
    hidden = (shipped.classifier[0].out_features, shipped.classifier[4].out_features)
    tmp = Path(tempfile.mkdtemp())
    graphs = {
        "shipped": Path(model_path),
        "paper STN (GridSample)": export_onnx(
            PaperSTN(grid_sample=True, hidden=hidden), ModelMetadata("p", "0"), tmp / "p.onnx", opset=20
        ),
        "paper STN, Appendix A": export_onnx(
            PaperSTN(grid_sample=True), ModelMetadata("a", "0"), tmp / "a.onnx", opset=20
        ),
        "plain MLP (ceiling)": export_onnx(MLP(hidden), ModelMetadata("m", "0"), tmp / "m.onnx"),
    }
    rows = []
    for batch in batches:
        rates = {name: _onnx_rate(path, batch, threads) for name, path in graphs.items()}
        rows.append({"batch": batch, **{k: round(v) for k, v in rates.items()}})
    best = {name: max(r[name] for r in rows) for name in graphs}
    print(f"onnxruntime CPU, {threads} threads, spectra/s")
    print(f"{'batch':>6s} " + " ".join(f"{name:>24s}" for name in graphs))
    for r in rows:
        print(f"{r['batch']:6d} " + " ".join(f"{r[name]:24,d}" for name in graphs))
    ratios = {
        "shipped / paper STN": best["shipped"] / best["paper STN (GridSample)"],
        "shipped / paper STN, Appendix A sizes": best["shipped"] / best["paper STN, Appendix A"],
        "shipped / plain MLP": best["shipped"] / best["plain MLP (ceiling)"],
    }
    print(f"{'best':>6s} " + " ".join(f"{best[name]:24,d}" for name in graphs))
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump({"threads": threads, "rows": rows, "best": best, "ratios": ratios}, fh, indent=1)
    return rows, ratios
