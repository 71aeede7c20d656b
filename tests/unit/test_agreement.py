"""The figures verification records, and the tolerance rules that fail a build."""

import numpy as np

from tfbuild.agreement import accuracy, compare, violations

REFERENCE = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]], np.float32)


def test_identical_outputs_agree_exactly():
    figures = compare(REFERENCE.copy(), REFERENCE)
    assert figures == {"samples": 4, "max_abs_diff": 0.0, "mean_abs_diff": 0.0, "top1_agreement": 1.0}
    assert violations(figures, {"max_abs_diff": 0.0, "min_top1_agreement": 1.0}) == []


def test_a_flipped_class_and_a_shift_are_measured_and_named():
    outputs = REFERENCE.copy()
    outputs[3] = [0.4, 0.5, 0.1]  # top-1 flips from class 0 to 1, by 0.1
    figures = compare(outputs, REFERENCE)
    assert figures["top1_agreement"] == 0.75
    assert abs(figures["max_abs_diff"] - 0.1) < 1e-6
    assert abs(figures["mean_abs_diff"] - 0.2 / 12) < 1e-6
    broken = violations(figures, {"max_abs_diff": 0.01, "mean_abs_diff": None, "min_top1_agreement": 0.9})
    assert broken == ["max abs diff 0.1 > max_abs_diff 0.01", "top-1 agreement 0.75 < min_top1_agreement 0.9"]
    assert violations(figures, {"max_abs_diff": None, "min_top1_agreement": 0.75}) == [], "bounds are inclusive"


def test_nan_outputs_never_pass_a_numeric_bound():
    outputs = REFERENCE.copy()
    outputs[0, 0] = np.nan
    figures = compare(outputs, REFERENCE)
    assert figures["max_abs_diff"] == float("inf")
    assert violations(figures, {"max_abs_diff": 1.0}) == ["max abs diff inf > max_abs_diff 1"]


def test_shape_mismatch_is_an_error_not_a_figure():
    try:
        compare(REFERENCE[:, :2], REFERENCE)
    except ValueError as exc:
        assert "differs from the reference" in str(exc)
    else:
        raise AssertionError("a wrong shape must not be compared")


def test_accuracy_against_labels():
    assert accuracy(REFERENCE, np.array([0, 1, 2, 1])) == 0.75
