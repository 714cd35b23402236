"""Pictures of a prediction for a lab notebook: `plot_prediction` draws the measured regions as
recorded, the spectrum aligned by the estimated shift on the library's energy scale with the
library lines of each present group marked, and the probabilities and group shares as bars,
under the verdict; `html_report` puts a table and those pictures in one self-contained page."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from xpstream.contract import Prediction  # noqa: E402
from xpstream.present import format_composition, signed_ev  # noqa: E402
from xpstream.spectrum import GRID, regions_to_grid  # noqa: E402

FIGURE_INCHES = (12, 9)
FIGURE_DPI = 100  # 1200 x 900 pixels
MAX_REGIONS = 4
BARS = 12


def _group_lines(labels: list[str]) -> dict[str, list[float]]:
    """{group: binding energies of its environments} from the polymer library."""
    from xpstream.train.library import load_library

    lines: dict[str, list[float]] = {}
    for env in load_library().environments.values():
        if env.group in labels:
            lines.setdefault(env.group, []).append(env.be_ev)
    return lines


def _verdict(pred: Prediction) -> str:
    verdict = "in the polymer library" if pred.in_library else "NOT IN THE LIBRARY: do not trust the groups"
    present = ", ".join(pred.labels) or "no group"
    return f"{Path(pred.source).name}: {verdict}; charging shift {signed_ev(pred.shift_ev)}; present: {present}"


def plot_prediction(regions: list, pred: Prediction, path: str | Path) -> Path:
    """A PNG of FIGURE_INCHES at FIGURE_DPI for one spectrum given as its core-level regions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(regions, pred))
    return path


def png_bytes(regions: list, pred: Prediction) -> bytes:
    """The picture of `plot_prediction`, as PNG bytes."""
    regions = regions[:MAX_REGIONS]
    fig = plt.figure(figsize=FIGURE_INCHES, dpi=FIGURE_DPI)
    grid = fig.add_gridspec(3, len(regions), height_ratios=(1, 1.2, 1.1), hspace=0.55, wspace=0.3)
    fig.suptitle(_verdict(pred), fontsize=10)
    aligned = regions_to_grid(regions)
    energy = GRID - pred.shift_ev  # where each grid point's signal sits on the library's scale
    lines = _group_lines(pred.labels)
    colours = dict(zip(lines, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4, strict=False))
    for i, region in enumerate(regions):
        top = fig.add_subplot(grid[0, i])
        top.plot(region.binding_energy_ev, region.counts, lw=0.9, color="black")
        top.set_title(f"{region.name} as recorded", fontsize=9)
        top.set_xlim(region.binding_energy_ev[-1], region.binding_energy_ev[0])
        top.set_xlabel("binding energy (eV)", fontsize=8)
        middle = fig.add_subplot(grid[1, i])
        lo, hi = region.binding_energy_ev[0] - pred.shift_ev, region.binding_energy_ev[-1] - pred.shift_ev
        keep = (energy >= lo) & (energy <= hi)
        middle.plot(energy[keep], aligned[keep], lw=1.0, color="black")
        for group, energies in lines.items():
            for be in (e for e in energies if lo <= e <= hi):
                middle.axvline(be, color=colours[group], lw=0.8, ls="--")
        middle.set_xlim(hi, lo)
        middle.set_title(f"aligned by {signed_ev(-pred.shift_ev)}, library lines of present groups", fontsize=9)
        middle.set_xlabel("binding energy, library scale (eV)", fontsize=8)
    if lines:
        handles = [plt.Line2D([], [], color=colours[g], ls="--", label=g) for g in lines]
        fig.legend(handles=handles, loc="center right", fontsize=8)
    bars = fig.add_subplot(grid[2, :])
    judged = sorted(
        ((p, name) for name, p in pred.probabilities.items() if name not in pred.undetermined), reverse=True
    )[:BARS]
    names = [name for _, name in judged]
    x = np.arange(len(names))
    bars.bar(x, [p for p, _ in judged], color=["tab:green" if n in pred.labels else "tab:grey" for n in names])
    for xi, name in zip(x, names, strict=True):
        share = pred.group_percent.get(name)
        if share is not None and share >= 0.5:
            bars.annotate(f"{share:.0f} %", (xi, 1.0), ha="center", va="bottom", fontsize=7)
    bars.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    bars.set_ylim(0, 1.12)
    bars.set_ylabel("probability")
    composition = format_composition(pred)
    bars.set_title(
        "probabilities (green: present; above the bars: share of the atoms)"
        + (f"\n{composition}" if composition else ""),
        fontsize=8,
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI)
    plt.close(fig)
    return buffer.getvalue()


def html_report(rows: list[tuple[str, Prediction | None, str, bytes | None]]) -> str:
    """One self-contained HTML page: per file (name, prediction or None, error text, PNG bytes)
    a table row, then the pictures (embedded as data URIs)."""
    head = "<tr><th>file</th><th>verdict</th><th>shift</th><th>present</th><th>composition</th></tr>"
    table, pictures = [head], []
    for name, pred, error, png in rows:
        cells = [html.escape(name)]
        if pred is None:
            cells += [f"refused: {html.escape(error)}", "", "", ""]
        else:
            cells += [
                "in library" if pred.in_library else "<b>not in library</b>",
                signed_ev(pred.shift_ev),
                html.escape(", ".join(pred.labels) or "(none)"),
                html.escape(format_composition(pred) or "-"),
            ]
        table.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        if png:
            data = base64.b64encode(png).decode()
            pictures.append(
                f'<h2>{html.escape(name)}</h2><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
            )
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:4px 8px}img{max-width:100%}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>xpstream report</title><style>{style}</style></head>"
        f"<body><h1>xpstream report</h1><table>{''.join(table)}</table>{''.join(pictures)}</body></html>\n"
    )
