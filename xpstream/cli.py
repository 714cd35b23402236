"""The `xpstream` command: one entry point, one subcommand per job.

Heavy imports happen inside each subcommand, so `xpstream --help` stays fast and the daemon's
commands never import training code.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from xpstream import __version__
from xpstream.contract import LABEL_NAMES, LABELS


def _library_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--physics", type=Path, help="physics constants file (default: the packaged one)")
    p.add_argument("--polymer-file", type=Path, help="polymer library file (default: the packaged one)")


def _load_library(args):
    from xpstream.train.library import load_library

    return load_library(args.physics, args.polymer_file)


def add_options(group, cls, defaults, skip=()) -> None:
    """One option per field of a settings dataclass, from the field's metadata (help, flag,
    nargs, type, choices) and the default of `defaults` (an instance): each default is written
    once, in the dataclass."""
    for f in dataclasses.fields(cls):
        if f.name in skip or "help" not in f.metadata:
            continue
        meta = dict(f.metadata)
        flag = meta.pop("flag", "--" + f.name.replace("_", "-"))
        default = getattr(defaults, f.name)
        kwargs = {
            "dest": f.name,
            "default": default,
            "help": meta.pop("help").replace("%", "%%") + " (default: %(default)s)",
        }
        if isinstance(default, bool):
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = meta.pop("type", type(default))
        kwargs.update(meta)
        group.add_argument(flag, **kwargs)


def from_options(cls, args, **fixed):
    """The dataclass built from the options `add_options` made (tuples kept tuples)."""
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in fixed or not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values, **fixed)


def _mixture_args(p: argparse.ArgumentParser, defaults=None) -> None:
    from xpstream.train.mixtures import MixtureSettings

    g = p.add_argument_group("mixture generator (defaults follow the published protocol)")
    add_options(g, MixtureSettings, defaults or MixtureSettings())
    g.add_argument("--seed", type=int, default=0, help="seed of the generated data (default: %(default)s)")


def _mixture_settings(args):
    from xpstream.train.mixtures import MixtureSettings

    return from_options(MixtureSettings, args)


def _generator(args, library):
    from xpstream.train.mixtures import MixtureGenerator

    return MixtureGenerator(library, _mixture_settings(args), seed=args.seed)


def cmd_library(args) -> None:
    library = _load_library(args)
    counts = library.label_counts()
    print(f"{len(library.polymers)} polymers, {len(library.environments)} environments, {len(library.levels)} levels")
    print(f"{'label':24s} {'polymers':>8s}")
    for label in LABELS:
        print(f"{label.display:24s} {counts[label.name]:8d}")
    if args.list:
        print()
        for p in library.polymers:
            print(f"{p.abbr:12s} {p.name:60s} {', '.join(p.labels)}")
    if args.look_alikes:
        from xpstream.train.simulate import look_alikes

        print(f"\n{'L1':>6s}  {'polymer':12s} {'polymer':12s} labels that differ")
        for distance, a, b, differ in look_alikes(library, args.look_alikes):
            print(f"{distance:6.3f}  {a.abbr:12s} {b.abbr:12s} {', '.join(differ)}")


def cmd_simulate(args) -> None:
    from tqdm import tqdm

    from xpstream.train.dataset import write_dataset

    if args.n <= 0:
        raise ValueError(f"--n must be positive, got {args.n}")
    generator = _generator(args, _load_library(args))
    with tqdm(total=args.n, unit="spectra", desc="simulate") as bar:
        write_dataset(args.out, generator, args.n, chunk=args.chunk, progress=bar.update)
    print(f"wrote {args.n} spectra to {args.out}")


def cmd_plot(args) -> None:
    import numpy as np

    from xpstream.train.plots import plot_base_spectra, plot_mixtures

    library = _load_library(args)
    out = Path(args.out)
    print(plot_base_spectra(library, args.base, out / "base_spectra.png"))
    generator = _generator(args, library)
    batch = generator.batch(args.mixtures, np.random.default_rng(args.seed))
    print(plot_mixtures(batch, [p.abbr for p in generator.polymers], out / "mixtures.png"))


def cmd_compare(args) -> None:
    from xpstream.train.realcheck import compare_with_measured, format_comparison

    print(format_comparison(compare_with_measured(_load_library(args), args.polymer, args.file, args.level)))


def _train_config(args):
    from xpstream.train.trainer import TrainConfig

    mixtures = _mixture_settings(args)  # validated when the trainer builds its generators
    out = args.out or Path("runs") / f"{args.model}-{mixtures.max_shift_ev:g}ev"
    return from_options(TrainConfig, args, mixtures=mixtures, out=str(out), model=args.model)


def cmd_train(args) -> None:
    from xpstream.train.trainer import train

    config = _train_config(args)
    best = train(config, resume=args.resume)
    print(
        f"best epoch {best['best_epoch']}: validation exact match {best['val_exact_match']:.4f} "
        f"(tuned thresholds {best['val_exact_match_tuned']:.4f}); saved {config.out}/best.pt"
    )


def cmd_sweep(args) -> None:
    from xpstream.train.sweep import ablate, sweep

    base = _train_config(args)
    if args.ablations:
        ablate(base, args.test_size, args.out)
        print((Path(args.out) / "ablation.md").read_text())
    else:
        sweep(args.models, args.shifts, base, args.test_size, args.out)
        print((Path(args.out) / "sweep.md").read_text())


def cmd_export(args) -> None:
    from xpstream.train.export import export_trained

    print(
        export_trained(
            args.checkpoint, args.out, args.model_id, args.version, dict(r.partition("=")[::2] for r in args.report)
        )
    )


def cmd_export_preprocess(args) -> None:
    from xpstream.train.preprocess_graph import export_preprocess

    print(export_preprocess(args.out))


def cmd_evaluate(args) -> None:
    from xpstream.train.evaluate import evaluate_checkpoints

    evaluate_checkpoints(
        args.checkpoints,
        args.n,
        args.out,
        args.max_shift,
        args.acquisition,
        tuple(args.exclude_labels),
        transfer=args.transfer,
        measured_folder=args.measured if args.transfer else None,
    )
    report = (Path(args.out) / "report.md").read_text()
    print(report.split("\n## Sensitivity")[0] if args.transfer else report.split("\n## ")[0])


def cmd_lpo(args) -> None:
    from xpstream.train.transfer import leave_polymers_out

    summary = leave_polymers_out(_train_config(args), args.folds, args.test_size, args.out)
    for row in summary["folds"]:
        print(
            f"fold {row['fold']}: held-out mixtures {row['exact_match_held_out']:.4f} (n={row['n_held_out']}), "
            f"others {row['exact_match_seen']:.4f}"
        )
    print(f"mean: held-out {summary['exact_match_held_out']:.4f}, others {summary['exact_match_seen']:.4f}")


def format_composition(pred) -> str:
    """'C 71.4, O 28.6 at. %; groups: ester_aliphatic 57 +- 3 %, ...' (empty when none)."""
    parts = []
    if pred.atomic_percent:
        parts.append(", ".join(f"{e} {v:.1f}" for e, v in pred.atomic_percent.items()) + " at. %")
    if pred.not_quantified:
        parts.append("not quantified: " + ", ".join(f"{e} ({why})" for e, why in pred.not_quantified.items()))
    shares = sorted(((v, k) for k, v in pred.group_percent.items() if v >= 0.5), reverse=True)
    if shares:
        parts.append(
            "groups: " + ", ".join(f"{k} {v:.0f} +- {pred.group_percent_std[k]:.0f} %" for v, k in shares) + " of atoms"
        )
    return "; ".join(parts)


def format_prediction(pred, regions: list[str]) -> str:
    """A few lines a person reads: the verdict, the strongest groups, the composition, what was
    recorded."""
    verdict = "in library" if pred.in_library else "NOT IN LIBRARY (do not trust the groups)"
    unexplained = f"; unexplained regions: {', '.join(pred.unexplained_regions)}" if pred.unexplained_regions else ""
    judged = {k: v for k, v in pred.probabilities.items() if k not in pred.undetermined}
    top = sorted(judged.items(), key=lambda kv: -kv[1])[:5]
    lines = [
        f"{pred.source}: {verdict} (out-of-library score {pred.out_of_library_score:.3f}{unexplained}); "
        f"shift {pred.shift_ev:+.2f} eV; present: {', '.join(pred.labels) or '(none)'}",
        "    top: " + ", ".join(f"{k} {v:.2f}" for k, v in top) + f"; regions: {regions}",
    ]
    if composition := format_composition(pred):
        lines.append(f"    composition: {composition}")
    if pred.undetermined:
        lines.append(f"    not determinable from what was recorded: {', '.join(pred.undetermined)}")
    return "\n".join(lines)


def markdown_row(pred, regions: list[str]) -> str:
    """One row of `xpstream predict --markdown`."""
    verdict = "in library" if pred.in_library else "**not in library**"
    unexplained = f"; {', '.join(pred.unexplained_regions)}" if pred.unexplained_regions else ""
    present = ", ".join(f"{name} ({pred.probabilities[name]:.2f})" for name in pred.labels) or "(none)"
    return (
        f"| {Path(pred.source).name} | {', '.join(regions)} | {verdict} ({pred.out_of_library_score:.3f}{unexplained}) "
        f"| {pred.shift_ev:+.2f} eV | {present} | {format_composition(pred) or '-'} |"
    )


def cmd_predict(args) -> None:
    """Parse, preprocess and classify files; one line (or JSON object) per file."""
    from xpstream.daemon.analysis import Analyser, open_backend, read_file

    analyser = Analyser(open_backend(args.model))
    failed = 0
    if args.markdown:
        print(
            "| file | regions used | verdict (out-of-library score; unexplained regions) | shift "
            "| present (p) | composition |"
        )
        print("|---|---|---|---|---|---|")
    for path in args.files:
        try:
            spectrum = read_file(path)
        except (ValueError, OSError) as err:
            failed += 1
            print(f"{path}: error: {err}", file=sys.stderr)
            if args.markdown:
                print(f"| {Path(path).name} | - | refused: {err} | | | |")
            continue
        pred = analyser.analyse([spectrum])[0]
        regions = [r.name for r in spectrum.regions]
        if args.json:
            print(json.dumps({**pred.to_dict(), "regions": regions, "skipped": spectrum.skipped}))
        elif args.markdown:
            print(markdown_row(pred, regions))
        else:
            print(format_prediction(pred, regions))
    if failed:
        raise SystemExit(1)


def cmd_serve(args) -> None:
    import logging

    from xpstream.daemon.config import load_config
    from xpstream.daemon.service import JsonFormatter, Service
    from xpstream.models import default_model_path

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    overrides = {
        key: value
        for key, value in {
            "model.path": args.model,
            "model.ray_address": args.ray,
            "watch.folders": [] if args.no_watch else args.watch,
            "watch.polling": True if args.polling else None,
            "watch.stable_s": args.stable_s,
            "watch.done_dir": args.done_dir,
            "watch.failed_dir": args.failed_dir,
            "zmq.pull": args.pull,
            "zmq.sub": args.sub,
            "zmq.pub": args.pub,
            "batch.max_batch": args.max_batch,
            "batch.max_wait_ms": args.max_wait_ms,
            "batch.capacity": args.capacity,
            "metrics.address": args.metrics,
            "state.journal": args.journal,
        }.items()
        if value is not None
    }
    config = load_config(args.config, overrides)
    model_path = Path(config.model.path).expanduser() if config.model.path else Path(str(default_model_path()))
    Service(config, model_path).run()  # the model folder is checked where the model is opened


def cmd_subscribe(args) -> None:
    """The example client a robot would run: print predictions (and errors) as they arrive."""
    import time

    import msgpack
    import zmq

    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    for topic in args.topics:
        socket.setsockopt_string(zmq.SUBSCRIBE, topic)
    socket.connect(args.endpoint)
    received = 0
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    try:
        while args.count is None or received < args.count:
            wait_ms = 1000 if deadline is None else max(0, int(1000 * (deadline - time.monotonic())))
            if deadline is not None and wait_ms == 0:
                raise SystemExit(f"timed out after {received} messages")
            if not socket.poll(min(wait_ms, 1000)):
                continue
            topic, payload = socket.recv_multipart()
            body = msgpack.unpackb(payload, raw=False)
            received += 1
            if args.json:
                print(json.dumps({"topic": topic.decode(), **body}), flush=True)
            elif topic.endswith(b"/error"):
                print(f"{topic.decode()} {body.get('id')} {body['reason']}: {body['message']}", flush=True)
            else:
                flag = "" if body["in_library"] else " [NOT IN LIBRARY]"
                labels = ", ".join(body["labels"])
                print(f"{topic.decode()} {body['id']}{flag}: shift {body['shift_ev']:+.2f} eV, {labels}", flush=True)
    finally:
        socket.close(linger=0)
        context.term()


def cmd_batch(args) -> None:
    from xpstream.daemon.archive import run_batch
    from xpstream.models import default_model_path

    model = args.model or str(default_model_path())
    summary = run_batch(args.sources, str(args.out), model, args.address, args.workers, args.batch_size)
    print(f"analysed {summary['files']} files; results in {args.out}")


def cmd_bench(args) -> None:
    if args.what in ("daemon", "ray"):
        from xpstream.daemon import bench as daemon_bench

        if args.what == "daemon":
            daemon_bench.bench_daemon(json_path=args.json)
        else:
            daemon_bench.bench_ray(json_path=args.json)
        return
    from xpstream.train import bench

    if args.what == "generator":
        bench.bench_generator(n=args.n, chunk=args.chunk, json_path=args.json)
    else:
        bench.bench_models(args.model, threads=args.threads, json_path=args.json)


def _training_args(p: argparse.ArgumentParser) -> None:
    from xpstream.train.trainer import TrainConfig

    defaults = TrainConfig()
    add_options(p.add_argument_group("training"), TrainConfig, defaults, skip=("model", "out", "seed"))
    _mixture_args(p, defaults.mixtures)
    _library_args(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xpstream", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"xpstream {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("library", help="report the polymer library: polymers per functional-group label")
    _library_args(p)
    p.add_argument("--list", action="store_true", help="also list every polymer with its labels")
    p.add_argument(
        "--look-alikes",
        type=int,
        default=0,
        metavar="N",
        help="also list the N pairs of polymers with the closest spectra but different labels",
    )
    p.set_defaults(func=cmd_library)

    p = sub.add_parser("simulate", help="write a synthetic data set (HDF5)")
    p.add_argument("--n", type=int, required=True, help="number of spectra")
    p.add_argument("--out", type=Path, required=True, help="output .h5 file")
    p.add_argument("--chunk", type=int, default=2048, help="spectra per generated chunk")
    _mixture_args(p)
    _library_args(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("plot", help="PNG plots of base spectra and example mixtures")
    p.add_argument("--base", nargs="+", default=["PMMA", "PET", "PVC", "PTFE"], help="polymers to draw")
    p.add_argument("--mixtures", type=int, default=4, help="number of example mixtures")
    p.add_argument("--out", type=Path, default=Path("plots"))
    _mixture_args(p)
    _library_args(p)
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("compare", help="simulated vs measured spectrum of one polymer, component by component")
    p.add_argument("polymer", help="polymer name or abbreviation, e.g. PET")
    p.add_argument("file", help="measured file, e.g. ../shared/realxps/lg4x_PET_C1s.csv")
    p.add_argument("--level", default="C 1s")
    _library_args(p)
    p.set_defaults(func=cmd_compare)

    from xpstream.train.models import MODELS
    from xpstream.train.trainer import TrainConfig

    p = sub.add_parser("train", help="train a model on fresh synthetic mixtures (needs the [train] extra)")
    p.add_argument(
        "--model", default=TrainConfig.model, choices=sorted(MODELS), help="architecture (default: %(default)s)"
    )
    p.add_argument("--out", type=Path, help="run directory (default runs/MODEL-SHIFTev)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt")
    _training_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sweep", help="the paper's accuracy-vs-shift comparison, or the ablations")
    p.add_argument("--models", nargs="+", default=["mlp", "cnn", "stn", "stn-shift"])
    p.add_argument("--shifts", nargs="+", type=float, default=[0, 1, 2, 3, 4, 5])
    p.add_argument("--ablations", action="store_true", help="train and score the ablation rows at --max-shift")
    p.add_argument("--test-size", type=int, default=10_000)
    p.add_argument("--out", type=Path, default=Path("reports/sweep"))
    p.set_defaults(func=cmd_sweep, model="stn-shift")
    _training_args(p)

    p = sub.add_parser("export", help="export a trained model (best.pt) to ONNX with contract metadata")
    p.add_argument("checkpoint", help="RUN/best.pt")
    p.add_argument("--out", type=Path, default=Path("models/xpstream-stn.onnx"))
    p.add_argument("--model-id", default="xpstream-stn")
    p.add_argument("--version", default="1")
    p.add_argument(
        "--report",
        action="append",
        default=[],
        metavar="NAME=REPORT_JSON",
        help="embed the headline metrics of the first model of an `xpstream evaluate` report.json (repeatable)",
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("export-preprocess", help="rebuild the daemon's batched preprocessing graph (ONNX)")
    p.add_argument("--out", type=Path, default=Path("models/preprocess.onnx"))
    p.set_defaults(func=cmd_export_preprocess)

    from xpstream.train.mixtures import ACQUISITIONS

    p = sub.add_parser("evaluate", help="evaluate trained models on one synthetic test set")
    p.add_argument("checkpoints", nargs="+", help="RUN/best.pt files or exported .onnx models")
    p.add_argument("--n", type=int, default=20_000, help="test spectra")
    p.add_argument("--max-shift", type=float, help="test at this maximum shift (default: the first run's)")
    p.add_argument("--out", type=Path, default=Path("reports/evaluate"))
    p.add_argument("--acquisition", choices=ACQUISITIONS, help="override the run's acquisition plans")
    p.add_argument(
        "--exclude-labels",
        nargs="+",
        default=[],
        choices=LABEL_NAMES,
        metavar="LABEL",
        help="also report the exact match over the other labels (e.g. alkene)",
    )
    p.add_argument(
        "--transfer",
        action="store_true",
        help="also the transfer table: cross-renderer and single-polymer sets, measured files (first in the report)",
    )
    p.add_argument(
        "--measured",
        type=Path,
        default=Path("../shared/realxps"),
        help="folder of the measured files with stated expectations (default: %(default)s)",
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "lpo", help="leave-polymers-out: train one model per fold of the library, score it on the held-out polymers"
    )
    p.add_argument(
        "--model", default=TrainConfig.model, choices=sorted(MODELS), help="architecture (default: %(default)s)"
    )
    p.add_argument("--folds", type=int, default=4, help="folds of the library (default: %(default)s)")
    p.add_argument("--test-size", type=int, default=10_000, help="test spectra (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("reports/lpo"), help="report and fold runs (default: %(default)s)")
    _training_args(p)
    p.set_defaults(func=cmd_lpo)

    p = sub.add_parser("predict", help="classify instrument files with a model (default: the shipped one)")
    p.add_argument("files", nargs="+")
    p.add_argument("--model", help="ONNX model (default: models/xpstream-stn.onnx)")
    p.add_argument("--json", action="store_true", help="one JSON object per spectrum")
    p.add_argument("--markdown", action="store_true", help="one Markdown table row per file (errors as rows)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("serve", help="run the daemon (default: watch ~/xpstream/incoming, serve the shipped model)")
    p.add_argument("--config", type=Path, help="TOML configuration (keys in the README)")
    p.add_argument("--model", help="ONNX model file")
    p.add_argument("--ray", help="run inference on Ray actors: 'local' or a cluster address (cluster extra)")
    p.add_argument("--watch", action="append", help="folder to watch (repeatable)")
    p.add_argument("--no-watch", action="store_true", help="watch no folder")
    p.add_argument("--polling", action="store_true", help="polling observer (network shares)")
    p.add_argument("--stable-s", type=float, help="seconds a file size must stay unchanged")
    p.add_argument("--done-dir", help="move processed files here")
    p.add_argument("--failed-dir", help="move refused files here")
    p.add_argument("--pull", action="append", help="ZeroMQ endpoint to bind a PULL socket on (repeatable)")
    p.add_argument("--sub", action="append", help="ZeroMQ endpoint to connect a SUB socket to (repeatable)")
    p.add_argument("--pub", help="ZeroMQ endpoint to publish predictions on")
    p.add_argument("--max-batch", type=int)
    p.add_argument("--max-wait-ms", type=float)
    p.add_argument("--capacity", type=int, help="queued spectra before the overload policy applies")
    p.add_argument("--metrics", help="HOST:PORT of /metrics and /healthz ('' = off)")
    p.add_argument("--journal", help="SQLite journal of processed files")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("subscribe", help="print predictions published by a daemon (example robot client)")
    p.add_argument("endpoint", nargs="?", default="tcp://127.0.0.1:5556")
    p.add_argument("--topics", nargs="+", default=["xps/"], help="topic prefixes, e.g. xps/esca1/prediction")
    p.add_argument("--count", type=int, help="exit after this many messages")
    p.add_argument("--timeout", type=float, help="give up after this many seconds")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_subscribe)

    p = sub.add_parser("batch", help="re-analyse archived files on Ray (local, or a cluster); Parquet out")
    p.add_argument("sources", nargs="+", help="files or folders (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="output folder of Parquet files")
    p.add_argument("--model", help="ONNX model (default: the shipped one)")
    p.add_argument("--address", help="Ray cluster address (default: a local Ray instance)")
    p.add_argument("--workers", type=int, default=2, help="actors, one onnxruntime session each")
    p.add_argument("--batch-size", type=int, default=64)
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("bench", help="benchmarks: generator spectra/s, or model-only onnxruntime speed")
    p.add_argument("what", choices=["generator", "models", "daemon", "ray"], nargs="?", default="generator")
    p.add_argument("--model", default="models/xpstream-stn.onnx", help="exported model to time (models)")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (models)")
    p.add_argument("--n", type=int, default=65536)
    p.add_argument("--chunk", type=int, default=1024)
    p.add_argument("--json", help="also write the results to this JSON file")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, OSError) as err:  # library, settings, parse and contract errors are ValueErrors
        print(f"xpstream {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
