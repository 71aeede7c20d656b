"""Gates that follow the task: accuracy limits on classification outputs, MAE limits on
regression outputs, and a limit that fits no output refused while planning."""

from __future__ import annotations

import pytest

from tfbuild.gates import gates_not_applicable, limits_for, violations


def row(metrics: dict, deltas: dict | None = None, **figures) -> dict:
    return {"metrics": metrics, "metric_deltas": deltas or {}, "bytes": 1000, "p95_ms": 1.0, **figures}


REGRESSION = row({"values": {"task": "regression", "mae": 3.5, "rmse": 4.0}}, {"values": {"mae": 0.25, "rmse": 0.3}})
TWO_OUTPUTS = row(
    {"digit": {"task": "classification", "accuracy": 0.9}, "age": {"task": "regression", "mae": 2.0, "rmse": 2.5}},
    {"digit": {"accuracy": -0.02}, "age": {"mae": 0.5, "rmse": 0.4}},
)  # fmt: skip
LINNERUD = row(
    {name: {"task": "regression", "mae": mae, "rmse": mae} for name, mae in (("Weight", 12.0), ("Waist", 2.0), ("Pulse", 6.0))},
    {"Weight": {"mae": 1.0}, "Waist": {"mae": 0.0}, "Pulse": {"mae": 0.6}},
)  # fmt: skip


def limits(**values) -> dict:
    return {name: (value, f"gates.{name}") for name, value in values.items()}


@pytest.mark.parametrize("subject, given, expected", [
    (REGRESSION, limits(max_mae=3.0), [("max_mae", "MAE 3.5 > 3 (gates.max_mae)")]),
    (REGRESSION, limits(max_mae=3.5, max_mae_increase=0.25), []),  # limits are inclusive
    (REGRESSION, limits(max_mae_increase=0.1), [("max_mae_increase", "MAE increase 0.25 > 0.1 (gates.max_mae_increase)")]),
    # Accuracy limits do not apply to regression outputs (the planner refuses them: gates_not_applicable).
    (REGRESSION, limits(min_accuracy=0.9, max_accuracy_drop=0.0), []),
    (TWO_OUTPUTS, limits(min_accuracy=0.95, max_mae=1.0), [
        ("min_accuracy", "accuracy 0.9000 < 0.9500 (gates.min_accuracy)"), ("max_mae", "MAE 2 > 1 (gates.max_mae)")]),
    (TWO_OUTPUTS, limits(max_accuracy_drop=0.01, max_mae_increase=0.5), [
        ("max_accuracy_drop", "accuracy drop 0.0200 > 0.0100 (gates.max_accuracy_drop)")]),
    # Several outputs of a task: each is held to the limit, and named.
    (LINNERUD, limits(max_mae=5.0), [("max_mae", "MAE of 'Weight' 12 > 5 (gates.max_mae)"),
                                     ("max_mae", "MAE of 'Pulse' 6 > 5 (gates.max_mae)")]),
    (LINNERUD, limits(max_mae_increase=0.5), [
        ("max_mae_increase", "MAE increase of 'Weight' 1 > 0.5 (gates.max_mae_increase)"),
        ("max_mae_increase", "MAE increase of 'Pulse' 0.6 > 0.5 (gates.max_mae_increase)")]),
])  # fmt: skip
def test_metric_gates_bound_the_outputs_of_their_task(subject, given, expected):
    assert violations(subject, given) == expected


def test_an_infinite_mae_from_nan_outputs_fails_the_gate():
    broken = row({"values": {"task": "regression", "mae": float("inf"), "rmse": float("inf")}})
    assert violations(broken, limits(max_mae=1e9)) == [("max_mae", "MAE inf > 1e+09 (gates.max_mae)")]


@pytest.mark.parametrize("subject, why", [
    ({"metrics": {}, "generated": False}, ""),  # the benchmark failed or was skipped
    ({"metrics": {}, "generated": True}, ", generated inputs, no labels"),
])  # fmt: skip
def test_a_metric_that_was_not_measured_breaks_its_limit(subject, why):
    assert violations(subject, limits(max_mae=1.0)) == [("max_mae", f"MAE was not measured (gates.max_mae 1.0{why})")]
    missing_delta = row({"values": {"task": "regression", "mae": 1.0, "rmse": 1.0}})  # no SavedModel row to compare with
    assert violations(missing_delta, limits(max_mae_increase=0.1)) == [
        ("max_mae_increase", "MAE increase was not measured (gates.max_mae_increase 0.1)")]


def test_mae_limits_refine_per_format_and_variant():
    gates = {"max_mae": 5.0, "tflite": {"max_mae_increase": 0.5, "int8": {"max_mae": 6.0, "max_mae_increase": None}}}
    assert limits_for(gates, "tflite", "int8") == {"max_mae": (6.0, "gates.tflite.int8.max_mae"),
                                                   "max_mae_increase": (0.5, "gates.tflite.max_mae_increase")}
    assert limits_for(gates, "tfjs", "uint8") == {"max_mae": (5.0, "gates.max_mae")}


NOTHING_SET = {"min_accuracy": None, "max_accuracy_drop": None, "max_mae": None, "max_mae_increase": None,
               "max_bytes": None, "max_p95_ms": None}  # fmt: skip


def plain_gates(top: dict | None = None, tflite: dict | None = None, int8: dict | None = None) -> dict:
    """gates as OmegaConf.to_container gives them: every scope, every key."""
    return {**NOTHING_SET, **(top or {}),
            "saved_model": dict(NOTHING_SET),
            "tflite": {**NOTHING_SET, **(tflite or {}), "float": dict(NOTHING_SET), "int8": {**NOTHING_SET, **(int8 or {})}},
            "tfjs": {**NOTHING_SET, "none": dict(NOTHING_SET), "uint8": dict(NOTHING_SET)}}  # fmt: skip


@pytest.mark.parametrize("gates, tasks, expected", [
    (plain_gates({"max_mae": 1.0}), {"probabilities": "classification"},
     ["gates.max_mae applies to regression outputs, and this model has none (probabilities=classification); "
      "use gates.min_accuracy or gates.max_accuracy_drop"]),
    (plain_gates(int8={"max_accuracy_drop": 0.01}), {"Weight": "regression", "Waist": "regression"},
     ["gates.tflite.int8.max_accuracy_drop applies to classification outputs, and this model has none "
      "(Weight=regression, Waist=regression); use gates.max_mae or gates.max_mae_increase"]),
    (plain_gates({"min_accuracy": 0.9}, {"max_mae_increase": 0.5}), {"digit": "classification", "age": "regression"}, []),
    (plain_gates({"max_bytes": 10, "max_p95_ms": 1.0}), {"values": "regression"}, []),  # not metric limits
])  # fmt: skip
def test_a_metric_gate_no_output_can_meet_is_refused_while_planning(gates, tasks, expected):
    assert gates_not_applicable(gates, tasks) == expected


def test_without_labels_no_metric_gate_applies():
    problems = gates_not_applicable(plain_gates({"min_accuracy": 0.9}, {"max_mae": 2.0}), {"out": "classification"},
                                    labelled=False)
    assert problems == [
        "gates.min_accuracy: the test inputs are generated inputs, no labels (no data given), so there is nothing "
        "to measure it on: give data, or remove the limit",
        "gates.tflite.max_mae: the test inputs are generated inputs, no labels (no data given), so there is nothing "
        "to measure it on: give data, or remove the limit",
    ]  # fmt: skip
