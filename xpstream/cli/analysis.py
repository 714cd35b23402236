"""Subcommands that analyse files with an exported model: predict (here) and batch (on Ray)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def arguments_predict(p) -> None:
    p.add_argument("files", nargs="+", help="instrument files, or folders (searched recursively)")
    p.add_argument("--model", help="ONNX model (default: the shipped one)")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON object per file (errors too)")
    output.add_argument("--markdown", action="store_true", help="a Markdown table, one row per file (errors too)")
    p.add_argument(
        "--plot",
        type=Path,
        help="also draw each prediction: OUT.png for one file, OUT-NAME.png for several",
    )


def run_predict(args) -> None:
    """Parse, preprocess and classify files; one line (or JSON object, or table row) per file.
    Exits 1 when some file could not be analysed."""
    from xpstream.daemon.analysis import Analyser, analyse_files, list_files, open_backend
    from xpstream.daemon.parse.base import error_reason
    from xpstream.present import MARKDOWN_HEADER, format_prediction, markdown_refusal, markdown_row

    analyser = Analyser(open_backend(args.model))
    failed = 0
    if args.markdown:
        print(MARKDOWN_HEADER)
    files = list_files(args.files)
    for path, spectrum, pred, err in analyse_files(analyser, files):
        if err is not None:
            failed += 1
            if args.json:
                print(json.dumps({"source": path, "reason": error_reason(err), "error": str(err)}))
            elif args.markdown:
                print(markdown_refusal(path, err))
            else:
                print(f"{path}: error: {err}", file=sys.stderr)
            continue
        if args.plot:
            from xpstream.figures import plot_prediction

            out = args.plot if len(files) == 1 else args.plot.with_name(f"{args.plot.stem}-{Path(path).stem}.png")
            plot_prediction(spectrum.regions, pred, out)
        regions = [r.name for r in spectrum.regions]
        if args.json:
            print(json.dumps({**pred.to_dict(), "regions": regions, "skipped": spectrum.skipped}))
        elif args.markdown:
            print(markdown_row(pred, regions))
        else:
            print(format_prediction(pred, regions))
    if failed:
        raise SystemExit(1)


def arguments_report(p) -> None:
    p.add_argument("files", nargs="+", help="instrument files, or folders (searched recursively)")
    p.add_argument("-o", "--out", type=Path, default=Path("report.html"), help="HTML file (default: %(default)s)")
    p.add_argument("--model", help="ONNX model (default: the shipped one)")


def run_report(args) -> None:
    """One self-contained HTML page for a lab notebook: a table and a picture per file."""
    from xpstream.daemon.analysis import Analyser, analyse_files, list_files, open_backend
    from xpstream.figures import html_report, png_bytes

    analyser = Analyser(open_backend(args.model))
    rows = []
    for path, spectrum, pred, err in analyse_files(analyser, list_files(args.files)):
        if err is not None:
            rows.append((Path(path).name, None, str(err), None))
        else:
            rows.append((Path(path).name, pred, "", png_bytes(spectrum.regions, pred)))
    args.out.write_text(html_report(rows))
    print(f"{args.out}: {len(rows)} files")


def arguments_batch(p) -> None:
    p.add_argument("sources", nargs="+", help="files or folders (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="output folder of Parquet files")
    p.add_argument("--model", help="ONNX model (default: the shipped one)")
    p.add_argument("--address", help="Ray cluster address (default: a local Ray instance)")
    p.add_argument("--workers", type=int, default=2, help="actors, one onnxruntime session each (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="files per actor call (default: %(default)s)")
    p.add_argument("--verbose", action="store_true", help="show Ray's own logging and progress bars")


def run_batch(args) -> None:
    from xpstream.daemon.archive import run_batch
    from xpstream.models import default_model_path

    model = args.model or str(default_model_path())
    summary = run_batch(args.sources, str(args.out), model, args.address, args.workers, args.batch_size, args.verbose)
    print(
        f"analysed {summary['files']} files: {summary['refused']} refused, {summary['out_of_library']} out of the "
        f"library; results in {args.out}/predictions.parquet"
    )
