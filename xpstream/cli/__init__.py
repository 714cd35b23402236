"""The `xpstream` command: one entry point, one subcommand per job.

Each subcommand is a pair of functions in a module of this package: `arguments_NAME(parser)`
declares its options and `run_NAME(args)` calls the library. Only the module of the subcommand
being run is imported, so `xpstream serve` and `xpstream subscribe` start without loading
training code (torch, onnx) and `xpstream --help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from xpstream import __version__

# name -> (module in this package, one-line help)
COMMANDS = {
    "library": ("data", "report the polymer library: polymers per functional-group label"),
    "simulate": ("data", "write a synthetic data set (HDF5)"),
    "plot": ("data", "PNG plots of base spectra and example mixtures"),
    "compare": ("data", "simulated vs measured spectrum of one polymer, component by component"),
    "train": ("training", "train a model on fresh synthetic mixtures (needs the [train] extra)"),
    "sweep": ("training", "the paper's accuracy-vs-shift comparison, or the ablations"),
    "evaluate": ("training", "evaluate trained models on synthetic and transfer test sets"),
    "lpo": ("training", "leave-polymers-out: one model per fold of the library, scored on the held-out polymers"),
    "export": ("training", "export a trained model (best.pt) to ONNX with contract metadata"),
    "export-preprocess": ("training", "rebuild the daemon's batched preprocessing graph (ONNX)"),
    "predict": ("analysis", "classify instrument files with a model (default: the shipped one)"),
    "report": ("analysis", "one self-contained HTML page (table and pictures) for a lab notebook"),
    "batch": ("analysis", "re-analyse archived files on Ray (local, or a cluster); Parquet out"),
    "serve": ("service", "run the daemon (default: watch ~/xpstream/incoming, serve the shipped model)"),
    "subscribe": ("service", "print predictions published by a daemon (example robot client)"),
    "send": ("service", "send instrument files to a daemon's PULL socket and print its answers"),
    "replay": ("service", "print what a daemon published since a sequence number (from its history)"),
}


class _Version(argparse.Action):
    """--version: the package, the contract and the shipped model (read only when asked)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print the versions and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from xpstream.contract import CONTRACT_VERSION
        from xpstream.daemon.infer import shipped_model_version

        print(f"xpstream {__version__}, contract {CONTRACT_VERSION}, {shipped_model_version()}")
        parser.exit()


def _module(command: str):
    return importlib.import_module(f"xpstream.cli.{COMMANDS[command][0]}")


def _attribute(command: str) -> str:
    return command.replace("-", "_")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; `command` (when given) is the one subcommand whose options are declared (the
    others are listed by name only)."""
    parser = argparse.ArgumentParser(prog="xpstream", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            getattr(_module(name), f"arguments_{_attribute(name)}")(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else None).parse_args(argv)
    try:
        getattr(_module(args.command), f"run_{_attribute(args.command)}")(args)
    except (ValueError, OSError) as err:  # library, settings, parse and contract errors are ValueErrors
        print(f"xpstream {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0
