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
from scipy.special import expit  # noqa: E402

from xpstream.contract import LABEL_NAMES, LABELS, energy_grid, labels_to_multihot  # noqa: E402
from xpstream.quantify import element_composition  # noqa: E402
from xpstream.train import metrics  # noqa: E402
from xpstream.train.acquisition import measured_mask  # noqa: E402
from xpstream.train.export import library_metadata  # noqa: E402
from xpstream.train.library import load_library  # noqa: E402
from xpstream.train.mixtures import Batch, MixtureGenerator, MixtureSettings  # noqa: E402
from xpstream.train.models import normalise, shift_warp  # noqa: E402
from xpstream.train.plots import plot_reliability, plot_sensitivity  # noqa: E402
from xpstream.train.trainer import (  # noqa: E402
    TrainConfig,
    headline,
    load_trained,
    predict,
    reports_shift,
    rule_scoring,
)
from xpstream.train.transfer import STABILITY_SHIFTS_EV, measured_checks, shift_stability, transfer_settings  # noqa: E402

TEST_SEED = 2_000_029


def test_set(settings: MixtureSettings, n: int, seed: int = TEST_SEED) -> tuple[Batch, MixtureGenerator]:
    generator = MixtureGenerator(load_library(), settings, seed=seed)
    return generator.generate(n), generator


def evaluate_model(
    model,
    thresholds,
    batch: Batch,
    generator: MixtureGenerator,
    best: dict | None = None,
    exclude_labels=(),
    light: bool = False,
) -> dict:
    """All metrics of one model on one test batch; `best` (a best.pt's contents) supplies the
    calibration temperatures, share scales and the out-of-library threshold. Exact match counts
    the scored labels (`scoring`) without alkane, which is reported on its own; with
    exclude_labels, also the exact match over the other labels (`exact_match_excluding`).
    light: the headline numbers, alkane, shares and elements only (the transfer sets)."""
    best = best or {}
    o = predict(model, batch, best.get("temperature"), share_scale=best.get("share_scale"))
    probs = o["probabilities"]
    determined, scored = rule_scoring(generator.library, batch)
    predicted = (probs >= thresholds[None, :]) & scored
    shifts = (batch.shift_ev, o["shift_ev"]) if reports_shift(model) else (None, None)  # else uncalibrated
    out = metrics.summary(batch.labels, probs, thresholds, *shifts, scored=headline(scored))
    out["per_label"] = metrics.per_label(batch.labels.astype(bool) & scored, predicted)
    out["losses"] = metrics.where_exact_match_is_lost(
        batch.labels, predicted, headline(scored), batch.group_fraction, (batch.components >= 0).sum(axis=1)
    )
    alkane = LABEL_NAMES.index("alkane")
    out["alkane"] = {"share_scored": float(scored[:, alkane].mean()), **out["per_label"]["alkane"]}
    truth = batch.labels.astype(bool)
    out["alkane"]["specificity"] = _share(~predicted[scored[:, alkane] & ~truth[:, alkane], alkane])
    out["shares"] = metrics.share_errors(o["group_fraction"], o["group_fraction_std"], batch.group_fraction, determined)
    out["elements"] = element_errors(o, batch)
    if light:
        return out
    if exclude_labels:
        kept = headline(scored) & ~labels_to_multihot(exclude_labels).astype(bool)[None, :]
        out["exact_match_excluding"] = {
            "labels": list(exclude_labels),
            "exact_match": metrics.exact_match(batch.labels, predicted, kept),
        }
    out["calibration"] = {
        "calibrated": metrics.reliability(batch.labels, probs, scored),
        "uncalibrated": metrics.reliability(batch.labels, expit(o["logits"]), scored),
    }
    partial = (determined > 0) & (determined < 1)
    out["acquisition"] = {
        "share_scored": float(scored.mean()),
        "exact_match_all_defining_recorded": metrics.exact_match(
            batch.labels, probs >= thresholds[None, :], headline(scored) & (determined >= 1)
        ),
        "no_defining_recorded": {
            "n": int((determined <= 0).sum()),
            "share_above_0.9": _share(probs[determined <= 0] > 0.9),
        },
        "some_defining_recorded": {
            "n": int(partial.sum()),
            "share_above_0.9": _share(probs[partial] > 0.9),
            "share_above_0.9_when_absent": _share(probs[partial & ~truth] > 0.9),
        },
    }
    threshold = best.get("out_of_library_threshold")
    if threshold is not None:
        out["out_of_library"] = {
            "threshold": threshold,
            "false_alarm_rate": float(np.mean(o["out_of_library_score"] > threshold)),
            "score_quantiles": {
                q: float(np.quantile(o["out_of_library_score"], float(q) / 100)) for q in ("50", "99", "99.9", "100")
            },
            "detection": out_of_library_detection(model, batch, generator, best),
        }
    out["detection_by_fraction"] = metrics.detection_by_fraction(
        predicted, batch.components, batch.weights, generator.polymer_labels
    )
    return out


