"""Benchmarks, run from a checkout (not installed with the package):

    python -m bench generator            # generator spectra/s, ratio to a bare inverse FFT
    python -m bench models [--model M]   # model-only onnxruntime speed, ratio to a plain MLP
    python -m bench daemon [--file F]    # the daemon end to end through ZeroMQ and a watched folder
    python -m bench ray [--file F]       # `xpstream batch` on a local Ray instance, 1 and 2 workers
    python -m bench flood [--seconds S]  # 60 s mixed flood (SUB, PULL, folder): peak memory / ceiling

Each prints ratios to references measured in the same run (never timed asserts) and, with
--json, writes them to a file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

REAL_FILE = Path("../shared/realxps/cheminfo_perovskite_kratos.vms")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["generator", "models", "daemon", "ray", "flood"])
    parser.add_argument("--model", default="models/xpstream-stn.onnx", help="exported model to time (models)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (models)")
    parser.add_argument("--n", type=int, default=65536, help="spectra (generator)")
    parser.add_argument("--chunk", type=int, default=1024, help="spectra per chunk (generator)")
    parser.add_argument("--file", type=Path, default=REAL_FILE, help="instrument file to copy (daemon, ray)")
    parser.add_argument("--seconds", type=float, default=60.0, help="flood duration (flood)")
    parser.add_argument("--memory-mb", type=float, default=1024.0, help="the daemon's memory ceiling (flood)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.what in ("daemon", "ray", "flood") and not args.file.is_file():
        parser.error(f"--file {args.file}: no such file (any instrument file the daemon reads will do)")
    if args.what == "generator":
        from bench.training import bench_generator

        bench_generator(n=args.n, chunk=args.chunk, json_path=args.json)
    elif args.what == "models":
        from bench.training import bench_models

        bench_models(args.model, threads=args.threads, json_path=args.json)
    elif args.what == "daemon":
        from bench.service import bench_daemon

        bench_daemon(args.file, json_path=args.json)
    elif args.what == "flood":
        from bench.service import bench_flood

        bench_flood(args.file, seconds=args.seconds, memory_mb=args.memory_mb, json_path=args.json)
    else:
        from bench.service import bench_ray

        bench_ray(args.file, json_path=args.json)


if __name__ == "__main__":
    main()
