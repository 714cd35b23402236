"""Subcommands on the polymer library and the synthetic data: library, simulate, plot, compare."""

from __future__ import annotations

from pathlib import Path

from xpstream.cli.options import library_arguments, load_library, mixture_arguments, mixture_generator


def arguments_library(p) -> None:
    library_arguments(p)
    p.add_argument("--list", action="store_true", help="also list every polymer with its labels")
    p.add_argument(
        "--look-alikes",
        type=int,
        default=0,
        metavar="N",
        help="also list the N pairs of polymers with the closest spectra but different labels",
    )


def run_library(args) -> None:
    from xpstream.train.simulate import describe_library

    print(describe_library(load_library(args), polymers=args.list, look_alike_pairs=args.look_alikes))


def arguments_simulate(p) -> None:
    p.add_argument("--n", type=int, required=True, help="number of spectra")
    p.add_argument("--out", type=Path, required=True, help="output .h5 file")
    p.add_argument("--chunk", type=int, default=2048, help="spectra per generated chunk (default: %(default)s)")
    mixture_arguments(p)
    library_arguments(p)


def run_simulate(args) -> None:
    from tqdm import tqdm

    from xpstream.train.dataset import write_dataset

    if args.n <= 0:
        raise ValueError(f"--n must be positive, got {args.n}")
    generator = mixture_generator(args, load_library(args))
    with tqdm(total=args.n, unit="spectra", desc="simulate") as bar:
        write_dataset(args.out, generator, args.n, chunk=args.chunk, progress=bar.update)
    print(f"wrote {args.n} spectra to {args.out}")


def arguments_plot(p) -> None:
    p.add_argument("--base", nargs="+", default=["PMMA", "PET", "PVC", "PTFE"], help="polymers to draw")
    p.add_argument("--mixtures", type=int, default=4, help="number of example mixtures (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("plots"), help="output folder (default: %(default)s)")
    mixture_arguments(p)
    library_arguments(p)


def run_plot(args) -> None:
    import numpy as np

    from xpstream.train.plots import plot_base_spectra, plot_mixtures

    library = load_library(args)
    print(plot_base_spectra(library, args.base, Path(args.out) / "base_spectra.png"))
    generator = mixture_generator(args, library)
    batch = generator.batch(args.mixtures, np.random.default_rng(args.seed))
    print(plot_mixtures(batch, [p.abbr for p in generator.polymers], Path(args.out) / "mixtures.png"))


def arguments_compare(p) -> None:
    p.add_argument("polymer", help="polymer name or abbreviation, e.g. PET")
    p.add_argument("file", help="measured file, e.g. ../shared/realxps/lg4x_PET_C1s.csv")
    p.add_argument("--level", default="C 1s", help="core level (default: %(default)s)")
    library_arguments(p)


def run_compare(args) -> None:
    from xpstream.train.realcheck import compare_with_measured, format_comparison

    print(format_comparison(compare_with_measured(load_library(args), args.polymer, args.file, args.level)))
