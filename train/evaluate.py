"""Evaluation of trained models on one synthetic test set: JSON + Markdown report and PNG plots.

Every model in one call sees the same test spectra (drawn with TEST_SEED), so the rows of
the report are comparable.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from xpstream.contract import LABEL_NAMES, LABELS, energy_grid  # noqa: E402
from xpstream.train import metrics  # noqa: E402
from xpstream.train.library import load_library  # noqa: E402
from xpstream.train.mixtures import Batch, MixtureGenerator, MixtureSettings  # noqa: E402
from xpstream.train.models import ShiftSTN, normalise, shift_warp  # noqa: E402
from xpstream.train.trainer import TrainConfig, load_trained, predict  # noqa: E402

TEST_SEED = 2_000_029


def test_set(settings: MixtureSettings, n: int, seed: int = TEST_SEED) -> tuple[Batch, MixtureGenerator]:
    generator = MixtureGenerator(load_library(), settings, seed=seed)
    return generator.generate(n), generator


def evaluate_model(model, thresholds, batch: Batch, generator: MixtureGenerator) -> dict:
    """All metrics of one model on one test batch."""
    probs, shift = predict(model, batch.spectra)
    predicted = probs >= thresholds[None, :]
    if isinstance(model, ShiftSTN):
        out = metrics.summary(batch.labels, probs, thresholds, batch.shift_ev, shift)
    else:  # no calibrated shift to score
        out = metrics.summary(batch.labels, probs, thresholds)
    out["per_label"] = metrics.per_label(batch.labels, predicted)
    out["detection_by_fraction"] = metrics.detection_by_fraction(
        predicted, batch.components, batch.weights, generator.polymer_labels
    )
    return out


def evaluate_checkpoints(paths: list[str], n: int, out_dir: str, max_shift_ev: float | None = None) -> dict:
    """Evaluate best.pt files on one test set drawn with the first run's generator settings."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    loaded = [(Path(p), *load_trained(p)) for p in paths]
    settings = TrainConfig.from_json(loaded[0][3]["config"]).mixtures
    if max_shift_ev is not None:
        settings = replace(settings, max_shift_ev=max_shift_ev)
    batch, generator = test_set(settings, n)
    report = {"test_set": {"n": n, "seed": TEST_SEED, "settings": settings.as_dict()}, "models": {}}
    for path, model, thresholds, best in loaded:
        name = f"{best['model_name']} ({path.parent.name})"
        report["models"][name] = evaluate_model(model, thresholds, batch, generator)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(markdown_report(report))
    plot_sensitivity(report, out / "sensitivity.png")
    for path, model, _, _ in loaded:
        if isinstance(model, ShiftSTN):
            plot_alignment(model, batch, out / f"alignment-{path.parent.name}.png")
    return report


def markdown_report(report: dict) -> str:
    s = report["test_set"]
    lines = [
        f"# Evaluation on {s['n']} synthetic spectra (seed {s['seed']}, max shift {s['settings']['max_shift_ev']} eV)",
        "",
        "| model | exact match | exact match @0.5 | micro F1 | macro F1 | shift MAE (eV) |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in report["models"].items():
        lines.append(
            f"| {name} | {m['exact_match']:.4f} | {m['exact_match_at_0.5']:.4f} | {m['micro_f1']:.4f} | "
            f"{m['macro_f1']:.4f} | {m.get('shift_mae_ev', float('nan')):.3f} |"
        )
    names = list(report["models"])
    lines += [
        "",
        "## Sensitivity per label",
        "",
        "| label | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for label in LABELS:
        row = [f"{report['models'][n]['per_label'][label.name]['sensitivity']:.3f}" for n in names]
        lines.append(f"| {label.display} | " + " | ".join(row) + " |")
    lines += ["", "## Detection rate against the carrying component's fraction", ""]
    for name in names:
        rows = report["models"][name]["detection_by_fraction"]
        lines.append(
            f"{name}: "
            + ", ".join(
                f"[{r['fraction_from']:.2f}, {r['fraction_to']:.2f}) {r['detection_rate']:.3f} (n={r['n']})"
                for r in rows
            )
        )
    return "\n".join(lines) + "\n"


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


@torch.no_grad()
def plot_alignment(model: ShiftSTN, batch: Batch, path: Path, n: int = 6) -> None:
    """The paper's Figure 5: input spectra and the same spectra after the learned alignment."""
    x = torch.from_numpy(batch.spectra[:n])
    _, shift = model(x)
    aligned = shift_warp(normalise(x), shift / 0.1).numpy()
    grid = energy_grid()
    keep = (grid > 278) & (grid < 300)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for i in range(n):
        axes[0].plot(grid[keep], batch.spectra[i][keep], lw=0.9)
        axes[1].plot(
            grid[keep], aligned[i][keep], lw=0.9, label=f"true {batch.shift_ev[i]:+.2f}, est {shift[i]:+.2f} eV"
        )
    for ax, title in zip(axes, ("input (C 1s)", "aligned by the STN"), strict=True):
        ax.set_xlim(300, 278)
        ax.set_title(title)
        ax.set_xlabel("binding energy (eV)")
    axes[1].legend(fontsize=7)
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
