"""Task metrics per output, and how outputs meet targets: pure NumPy, figures worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tfbuild.errors import DataError
from tfbuild.metrics import (
    accuracy, describe, headline, mae, output_tasks, pair_outputs, predicted_classes, rmse, score, task_metrics,
)

PROBABILITIES = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]], np.float32)


@pytest.mark.parametrize("outputs, targets, pairing", [
    (["probabilities"], ["label"], {"probabilities": "label"}),  # one and one: whatever the names
    (["age", "digit"], ["digit", "age"], {"age": "age", "digit": "digit"}),  # several: by name
])  # fmt: skip
def test_outputs_pair_with_targets(outputs, targets, pairing):
    assert pair_outputs(outputs, targets) == pairing


@pytest.mark.parametrize("outputs, targets, named", [
    (["age", "digit"], ["digit", "years"], ["no data for age", "no output named years"]),
    (["a", "b"], ["a"], ["no data for b"]),
    (["values"], ["Weight", "Waist"], ["no data for values", "Weight, Waist"]),
])  # fmt: skip
def test_outputs_that_do_not_pair_are_one_line_naming_both_sides(outputs, targets, named):
    with pytest.raises(DataError) as error:
        pair_outputs(outputs, targets)
    message = str(error.value)
    assert "\n" not in message and "data.label" in message
    for part in named:
        assert part in message


def test_an_outputs_task_is_its_targets_and_without_labels_the_configs():
    assert output_tasks(["probabilities"], {"label": "classification"}) == {"probabilities": "classification"}
    assert output_tasks(["age", "digit"], {"digit": "classification", "age": "regression"}, task="classification") == {
        "age": "regression", "digit": "classification"}, "labelled data overrides the config"
    # Generated inputs have no targets: task.outputs names some, task.name covers the rest.
    assert output_tasks(["a", "b"], None, task="regression", task_outputs={"b": "classification"}) == {
        "a": "regression", "b": "classification"}
    assert output_tasks(["a"], {}, task="regression") == {"a": "regression"}


def test_classes_from_scores_or_from_one_sigmoid():
    assert predicted_classes(PROBABILITIES).tolist() == [0, 1, 2, 0]
    assert predicted_classes(np.array([[0.2], [0.7], [0.5]])).tolist() == [0, 1, 0], "above 0.5 is class 1"
    assert accuracy(PROBABILITIES, np.array([0, 1, 2, 1])) == 0.75
    assert accuracy(np.array([[0.9], [0.1]]), np.array([1, 1])) == 0.5


@pytest.mark.parametrize("outputs, targets, expected_mae, expected_rmse", [
    ([[1.0], [2.0], [4.0]], [[1.0], [3.0], [1.0]], 4 / 3, math.sqrt(10 / 3)),  # (n, 1) regression
    ([[1.0], [2.0]], [1.5, 2.5], 0.5, 0.5),  # targets (n,) against outputs (n, 1)
    ([[0.0, 2.0], [1.0, 1.0]], [[1.0, 2.0], [1.0, 4.0]], 1.0, math.sqrt(10 / 4)),  # (n, k): over every value
    (np.zeros((0, 1)), np.zeros((0, 1)), 0.0, 0.0),  # nothing to score
])  # fmt: skip
def test_mae_and_rmse(outputs, targets, expected_mae, expected_rmse):
    outputs, targets = np.asarray(outputs, np.float32), np.asarray(targets, np.float32)
    assert mae(outputs, targets) == pytest.approx(expected_mae)
    assert rmse(outputs, targets) == pytest.approx(expected_rmse)


def test_nan_outputs_score_as_infinitely_wrong_not_as_nan():
    outputs = np.array([[1.0], [np.nan]], np.float32)
    assert mae(outputs, np.ones((2, 1), np.float32)) == float("inf")
    assert rmse(outputs, np.ones((2, 1), np.float32)) == float("inf")


def test_outputs_that_do_not_fit_their_targets_are_an_error():
    with pytest.raises(ValueError, match=r"outputs of shape \[2, 2\] cannot be scored against targets of shape \[2, 3\]"):
        mae(np.zeros((2, 2)), np.zeros((2, 3)))


def test_metrics_per_output_follow_each_targets_task():
    outputs = {"digit": PROBABILITIES, "age": np.array([[10.0], [20.0], [30.0], [40.0]], np.float32)}
    targets = {"digit": np.array([0, 1, 2, 1]), "age": np.array([[12.0], [20.0], [30.0], [38.0]], np.float32)}
    metrics = task_metrics(outputs, targets, {"digit": "classification", "age": "regression"})
    assert metrics == {"digit": {"task": "classification", "accuracy": 0.75},
                       "age": {"task": "regression", "mae": 1.0, "rmse": pytest.approx(math.sqrt(2), rel=1e-5)}}
    assert headline(metrics) == ("digit", "accuracy", 0.75)
    assert describe(metrics) == "digit: accuracy 75.0%"
    assert describe({"age": metrics["age"]}) == "MAE 1, RMSE 1.414"
    assert task_metrics(outputs, {}, {}) == {}, "generated inputs: nothing to score"
    # In the targets' order (data.label's), whatever order a runtime gives the outputs in.
    assert list(task_metrics({"age": outputs["age"], "digit": PROBABILITIES}, targets, {"digit": "classification",
                                                                                       "age": "regression"})) == ["digit", "age"]
    assert describe({}) == "generated inputs, no labels"


def test_scores_are_rounded_for_the_record_whatever_the_unit():
    big = score(np.array([[123456.789]]), np.array([[0.0]]), "regression")
    assert big == {"mae": 123457.0, "rmse": 123457.0}
    assert score(np.array([[0.0]]), np.array([[1e-7 / 3]]), "regression")["mae"] == pytest.approx(3.33333e-8)
