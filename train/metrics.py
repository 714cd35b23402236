"""Evaluation metrics (numpy only). `truth` and `predicted` are (N, labels) 0/1 arrays."""

from __future__ import annotations

import numpy as np

from xpstream.contract import LABEL_NAMES

FRACTION_BINS = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0)


def exact_match(truth, predicted, scored=None) -> float:
    """Share of spectra whose whole label set is right (subset accuracy); with `scored`
    (N, labels) 0/1, only the scored labels of each spectrum count."""
    truth, predicted = np.asarray(truth).astype(bool), np.asarray(predicted).astype(bool)
    right = truth == predicted
    if scored is not None:
        right |= ~np.asarray(scored).astype(bool)
    return float(right.all(axis=1).mean())


SHARE_BINS = (0.05, 0.10, 0.15, 0.20, 0.30, 0.50, 1.0)


def where_exact_match_is_lost(
    truth, predicted, scored, group_fraction, n_components, limits=(0.10, 0.15), bins=SHARE_BINS
) -> dict:
    """Where the exact match of one test set is lost: exact match per number of mixed polymers;
    the share of the present groups missed, per bin of the group's share of the atoms; false
    calls per spectrum; and the exact match if groups below each of `limits` of the atoms were
    neither required nor wrong (what a higher detection limit would score)."""
    scored = np.asarray(scored).astype(bool)
    truth = np.asarray(truth).astype(bool) & scored
    predicted = np.asarray(predicted).astype(bool) & scored
    missed, false = truth & ~predicted, predicted & ~truth
    right = ~(missed | false).any(axis=1)
    by_components = {str(k): float(right[n_components == k].mean()) for k in np.unique(n_components)}
    miss_rate = []
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        present = truth & (group_fraction >= lo) & (group_fraction < hi if hi < 1 else True)
        rate = float(missed[present].mean()) if present.any() else float("nan")
        miss_rate.append({"share_from": lo, "share_to": hi, "n": int(present.sum()), "missed": rate})
    at_limit = {
        f"{limit:g}": exact_match(truth, predicted, scored & ~(truth & (group_fraction < limit))) for limit in limits
    }
    return {
        "by_components": by_components,
        "missed_by_share": miss_rate,
        "false_calls_per_spectrum": float(false.sum(axis=1).mean()),
        "exact_match_at_detection_limit": at_limit,
    }


def _counts(truth, predicted):
    truth, predicted = np.asarray(truth).astype(bool), np.asarray(predicted).astype(bool)
    tp = (truth & predicted).sum(axis=0)
    fp = (~truth & predicted).sum(axis=0)
    fn = (truth & ~predicted).sum(axis=0)
    return tp, fp, fn


def _ratio(num, den):
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def per_label(truth, predicted, names=LABEL_NAMES) -> dict[str, dict]:
    """Sensitivity (recall), precision, F1 and support for each label (NaN where undefined)."""
    tp, fp, fn = _counts(truth, predicted)
    sens = _ratio(tp, tp + fn)
    prec = _ratio(tp, tp + fp)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return {
        name: {
            "sensitivity": float(sens[i]),
            "precision": float(prec[i]),
            "f1": float(f1[i]),
            "support": int(tp[i] + fn[i]),
        }
        for i, name in enumerate(names)
    }


def micro_f1(truth, predicted) -> float:
    tp, fp, fn = (c.sum() for c in _counts(truth, predicted))
    return float(_ratio(2 * tp, 2 * tp + fp + fn))


def macro_f1(truth, predicted) -> float:
    """Mean F1 over labels that occur or are predicted at least once."""
    tp, fp, fn = _counts(truth, predicted)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return float(np.nanmean(f1))


def detection_by_fraction(predicted, components, weights, polymer_labels, bins=FRACTION_BINS) -> list[dict]:
    """Detection rate of a label against the spectral fraction of the component carrying it.

    Only labels carried by exactly one component of a spectrum count (so the fraction is
    unambiguous). polymer_labels is (n_polymers, labels) 0/1.
    """
    predicted = np.asarray(predicted).astype(bool)
    fractions, detected = [], []
    for i in range(len(predicted)):
        used = components[i] >= 0
        carried = polymer_labels[components[i][used]].astype(bool)  # (k, labels)
        unique = carried.sum(axis=0) == 1
        for k, w in enumerate(weights[i][used]):
            labels = np.flatnonzero(carried[k] & unique)
            fractions.extend([w] * len(labels))
            detected.extend(predicted[i, labels])
    fractions, detected = np.array(fractions), np.array(detected, dtype=bool)
    rows = []
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        sel = (fractions >= lo) & (fractions < hi) if hi < 1 else (fractions >= lo)
        rows.append(
            {
                "fraction_from": lo,
                "fraction_to": hi,
                "n": int(sel.sum()),
                "detection_rate": float(detected[sel].mean()) if sel.any() else float("nan"),
            }
        )
    return rows


