"""Metric functions against hand-computed values."""

import numpy as np
import pytest

from xpstream.train import metrics

TRUTH = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
PRED = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 0, 1]])
NAMES = ("a", "b", "c")


def test_exact_match():
    assert metrics.exact_match(TRUTH, PRED) == 0.5  # rows 0 and 3


def test_per_label_and_f1():
    table = metrics.per_label(TRUTH, PRED, NAMES)
    # a: tp 2, fp 0, fn 0; b: tp 1, fn 1; c: tp 2, fp 1
    assert table["a"] == {"sensitivity": 1.0, "precision": 1.0, "f1": 1.0, "support": 2}
    assert table["b"]["sensitivity"] == 0.5 and table["b"]["precision"] == 1.0
    assert table["b"]["f1"] == pytest.approx(2 / 3)
    assert table["c"]["precision"] == pytest.approx(2 / 3) and table["c"]["f1"] == pytest.approx(0.8)
    # micro: tp 5, fp 1, fn 1 -> 10 / 12
    assert metrics.micro_f1(TRUTH, PRED) == pytest.approx(10 / 12)
    assert metrics.macro_f1(TRUTH, PRED) == pytest.approx((1 + 2 / 3 + 0.8) / 3)


def test_undefined_sensitivity_is_nan_not_zero():
    table = metrics.per_label(np.zeros((2, 1)), np.zeros((2, 1)), ("x",))
    assert np.isnan(table["x"]["sensitivity"]) and table["x"]["support"] == 0


def test_detection_by_fraction_attributes_unique_labels_only():
    polymer_labels = np.array([[1, 0, 0], [0, 1, 1], [0, 1, 0]])
    components = np.array([[0, 1, -1, -1], [1, 2, -1, -1]])
    weights = np.array([[0.04, 0.96, 0, 0], [0.7, 0.3, 0, 0]])
    predicted = np.array([[0, 1, 1], [0, 1, 1]])
    rows = metrics.detection_by_fraction(predicted, components, weights, polymer_labels, bins=(0, 0.1, 1.0))
    # spectrum 0: label a (w .04) missed; b, c (w .96) found. spectrum 1: label b is shared
    # (not counted), c (w .7) found.
    assert rows[0] == {"fraction_from": 0, "fraction_to": 0.1, "n": 1, "detection_rate": 0.0}
    assert rows[1]["n"] == 3 and rows[1]["detection_rate"] == 1.0


def test_where_exact_match_is_lost_splits_misses_by_group_share():
    """Three spectra of two labels: a minor group (8 % of the atoms) missed, a major one found,
    a false call. The breakdown counts each where it belongs, and a 10 % detection limit forgives
    the minor miss but never the false call."""
    truth = np.array([[1, 1], [1, 0], [0, 0]])
    predicted = np.array([[0, 1], [1, 0], [1, 0]])
    scored = np.ones_like(truth)
    share = np.array([[0.08, 0.6], [0.4, 0.0], [0.0, 0.0]])
    out = metrics.where_exact_match_is_lost(truth, predicted, scored, share, np.array([2, 1, 1]))
    assert out["by_components"] == {"1": 0.5, "2": 0.0}
    rates = {(r["share_from"], r["share_to"]): (r["missed"], r["n"]) for r in out["missed_by_share"]}
    assert rates[(0.05, 0.10)] == (1.0, 1) and rates[(0.30, 0.50)] == (0.0, 1) and rates[(0.50, 1.0)] == (0.0, 1)
    assert np.isnan(rates[(0.10, 0.15)][0])
    assert out["false_calls_per_spectrum"] == pytest.approx(1 / 3)
    assert out["exact_match_at_detection_limit"] == {"0.1": pytest.approx(2 / 3), "0.15": pytest.approx(2 / 3)}
    assert metrics.exact_match(truth, predicted) == pytest.approx(1 / 3)


def test_tuned_thresholds_never_lower_validation_exact_match():
    rng = np.random.default_rng(0)
    truth = rng.random((500, 4)) < 0.3
    probs = truth * 0.3 + rng.random((500, 4)) * 0.25  # positives in [0.3, 0.55), negatives below 0.25
    tuned = metrics.tune_thresholds(truth, probs)
    assert metrics.exact_match(truth, probs >= tuned) == 1.0 > metrics.exact_match(truth, probs >= 0.5)
    assert ((tuned >= 0.05) & (tuned <= 0.95)).all()
