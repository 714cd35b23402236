"""Options shared by several subcommands, built from the settings dataclasses so each default is
written once (in the dataclass)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def add_options(group, cls, defaults, skip=()) -> None:
    """One option per field of a settings dataclass, from the field's metadata (help, flag,
    nargs, type, choices) and the default of `defaults` (an instance)."""
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
    """The dataclass built from the options `add_options` made (lists become tuples)."""
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in fixed or not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values, **fixed)


def library_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--physics", type=Path, help="physics constants file (default: the packaged one)")
    p.add_argument("--polymer-file", type=Path, help="polymer library file (default: the packaged one)")


def load_library(args):
    from xpstream.train.library import load_library

    return load_library(args.physics, args.polymer_file)


def mixture_arguments(p: argparse.ArgumentParser, defaults=None) -> None:
    from xpstream.train.mixtures import MixtureSettings

    g = p.add_argument_group("mixture generator (defaults follow the published protocol)")
    add_options(g, MixtureSettings, defaults or MixtureSettings())
    g.add_argument("--seed", type=int, default=0, help="seed of the generated data (default: %(default)s)")


def mixture_generator(args, library):
    from xpstream.train.mixtures import MixtureGenerator, MixtureSettings

    return MixtureGenerator(library, from_options(MixtureSettings, args), seed=args.seed)


def model_argument(p: argparse.ArgumentParser) -> None:
    from xpstream.train.models import MODELS
    from xpstream.train.trainer import TrainConfig

    p.add_argument(
        "--model", default=TrainConfig.model, choices=sorted(MODELS), help="architecture (default: %(default)s)"
    )


def training_arguments(p: argparse.ArgumentParser) -> None:
    from xpstream.train.trainer import TrainConfig

    defaults = TrainConfig()
    add_options(p.add_argument_group("training"), TrainConfig, defaults, skip=("model", "out", "seed"))
    mixture_arguments(p, defaults.mixtures)
    library_arguments(p)


def train_config(args):
    """The TrainConfig of the options (run folder default: runs/MODEL-SHIFTev)."""
    from xpstream.train.mixtures import MixtureSettings
    from xpstream.train.trainer import TrainConfig

    mixtures = from_options(MixtureSettings, args)  # validated when the trainer builds its generators
    out = args.out or Path("runs") / f"{args.model}-{mixtures.max_shift_ev:g}ev"
    return from_options(TrainConfig, args, mixtures=mixtures, out=str(out), model=args.model)