def element_errors(outputs: dict, batch: Batch) -> dict:
    """Classical element quantification (`xpstream.quantify`, the library's instrument response)
    against the true atomic shares of the recorded elements: mean absolute error in at. %."""
    meta = library_metadata(load_library())
    found = element_composition(outputs["level_area"], outputs["level_recorded"], meta["levels"], meta["instrument"])
    index = {level["element"]: j for j, level in enumerate(meta["levels"])}
    errors = []
    for (atomic, _), truth in zip(found, batch.atomic_fraction, strict=True):
        if not atomic:
            continue
        columns = [index[e] for e in atomic]
        true = truth[columns] / max(truth[columns].sum(), 1e-12) * 100.0
        errors.extend(np.abs(np.array(list(atomic.values())) - true))
    return {"atomic_percent_mae": float(np.mean(errors)) if errors else float("nan"), "n": len(errors)}


FOREIGN_FRACTIONS = (0.02, 0.05, 0.1, 0.2, 0.4)
FOREIGN_FWHM_EV = 1.5
FOREIGN_REGION_HALF_WIDTH_EV = 10.0


def _share(flags) -> float:
    return float(np.mean(flags)) if np.size(flags) else float("nan")


def out_of_library_detection(model, batch: Batch, generator: MixtureGenerator, best: dict, n: int = 1000) -> dict:
    """How often the out-of-library flag rises when one line of an element the library lacks
    (physics.toml [foreign_lines]) carries a fraction of the spectrum's area. The line is a
    Gaussian at its binding energy plus the spectrum's shift; region plans also record its
    region (+-10 eV), surveys show it anyway."""
    grid = energy_grid()
    rows = slice(0, min(n, len(batch.spectra)))
    base = batch.spectra[rows]
    shift = batch.shift_ev[rows, None].astype(np.float64)
    sigma = FOREIGN_FWHM_EV / 2.3548
    planned = measured_mask(batch.recorded[rows], batch.whole[rows])
    out = {}
    for name, be in generator.library.foreign_lines.items():
        centre = be + shift
        line = np.exp(-0.5 * ((grid[None, :] - centre) / sigma) ** 2)
        line /= line.sum(axis=1, keepdims=True)
        measured = planned.copy()
        measured[np.abs(grid[None, :] - centre) <= FOREIGN_REGION_HALF_WIDTH_EV] = 1.0
        out[name] = {}
        for f in FOREIGN_FRACTIONS:
            spectra = ((1 - f) * base + f * line).astype(np.float32)
            test = Batch(**{**{k: v[rows] for k, v in vars(batch).items()}, "spectra": spectra})
            score = predict(model, test, best.get("temperature"), measured=measured)["out_of_library_score"]
            out[name][str(f)] = float(np.mean(score > best["out_of_library_threshold"]))
    return out


def run_name(path: Path) -> str:
    """runs/NAME/best.pt -> NAME; an exported model -> its file name without .onnx."""
    return path.stem if path.suffix == ".onnx" else path.parent.name


