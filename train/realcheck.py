"""Sanity check of the simulator against a measured spectrum of the same polymer.

Both the simulated and the measured region (after the daemon's own parsing and Shirley
subtraction) are fitted with the same model: one Gaussian per distinct library line of the
level (environments closer than MERGE_EV are one component; shake-ups are components too).
The table gives, side by side, each component's position relative to the main component and
its share of the region's area. Nothing here feeds back into the library.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from xpstream.daemon.parse import parse_file
from xpstream.spectrum import GRID, region_signal
from xpstream.train.library import Library
from xpstream.train.simulate import base_spectrum, polymer_lines

MERGE_EV = 0.25
CENTRE_FREEDOM_EV = 0.6


@dataclass
class Component:
    names: str
    library_be_ev: float
    simulated_offset_ev: float
    measured_offset_ev: float
    simulated_area: float
    measured_area: float


@dataclass
class Comparison:
    polymer: str
    level: str
    measured_main_be_ev: float
    components: list[Component]


def library_components(library: Library, polymer_name: str, level: str) -> list[tuple[str, float, float]]:
    """(names, BE, FWHM) of the distinct lines of one level, main components only."""
    polymer = library.polymer(polymer_name)
    entries = []
    for env, _ in polymer.environments:
        if env.level.name == level:
            entries.append((env.name, env.be_ev, env.fwhm_ev))
            if env.shakeup:
                entries.append((f"{env.name} shake-up", env.be_ev + env.shakeup.offset_ev, env.shakeup.fwhm_ev))
    entries.sort(key=lambda e: e[1])
    merged: list[list] = []
    for name, be, fwhm in entries:
        if merged and be - merged[-1][1] < MERGE_EV:
            merged[-1][0] += f" + {name}"
        else:
            merged.append([name, be, fwhm])
    return [tuple(m) for m in merged]


def fit_gaussians(be: np.ndarray, y: np.ndarray, centres: np.ndarray, fwhm: np.ndarray):
    """Least-squares fit of Gaussians (centres free within +-CENTRE_FREEDOM_EV); returns
    (centres, fwhm, areas)."""
    n = len(centres)

    def model(p):
        c, w, a = p[:n, None], p[n : 2 * n, None], p[2 * n :, None]
        sigma = w / 2.3548
        return (a / (sigma * np.sqrt(2 * np.pi)) * np.exp(-0.5 * ((be[None] - c) / sigma) ** 2)).sum(0)

    scale = np.trapezoid(np.clip(y, 0, None), be) / n
    start = np.concatenate([centres, fwhm, np.full(n, scale)])
    lower = np.concatenate([centres - CENTRE_FREEDOM_EV, np.full(n, 0.5), np.zeros(n)])
    upper = np.concatenate([centres + CENTRE_FREEDOM_EV, np.full(n, 4.0), np.full(n, np.inf)])
    fit = least_squares(lambda p: model(p) - y, np.clip(start, lower, upper), bounds=(lower, upper))
    return fit.x[:n], fit.x[n : 2 * n], fit.x[2 * n :]


def compare_with_measured(library: Library, polymer_name: str, path: str, level: str = "C 1s") -> Comparison:
    """Fit simulated and measured spectra of one level with the same components."""
    region = parse_file(path).regions[0]
    measured_be, measured = region_signal(region)
    parts = library_components(library, polymer_name, level)
    names = [p[0] for p in parts]
    lib_be = np.array([p[1] for p in parts])
    widths = np.array([p[2] for p in parts])
    # the main component is the one holding the largest simulated line of the level
    lines = polymer_lines(library, library.polymer(polymer_name))
    biggest = lines.centre_ev[np.argmax(np.where(np.array(lines.level) == level, lines.area, 0))]
    main = int(np.argmin(np.abs(lib_be - biggest)))

    simulated = base_spectrum(library, library.polymer(polymer_name))
    window = (measured_be[0] <= GRID) & (measured_be[-1] >= GRID)
    sim_c, _, sim_a = fit_gaussians(GRID[window], simulated[window], lib_be, widths)
    offset = measured_be[np.argmax(measured)] - lib_be[main]
    mea_c, _, mea_a = fit_gaussians(measured_be, measured, lib_be + offset, widths)
    components = [
        Component(
            names[i],
            float(lib_be[i]),
            float(sim_c[i] - sim_c[main]),
            float(mea_c[i] - mea_c[main]),
            float(sim_a[i] / sim_a.sum()),
            float(mea_a[i] / mea_a.sum()),
        )
        for i in range(len(parts))
    ]
    return Comparison(polymer_name, level, float(mea_c[main]), components)


def format_comparison(cmp: Comparison) -> str:
    """A plain-text table of a comparison."""
    out = [
        f"{cmp.polymer} {cmp.level}: simulated vs measured (measured main component at "
        f"{cmp.measured_main_be_ev:.2f} eV; library main at 285 eV scale)",
        f"{'component':42s} {'lib BE':>7s} {'sim dE':>7s} {'meas dE':>8s} {'sim area':>9s} {'meas area':>10s}",
    ]
    for c in cmp.components:
        out.append(
            f"{c.names[:42]:42s} {c.library_be_ev:7.2f} {c.simulated_offset_ev:+7.2f} "
            f"{c.measured_offset_ev:+8.2f} {100 * c.simulated_area:8.1f}% {100 * c.measured_area:9.1f}%"
        )
    return "\n".join(out)
