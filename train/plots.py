"""PNG plots of base spectra and example mixtures."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from xpstream.contract import LABELS, energy_grid  # noqa: E402
from xpstream.train.acquisition import REGION_WINDOWS_EV  # noqa: E402
from xpstream.train.library import Library  # noqa: E402
from xpstream.train.mixtures import Batch  # noqa: E402
from xpstream.train.simulate import base_spectrum  # noqa: E402


def _levels_axes(fig_title: str, levels: list[str], rows: int):
    fig, axes = plt.subplots(rows, len(levels), figsize=(3.2 * len(levels), 2.4 * rows), squeeze=False, sharey="row")
    fig.suptitle(fig_title)
    return fig, axes


def _draw(ax, spectrum, level, label=None):
    grid = energy_grid()
    lo, hi = REGION_WINDOWS_EV[level]
    keep = (grid >= lo) & (grid <= hi)
    ax.plot(grid[keep], spectrum[keep], lw=1, label=label)
    ax.set_xlim(hi, lo)  # XPS convention: binding energy decreases to the right
    ax.set_title(level, fontsize=9)
    ax.set_xlabel("binding energy (eV)", fontsize=8)
    ax.tick_params(labelsize=7)


def plot_base_spectra(library: Library, names: list[str], out: Path) -> Path:
    """One row per polymer, one panel per core level it shows."""
    polymers = [library.polymer(n) for n in names]
    levels = list(dict.fromkeys(lv for p in polymers for lv in p.levels))
    fig, axes = _levels_axes("base spectra (background-free, area-normalised)", levels, len(polymers))
    for row, polymer in zip(axes, polymers, strict=True):
        spectrum = base_spectrum(library, polymer)
        for ax, level in zip(row, levels, strict=True):
            _draw(ax, spectrum, level)
        row[0].set_ylabel(polymer.abbr, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_mixtures(batch: Batch, polymer_abbrs: list[str], out: Path) -> Path:
    """Each example mixture over the whole grid with its components, shift and labels."""
    grid = energy_grid()
    n = len(batch.spectra)
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.2 * n), squeeze=False)
    for ax, i in zip(axes[:, 0], range(n), strict=True):
        ax.plot(grid, batch.spectra[i], lw=0.8)
        ax.set_xlim(grid[-1], grid[0])
        parts = [
            f"{polymer_abbrs[c]} {w:.2f}" for c, w in zip(batch.components[i], batch.weights[i], strict=True) if c >= 0
        ]
        labels = [LABELS[j].display for j in np.flatnonzero(batch.labels[i])]
        ax.set_title(
            f"{' + '.join(parts)} | shift {batch.shift_ev[i]:+.2f} eV, broadening {batch.broadening_ev[i]:.2f} eV"
            f"\n{', '.join(labels)}",
            fontsize=8,
        )
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("binding energy (eV)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
