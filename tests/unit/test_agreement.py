"""The figures verification records per output, and the tolerance rules that fail a build."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tfbuild.agreement import compare, compare_outputs, violations, worst

REFERENCE = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]], np.float32)
VALUES = np.array([[2.0], [-1.0], [0.0], [4.0]], np.float32)  # a one-value regression output
ALL_BOUNDS = {"max_abs_diff": None, "mean_abs_diff": None, "max_rel_diff": None, "min_cosine": None,
              "min_top1_agreement": None}  # fmt: skip


def test_identical_outputs_agree_exactly():
    figures = compare(REFERENCE.copy(), REFERENCE)
    assert figures == {"task": "classification", "samples": 4, "max_abs_diff": 0.0, "mean_abs_diff": 0.0,
                       "max_rel_diff": 0.0, "min_cosine": pytest.approx(1.0), "top1_agreement": 1.0, "non_finite": 0}
    strict = {"max_abs_diff": 0.0, "mean_abs_diff": 0.0, "max_rel_diff": 0.0, "min_cosine": 0.999999, "min_top1_agreement": 1.0}
    assert violations({"out": figures}, strict) == []


def test_a_flipped_class_and_a_shift_are_measured_and_named():
    outputs = REFERENCE.copy()
    outputs[3] = [0.4, 0.5, 0.1]  # top-1 flips from class 0 to 1, by 0.1
    figures = compare(outputs, REFERENCE)
    assert figures["top1_agreement"] == 0.75
    assert figures["max_abs_diff"] == pytest.approx(0.1)
    assert figures["mean_abs_diff"] == pytest.approx(0.2 / 12)
    assert figures["max_rel_diff"] == pytest.approx(0.1 / 0.4), "the largest |Δ| / |reference|: 0.1 on 0.4"
    cos = (0.5 * 0.4 + 0.4 * 0.5 + 0.01) / (0.5**2 + 0.4**2 + 0.01)
    assert figures["min_cosine"] == pytest.approx(cos)
    broken = violations({"p": figures}, dict(ALL_BOUNDS, max_abs_diff=0.01, min_top1_agreement=0.9, min_cosine=0.99,
                                             max_rel_diff=0.2))
    assert broken == ["max abs diff 0.1 > max_abs_diff 0.01", "max rel diff 0.25 > max_rel_diff 0.2",
                      f"min cosine {cos:.4g} < min_cosine 0.99", "top-1 agreement 0.75 < min_top1_agreement 0.9"]
    assert violations({"p": figures}, dict(ALL_BOUNDS, min_top1_agreement=0.75, max_rel_diff=0.25)) == [], "bounds are inclusive"


def test_regression_outputs_have_every_difference_and_no_top1_agreement():
    outputs = VALUES + np.array([[0.5], [0.0], [0.001], [-1.0]], np.float32)
    figures = compare(outputs, VALUES, "regression")
    assert figures["top1_agreement"] is None
    assert figures["max_abs_diff"] == pytest.approx(1.0)
    assert figures["mean_abs_diff"] == pytest.approx(1.501 / 4)
    # Against 0 the relative difference is taken against the 1e-6 floor: 0.001 / 1e-6.
    assert figures["max_rel_diff"] == pytest.approx(1000, rel=1e-3)
    assert figures["min_cosine"] == 0.0, "one value per sample: 0 against a 0 reference is no agreement"
    # min_top1_agreement is set for every variant by default: it does not apply to regression outputs.
    assert violations({"values": figures}, dict(ALL_BOUNDS, min_top1_agreement=0.99)) == []
    assert violations({"values": figures}, dict(ALL_BOUNDS, max_abs_diff=0.5)) == ["max abs diff 1 > max_abs_diff 0.5"]


def test_cosine_per_sample_takes_the_worst_sample():
    reference = np.array([[1.0, 0.0], [0.0, 0.0], [3.0, 4.0]], np.float32)
    outputs = np.array([[0.0, 1.0], [0.0, 0.0], [6.0, 8.0]], np.float32)  # orthogonal, both zero, scaled
    assert compare(outputs, reference, "regression")["min_cosine"] == 0.0
    assert compare(reference[1:], reference[1:], "regression")["min_cosine"] == 1.0, "zero against zero agrees"
    assert compare(-reference[2:], reference[2:], "regression")["min_cosine"] == pytest.approx(-1.0)


def test_nan_or_inf_never_pass_a_bound_and_are_counted():
    outputs = REFERENCE.copy()
    outputs[0, 0] = np.nan
    outputs[1, 1] = np.inf
    figures = compare(outputs, REFERENCE)
    assert (figures["max_abs_diff"], figures["mean_abs_diff"], figures["max_rel_diff"]) == (math.inf,) * 3
    assert figures["min_cosine"] == -math.inf and figures["non_finite"] == 2
    assert violations({"p": figures}, dict(ALL_BOUNDS, max_abs_diff=1.0, min_cosine=0.9)) == [
        "max abs diff inf > max_abs_diff 1 (2 NaN or infinite values)", "min cosine -inf < min_cosine 0.9",
    ]  # fmt: skip
    nan_reference = compare(REFERENCE, outputs)
    assert nan_reference["max_abs_diff"] == math.inf and nan_reference["non_finite"] == 0


def test_shape_mismatch_is_an_error_not_a_figure():
    with pytest.raises(ValueError, match="differs from the reference"):
        compare(REFERENCE[:, :2], REFERENCE)


def test_every_output_is_compared_by_name_and_bounded_on_its_own():
    reference = {"digit": REFERENCE, "age": VALUES}
    outputs = {"age": VALUES + 0.5, "digit": REFERENCE[[1, 1, 2, 3]]}  # one class flipped; age shifted
    per_output = compare_outputs(outputs, reference, {"digit": "classification", "age": "regression"})
    assert list(per_output) == ["digit", "age"], "in the reference's order"
    assert per_output["digit"]["top1_agreement"] == 0.75 and per_output["age"]["top1_agreement"] is None
    tolerance = dict(ALL_BOUNDS, max_abs_diff=0.3, min_top1_agreement=0.9)
    assert violations(per_output, tolerance) == [
        "'digit': max abs diff 0.6 > max_abs_diff 0.3",
        "'digit': top-1 agreement 0.75 < min_top1_agreement 0.9",
        "'age': max abs diff 0.5 > max_abs_diff 0.3",
    ]  # fmt: skip
    # Each figure at its worst, whichever output it comes from: age's 0.5 against a reference of 0
    # is the largest relative difference (0.5 / 1e-6) and the least cosine (0).
    assert worst(per_output.values()) == {
        "max_abs_diff": pytest.approx(0.6), "mean_abs_diff": pytest.approx(0.5), "max_rel_diff": pytest.approx(5e5),
        "min_cosine": 0.0, "top1_agreement": 0.75,
    }  # fmt: skip
    assert worst([per_output["age"]])["top1_agreement"] is None


@pytest.mark.parametrize("outputs", [{"digit": REFERENCE}, {"digit": REFERENCE, "age": VALUES, "extra": VALUES}])
def test_an_artifact_whose_outputs_are_not_the_references_is_an_error(outputs):
    with pytest.raises(ValueError, match=r"the artifact's outputs \[.*\] are not the SavedModel's \['age', 'digit'\]"):
        compare_outputs(outputs, {"digit": REFERENCE, "age": VALUES}, {})
