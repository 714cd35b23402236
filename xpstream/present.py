"""Predictions as people read them: the lines of `xpstream predict` and `xpstream subscribe`,
and Markdown table rows for a lab notebook."""

from __future__ import annotations

from pathlib import Path

from xpstream.contract import Prediction

MARKDOWN_HEADER = (
    "| file | regions used | verdict (out-of-library score; unexplained regions) | shift "
    "| present (p) | composition |\n|---|---|---|---|---|---|"
)


def signed_ev(value: float) -> str:
    """'+0.23 eV'; a shift that rounds to zero reads '+0.00 eV', never '-0.00 eV'."""
    return f"{value if abs(value) >= 0.005 else 0.0:+.2f} eV"


def format_composition(pred: Prediction) -> str:
    """'C 71.4, O 28.6 at. %; groups: ester_aliphatic 57 +- 3 %, ...' (empty when none)."""
    parts = []
    if pred.atomic_percent:
        parts.append(", ".join(f"{e} {v:.1f}" for e, v in pred.atomic_percent.items()) + " at. %")
    if pred.not_quantified:
        parts.append("not quantified: " + ", ".join(f"{e} ({why})" for e, why in pred.not_quantified.items()))
    shares = sorted(((v, k) for k, v in pred.group_percent.items() if v >= 0.5), reverse=True)
    if shares:
        parts.append(
            "groups: " + ", ".join(f"{k} {v:.0f} +- {pred.group_percent_std[k]:.0f} %" for v, k in shares) + " of atoms"
        )
    return "; ".join(parts)


def format_prediction(pred: Prediction, regions: list[str]) -> str:
    """A few lines a person reads: the verdict, the strongest groups, the composition, what was
    recorded."""
    verdict = "in library" if pred.in_library else "NOT IN LIBRARY (do not trust the groups)"
    unexplained = f"; unexplained regions: {', '.join(pred.unexplained_regions)}" if pred.unexplained_regions else ""
    judged = {k: v for k, v in pred.probabilities.items() if k not in pred.undetermined}
    top = sorted(judged.items(), key=lambda kv: -kv[1])[:5]
    lines = [
        f"{pred.source}: {verdict} (out-of-library score {pred.out_of_library_score:.3f}{unexplained}); "
        f"shift {signed_ev(pred.shift_ev)}; present: {', '.join(pred.labels) or '(none)'}",
        "    top: " + ", ".join(f"{k} {v:.2f}" for k, v in top) + f"; regions: {regions}",
    ]
    if composition := format_composition(pred):
        lines.append(f"    composition: {composition}")
    if pred.undetermined:
        lines.append(f"    not determinable from what was recorded: {', '.join(pred.undetermined)}")
    return "\n".join(lines)


def markdown_row(pred: Prediction, regions: list[str]) -> str:
    """One row under MARKDOWN_HEADER."""
    verdict = "in library" if pred.in_library else "**not in library**"
    unexplained = f"; {', '.join(pred.unexplained_regions)}" if pred.unexplained_regions else ""
    present = ", ".join(f"{name} ({pred.probabilities[name]:.2f})" for name in pred.labels) or "(none)"
    return (
        f"| {Path(pred.source).name} | {', '.join(regions)} | {verdict} ({pred.out_of_library_score:.3f}{unexplained}) "
        f"| {signed_ev(pred.shift_ev)} | {present} | {format_composition(pred) or '-'} |"
    )


def markdown_refusal(path: str, error: Exception) -> str:
    """The row of a file that could not be analysed."""
    return f"| {Path(path).name} | - | refused: {error} | | | |"


def format_message(topic: str, body: dict) -> str:
    """One line per published message (`xpstream subscribe`)."""
    who = body.get("id") or body.get("source") or "?"  # an error before any id: where it came from
    if topic.endswith("/error"):
        return f"{topic} {who} {body.get('reason')}: {body.get('message')}"
    flag = "" if body.get("in_library", True) else " [NOT IN LIBRARY]"
    return f"{topic} {who}{flag}: shift {signed_ev(body['shift_ev'])}, {', '.join(body['labels']) or '(none)'}"
