"""Subcommands that train, score and export models (need the [train] extra): train, sweep,
evaluate, lpo, export, export-preprocess."""

from __future__ import annotations

from pathlib import Path

from xpstream.cli.options import model_argument, train_config, training_arguments


def arguments_train(p) -> None:
    model_argument(p)
    p.add_argument("--out", type=Path, help="run directory (default runs/MODEL-SHIFTev)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt")
    training_arguments(p)


def run_train(args) -> None:
    from xpstream.train.trainer import train

    config = train_config(args)
    best = train(config, resume=args.resume)
    print(
        f"best epoch {best['best_epoch']}: validation exact match {best['val_exact_match']:.4f} "
        f"(tuned thresholds {best['val_exact_match_tuned']:.4f}); saved {config.out}/best.pt"
    )


def arguments_sweep(p) -> None:
    p.add_argument("--models", nargs="+", default=["mlp", "cnn", "stn", "stn-shift"])
    p.add_argument("--shifts", nargs="+", type=float, default=[0, 1, 2, 3, 4, 5])
    p.add_argument("--ablations", action="store_true", help="train and score the ablation rows at --max-shift")
    p.add_argument("--test-size", type=int, default=10_000, help="test spectra (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("reports/sweep"), help="report folder (default: %(default)s)")
    p.set_defaults(model="stn-shift")
    training_arguments(p)


def run_sweep(args) -> None:
    from xpstream.train.sweep import ablate, sweep

    base = train_config(args)
    if args.ablations:
        ablate(base, args.test_size, args.out)
        print((Path(args.out) / "ablation.md").read_text())
    else:
        sweep(args.models, args.shifts, base, args.test_size, args.out)
        print((Path(args.out) / "sweep.md").read_text())


def arguments_evaluate(p) -> None:
    from xpstream.contract import LABEL_NAMES
    from xpstream.train.settings import ACQUISITIONS

    p.add_argument("checkpoints", nargs="+", help="RUN/best.pt files or exported .onnx models")
    p.add_argument("--n", type=int, default=20_000, help="test spectra (default: %(default)s)")
    p.add_argument("--max-shift", type=float, help="test at this maximum shift (default: the first run's)")
    p.add_argument("--out", type=Path, default=Path("reports/evaluate"), help="report folder (default: %(default)s)")
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


def run_evaluate(args) -> None:
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


def arguments_lpo(p) -> None:
    model_argument(p)
    p.add_argument("--folds", type=int, default=4, help="folds of the library (default: %(default)s)")
    p.add_argument("--test-size", type=int, default=10_000, help="test spectra (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("reports/lpo"), help="report and fold runs (default: %(default)s)")
    training_arguments(p)


def run_lpo(args) -> None:
    from xpstream.train.transfer import format_leave_polymers_out, leave_polymers_out

    print(format_leave_polymers_out(leave_polymers_out(train_config(args), args.folds, args.test_size, args.out)))


def arguments_export(p) -> None:
    p.add_argument("checkpoint", help="RUN/best.pt")
    p.add_argument("--out", type=Path, default=Path("models/xpstream-stn.onnx"), help="(default: %(default)s)")
    p.add_argument("--model-id", default="xpstream-stn", help="(default: %(default)s)")
    p.add_argument("--version", default="1", help="model version, e.g. 3.0.0")
    p.add_argument(
        "--report",
        action="append",
        default=[],
        metavar="NAME=REPORT_JSON",
        help="embed the headline metrics of the first model of an `xpstream evaluate` report.json (repeatable)",
    )


def run_export(args) -> None:
    from xpstream.train.export import export_trained

    reports = dict(r.partition("=")[::2] for r in args.report)
    print(export_trained(args.checkpoint, args.out, args.model_id, args.version, reports))


def arguments_export_preprocess(p) -> None:
    p.add_argument("--out", type=Path, default=Path("models/preprocess.onnx"), help="(default: %(default)s)")


def run_export_preprocess(args) -> None:
    from xpstream.train.preprocess_graph import export_preprocess

    print(export_preprocess(args.out))
