"""PNG plots: base spectra and example mixtures, and the evaluation's figures (sensitivity per
label, reliability, accuracy against shift)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from xpstream.contract import LABEL_NAMES, LABELS, energy_grid  # noqa: E402
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


def plot_reliability(report: dict, path: Path) -> None:
    """Reliability diagram: observed rate of presence against predicted probability (the
    paper-less half of the evaluation: is 0.8 right 80 % of the time?)."""
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    for name, m in report["models"].items():
        for kind, style in (("calibrated", "-o"), ("uncalibrated", ":x")):
            rel = m["calibration"][kind]
            xs = [b["confidence"] for b in rel["bins"]]
            label = f"{name} {kind} (ECE {rel['ece']:.3f})"
            ax.plot(xs, [b["observed"] for b in rel["bins"]], style, ms=3, label=label)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed share present")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sensitivity(report: dict, path: Path) -> None:
    names = list(report["models"])
    x = np.arange(len(LABEL_NAMES))
    fig, ax = plt.subplots(figsize=(13, 4))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        sens = [report["models"][name]["per_label"][lbl]["sensitivity"] for lbl in LABEL_NAMES]
        ax.bar(x + k * width, sens, width, label=name)
    ax.set_xticks(x + 0.4 - width / 2, [lbl.display for lbl in LABELS], rotation=75, fontsize=7)
    ax.set_ylabel("sensitivity")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_accuracy_vs_shift(table: dict[str, dict[float, float]], path: Path, paper: dict | None = None) -> None:
    """Exact match against maximum shift, one line per model (the paper's Figure 3)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in table.items():
        shifts = sorted(points)
        ax.plot(shifts, [100 * points[s] for s in shifts], marker="o", label=name)
    for name, points in (paper or {}).items():
        ax.plot(list(points), list(points.values()), ls="--", marker="x", alpha=0.6, label=f"paper {name}")
    ax.set_xlabel("maximum shift S (eV)")
    ax.set_ylabel("exact match (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