THRESHOLD_GRID = np.linspace(0.05, 0.95, 19)


def tune_thresholds(truth, probabilities, grid=THRESHOLD_GRID, passes: int = 2, scored=None) -> np.ndarray:
    """Per-label thresholds that maximise exact match (over `scored` labels) on validation data.

    Coordinate ascent from 0.5: each label in turn takes the grid value that maximises exact
    match with the other labels' thresholds fixed (ties: the value nearest 0.5).
    """
    truth = np.asarray(truth).astype(bool)
    ignored = np.zeros_like(truth) if scored is None else ~np.asarray(scored).astype(bool)
    thresholds = np.full(truth.shape[1], 0.5, dtype=np.float32)
    correct = ((probabilities >= thresholds) == truth) | ignored
    for _ in range(passes):
        for j in range(truth.shape[1]):
            others = np.delete(correct, j, axis=1).all(axis=1)
            scores = [np.mean(others & (((probabilities[:, j] >= t) == truth[:, j]) | ignored[:, j])) for t in grid]
            best = np.flatnonzero(np.isclose(scores, max(scores)))
            thresholds[j] = grid[best[np.argmin(np.abs(grid[best] - 0.5))]]
            correct[:, j] = ((probabilities[:, j] >= thresholds[j]) == truth[:, j]) | ignored[:, j]
    return thresholds


def reliability(truth, probabilities, scored=None, bins: int = 15) -> dict:
    """Reliability diagram and expected calibration error over all scored (spectrum, label)
    probabilities: equal-width bins; ECE = sum over bins of share x |mean p - observed rate|."""
    p = np.asarray(probabilities, dtype=float)
    t = np.asarray(truth).astype(float)
    keep = np.ones(p.shape, dtype=bool) if scored is None else np.asarray(scored).astype(bool)
    p, t = p[keep], t[keep]
    which = np.minimum((p * bins).astype(int), bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        sel = which == b
        if not sel.any():
            continue
        conf, rate = float(p[sel].mean()), float(t[sel].mean())
        rows.append({"from": b / bins, "to": (b + 1) / bins, "n": int(sel.sum()), "confidence": conf, "observed": rate})
        ece += sel.mean() * abs(conf - rate)
    return {"ece": float(ece), "n": int(p.size), "bins": rows}


SHARE_BINS = (0.0, 0.05, 0.2, 0.5, 1.0)


def share_errors(fraction, spread, truth, determined, bins=SHARE_BINS) -> dict:
    """Group-share errors over the determined (spectrum, label) entries: mean absolute error in
    percentage points overall, by label and binned by true share, and how often +-1 stated
    spread holds the truth (nominal 68.3 %) where the share is not trivially zero (true or
    predicted above 1 %). Empty for a model without shares (NaN fractions)."""
    fraction, truth = np.asarray(fraction, dtype=float), np.asarray(truth, dtype=float)
    if not np.isfinite(fraction).all():
        return {}
    judged = np.asarray(determined) > 0
    error = 100.0 * np.abs(fraction - truth)
    relevant = judged & ((truth > 0.01) | (fraction > 0.01))
    absent = judged & (truth == 0)
    rows = [{"share_from": 0.0, "share_to": 0.0, "n": int(absent.sum()), "mae_pp": _mean(error[absent])}]
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        sel = judged & (truth > lo) & (truth <= hi)
        rows.append({"share_from": lo, "share_to": hi, "n": int(sel.sum()), "mae_pp": _mean(error[sel])})
    return {
        "mae_pp": _mean(error[judged]),
        "mae_pp_present": _mean(error[judged & (truth > 0)]),
        "coverage_1std": _mean(np.abs(fraction - truth)[relevant] <= np.asarray(spread)[relevant]),
        "by_label": {name: _mean(error[judged[:, i], i]) for i, name in enumerate(LABEL_NAMES)},
        "by_share": rows,
    }


def _mean(values) -> float:
    return float(np.mean(values)) if np.size(values) else float("nan")


def summary(truth, probabilities, thresholds, shift_true=None, shift_pred=None, scored=None) -> dict:
    """The headline numbers for one model on one test set; with `scored`, over the scored
    (spectrum, label) entries only (F1: unscored entries count as neither true nor predicted)."""
    scored = np.ones(np.shape(truth), dtype=bool) if scored is None else np.asarray(scored).astype(bool)
    predicted = (probabilities >= np.asarray(thresholds)[None, :]) & scored
    truth_scored = np.asarray(truth).astype(bool) & scored
    out = {
        "exact_match": exact_match(truth, predicted, scored),
        "exact_match_at_0.5": exact_match(truth, probabilities >= 0.5, scored),
        "micro_f1": micro_f1(truth_scored, predicted),
        "macro_f1": macro_f1(truth_scored, predicted),
    }
    if shift_true is not None and shift_pred is not None:
        out["shift_mae_ev"] = float(np.mean(np.abs(np.asarray(shift_pred) - np.asarray(shift_true))))
    return out