def evaluate_checkpoints(
    paths: list[str],
    n: int,
    out_dir: str,
    max_shift_ev: float | None = None,
    acquisition: str | None = None,
    exclude_labels: tuple[str, ...] = (),
    transfer: bool = False,
    measured_folder: str | None = None,
) -> dict:
    """Evaluate best.pt files (or exported .onnx models) on one test set drawn with the first
    run's generator settings (library polymers only; maximum shift and acquisition plans
    overridable); exclude_labels:
    also report the exact match over the other labels. transfer: also the transfer table
    (`xpstream.train.transfer`: in-distribution, cross-renderer and single-polymer sets of n
    spectra, and the measured files of `measured_folder`), first in the report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    loaded = [(Path(p), *load_trained(p)) for p in paths]
    settings = replace(TrainConfig.from_json(loaded[0][3]["config"]).mixtures, sub_polymers=False)
    if max_shift_ev is not None:
        settings = replace(settings, max_shift_ev=max_shift_ev)
    if acquisition is not None:
        settings = replace(settings, acquisition=acquisition)
    batch, generator = test_set(settings, n)
    report = {"test_set": {"n": n, "seed": TEST_SEED, "settings": settings.as_dict()}, "models": {}}
    names = [f"{best['model_name']} ({run_name(path)})" for path, *_, best in loaded]
    if transfer:
        report["transfer"] = {}
        for set_name, transfer_set in transfer_settings(settings).items():
            test, test_generator = test_set(transfer_set, n)
            report["transfer"][set_name] = {
                name: evaluate_model(model, thresholds, test, test_generator, best, light=True)
                for name, (_, model, thresholds, best) in zip(names, loaded, strict=True)
            }
        report["shift_stability"] = {
            name: shift_stability(model, thresholds, best, settings, n)
            for name, (_, model, thresholds, best) in zip(names, loaded, strict=True)
        }
        if measured_folder:
            report["measured"] = {
                name: measured_checks(model, thresholds, best, Path(measured_folder))
                for name, (_, model, thresholds, best) in zip(names, loaded, strict=True)
            }
    for name, (_, model, thresholds, best) in zip(names, loaded, strict=True):
        report["models"][name] = evaluate_model(model, thresholds, batch, generator, best, exclude_labels)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(markdown_report(report))
    plot_sensitivity(report, out / "sensitivity.png")
    plot_reliability(report, out / "reliability.png")
    for path, model, _, _ in loaded:
        if reports_shift(model):
            plot_alignment(model, batch, out / f"alignment-{run_name(path)}.png")
    return report


def transfer_section(report: dict) -> list[str]:
    """The transfer table (exact match without alkane and traces, alkane F1, group-share and
    element errors) and the measured files, first in the report."""
    sets = report.get("transfer")
    if not sets:
        return []
    names = list(next(iter(sets.values())))
    lines = [
        "## Transfer first: spectra the model was not trained to fit",
        "",
        "Exact match over the labels the recorded regions settle, alkane and traces excluded "
        "(alkane F1 beside it); group shares: mean absolute error in percentage points "
        "(coverage of +-1 stated spread, nominal 68 %); elements: classical at. % error.",
        "",
        "| model | " + " | ".join(sets) + " | alkane F1 (in-dist.) | shares MAE pp (coverage) | at. % MAE |",
        "|---" * (len(sets) + 4) + "|",
    ]
    for name in names:
        first = next(iter(sets.values()))[name]
        cells = [f"{sets[s][name]['exact_match']:.4f}" for s in sets]
        shares = first["shares"]
        share_cell = f"{shares['mae_pp']:.2f} ({shares['coverage_1std']:.2f})" if shares else "-"
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {first['alkane']['f1']:.3f} | {share_cell} | "
            f"{first['elements']['atomic_percent_mae']:.2f} |"
        )
    lines += _losses_table(sets["in-distribution"]) if "in-distribution" in sets else []
    stability = report.get("shift_stability")
    if stability:
        sizes = [f"{size:g}" for size in STABILITY_SHIFTS_EV]
        header = ["model", "right unmoved", *(f"unchanged at +-{s} eV" for s in sizes)]
        header.append("shift MAE unmoved / " + " / ".join(f"+-{s}" for s in sizes) + " eV")
        rows = []
        for name, r in stability.items():
            cells = [f"{r[f'unchanged_{s}ev']:.4f} ({r[f'right_and_unchanged_{s}ev']:.4f})" for s in sizes]
            errors = ["shift_mae_unmoved_ev"] + [f"shift_mae_{s}ev" for s in sizes]
            errors = " / ".join(f"{r.get(key, float('nan')):.3f}" for key in errors)
            rows.append([name, f"{r['right_unmoved']:.4f}", *cells, errors])
        lines += [
            "",
            "Shift stability: single polymers (no shift) moved by -S and +S eV on the grid; the share whose "
            "called groups stay those of the unmoved spectrum (right at all three positions in brackets), "
            "and the shift MAE unmoved and moved.",
            "",
            *_markdown_table(header, rows),
        ]
    for name, rows in report.get("measured", {}).items():
        lines += ["", f"Measured files, {name}:", "", "| file | expected | named (p) | in library | shift | right |"]
        lines.append("|---|---|---|---|---|---|")
        for r in rows:
            named = ", ".join(f"{k} {v:.2f}" for k, v in r["named"].items()) or "(none)"
            lines.append(
                f"| {r['file']} | {r['expected']} | {named} | {r['in_library']} | {r['shift_ev']:+.2f} eV | "
                f"{'yes' if r['right'] else 'NO'} |"
            )
    return lines + [""]


def _losses_table(results: dict) -> list[str]:
    """Where each model loses the in-distribution exact match (`metrics.where_exact_match_is_lost`)."""
    first = next(iter(results.values()))["losses"]
    counts = list(first["by_components"])
    bins = [f"{r['share_from'] * 100:g}-{r['share_to'] * 100:g} %" for r in first["missed_by_share"]]
    limits = list(first["exact_match_at_detection_limit"])
    header = ["model", *(f"{k} polymer{'s' if int(k) > 1 else ''}" for k in counts)]
    header += [f"missed at {b}" for b in bins] + ["false calls"]
    header += [f"exact match, limit {float(x) * 100:g} %" for x in limits]
    rows = []
    for name, result in results.items():
        losses = result["losses"]
        cells = [name] + [f"{losses['by_components'][k]:.3f}" for k in counts]
        cells += [f"{r['missed']:.3f}" for r in losses["missed_by_share"]]
        cells.append(f"{losses['false_calls_per_spectrum']:.3f}")
        cells += [f"{losses['exact_match_at_detection_limit'][x]:.3f}" for x in limits]
        rows.append(cells)
    return [
        "",
        "Where the in-distribution exact match is lost: exact match by number of polymers mixed; the share of "
        "the present groups missed, by the group's share of the sample's atoms; false calls per spectrum; and "
        "the exact match if groups below a higher detection limit were neither required nor wrong (the labels "
        "use 5 %).",
        "",
        *_markdown_table(header, rows),
    ]


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table: the header, its separator and one line per row of cells."""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def markdown_report(report: dict) -> str:
    s = report["test_set"]
    lines = transfer_section(report) + [
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
    for name, m in report["models"].items():
        if "exact_match_excluding" in m:
            without, value = ", ".join(m["exact_match_excluding"]["labels"]), m["exact_match_excluding"]["exact_match"]
            lines.append(f"\n{name}: exact match without {without}: {value:.4f}")
    lines += _acquisition_section(report)
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


def _acquisition_section(report: dict) -> list[str]:
    lines = [
        "",
        "## Acquisition, calibration, out-of-library",
        "",
        "Exact match above counts, per spectrum, the labels at least one recorded region can show;",
        "'all defining' counts only the labels all of whose core levels were recorded.",
        "",
        "| model | labels scored | exact match (all defining recorded) | p > 0.9, none recorded | "
        "p > 0.9, some recorded (absent) | ECE calibrated (uncalibrated) | out-of-library false alarms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in report["models"].items():
        a, c = m["acquisition"], m["calibration"]
        some = a["some_defining_recorded"]
        oolib = m.get("out_of_library", {})
        lines.append(
            f"| {name} | {a['share_scored']:.3f} | {a['exact_match_all_defining_recorded']:.4f} | "
            f"{a['no_defining_recorded']['share_above_0.9']:.4f} (n={a['no_defining_recorded']['n']}) | "
            f"{some['share_above_0.9']:.4f} ({some['share_above_0.9_when_absent']:.4f}, n={some['n']}) | "
            f"{c['calibrated']['ece']:.4f} ({c['uncalibrated']['ece']:.4f}) | "
            f"{oolib.get('false_alarm_rate', float('nan')):.4f} |"
        )
    for name, m in report["models"].items():
        detection = m.get("out_of_library", {}).get("detection")
        if not detection:
            continue
        fractions = list(next(iter(detection.values())))
        lines += [
            "",
            f"Out-of-library detection rate, {name} (threshold {m['out_of_library']['threshold']:.3f}): one line of",
            "an element the library lacks carrying a fraction of the area:",
            "",
            "| line | " + " | ".join(f"{100 * float(f):g} %" for f in fractions) + " |",
            "|---" * (len(fractions) + 1) + "|",
        ]
        for line_name, rates in detection.items():
            lines.append(f"| {line_name} | " + " | ".join(f"{rates[f]:.3f}" for f in fractions) + " |")
    return lines


@torch.no_grad()
def plot_alignment(model, batch: Batch, path: Path, n: int = 6) -> None:
    """The paper's Figure 5: input spectra and the same spectra after the learned alignment."""
    x = torch.from_numpy(batch.spectra[:n])
    shift = model(x).shift_ev
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
