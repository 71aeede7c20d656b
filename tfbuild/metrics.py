"""Task metrics per model output: accuracy for classification, MAE and RMSE for regression.

Pure NumPy, so every figure is unit-tested without a model; numpy is imported inside
functions, so planning (gates, report columns) can import the names and rules.

A model output meets the data through its paired target: one output and one target pair
whatever their names (a registry model's "probabilities" scores the "label" target);
otherwise they pair by name (signature.pair_names). The output's task is its target's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .signature import pair_names

if TYPE_CHECKING:
    import numpy as np

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)
# The figures each task is scored by, headline first; every report and gate reads this.
METRICS = {CLASSIFICATION: ("accuracy",), REGRESSION: ("mae", "rmse")}
# True where a larger value is better (how deltas, Pareto fronts and diffs read a metric).
HIGHER_IS_BETTER = {"accuracy": True, "mae": False, "rmse": False}
LABELS = {"accuracy": "accuracy", "mae": "MAE", "rmse": "RMSE"}
GENERATED = "generated inputs, no labels"


def pair_outputs(output_names: Sequence[str], target_names: Sequence[str]) -> dict[str, str]:
    """{output name: target name}: one and one pair whatever their names, several by name
    (signature.pair_names: a DataError naming both sides when they do not)."""
    return pair_names(list(output_names), list(target_names), "outputs")


def output_tasks(output_names: Sequence[str], target_tasks: Mapping[str, str] | None, *,
                 task: str = CLASSIFICATION, task_outputs: Mapping[str, str] | None = None) -> dict[str, str]:
    """{output name: task}. With labelled data an output's task is its paired target's; with
    generated inputs (no targets) it is the config's: task.outputs[name], else task.name."""
    if target_tasks:
        return {name: target_tasks[target] for name, target in pair_outputs(output_names, list(target_tasks)).items()}
    return {name: (task_outputs or {}).get(name, task) for name in output_names}


def per_sample(array: np.ndarray) -> np.ndarray:
    """(samples, values) float64: one row per sample whatever its shape ((n,) is (n, 1))."""
    import numpy as np

    array = np.asarray(array, np.float64)
    return array.reshape(len(array), int(np.prod(array.shape[1:], dtype=np.int64)))


def predicted_classes(outputs: np.ndarray) -> np.ndarray:
    """Class per sample: the argmax of (samples, classes) scores; a single score per sample
    (a sigmoid) is class 1 above 0.5."""
    import numpy as np

    scores = per_sample(outputs)
    if scores.shape[1] == 1:
        return (scores[:, 0] > 0.5).astype(np.int64)
    return scores.argmax(axis=1)


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    import numpy as np

    if len(labels) == 0:
        return 0.0
    return float(np.mean(predicted_classes(outputs) == np.asarray(labels).reshape(-1)))


def _errors(outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    import numpy as np

    got, want = per_sample(outputs), per_sample(targets)
    if got.shape != want.shape:
        raise ValueError(f"outputs of shape {list(outputs.shape)} cannot be scored against targets of shape "
                         f"{list(targets.shape)}")
    return got - want


def mae(outputs: np.ndarray, targets: np.ndarray) -> float:
    """Mean absolute error over every value; inf when an output is NaN or infinite (a NaN
    would pass every `>` comparison a gate makes)."""
    import numpy as np

    errors = _errors(outputs, targets)
    return _finite_or_inf(float(np.abs(errors).mean())) if errors.size else 0.0


def rmse(outputs: np.ndarray, targets: np.ndarray) -> float:
    import numpy as np

    errors = _errors(outputs, targets)
    return _finite_or_inf(float(np.sqrt(np.square(errors).mean()))) if errors.size else 0.0


def _finite_or_inf(value: float) -> float:
    return value if value == value and value != float("inf") else float("inf")


def score(outputs: np.ndarray, targets: np.ndarray, task: str) -> dict[str, float]:
    """The task's metrics for one output against its target, rounded for the record."""
    if task == CLASSIFICATION:
        return {"accuracy": round(accuracy(outputs, targets), 6)}
    return {"mae": _round(mae(outputs, targets)), "rmse": _round(rmse(outputs, targets))}


def _round(value: float) -> float:
    return float(f"{value:.6g}")  # six significant digits: targets can be in any unit


def task_metrics(outputs: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray],
                 target_tasks: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """{output name: {"task": ..., metric: value, ...}}, in the targets' order (data.label's:
    runtimes may sort output names, and summaries show the first); {} when there are no
    targets (generated inputs)."""
    if not targets:
        return {}
    by_target = {target: name for name, target in pair_outputs(list(outputs), list(targets)).items()}
    return {by_target[t]: {"task": target_tasks[t], **score(outputs[by_target[t]], targets[t], target_tasks[t])}
            for t in targets if t in by_target}


def headline(metrics: Mapping[str, Mapping[str, Any]]) -> tuple[str, str, float] | None:
    """(output, metric, value) of the first output's first metric: what one-line summaries show."""
    for name, figures in metrics.items():
        metric = METRICS[figures["task"]][0]
        return name, metric, figures[metric]
    return None


def describe(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    """'accuracy 93.1%' or 'MAE 3.2, RMSE 4.1' for the first output ('Weight: MAE ...' when
    there are several)."""
    first = headline(metrics)
    if first is None:
        return GENERATED
    name, _, _ = first
    text = ", ".join(format_metric(m, metrics[name][m]) for m in METRICS[metrics[name]["task"]])
    return f"{name}: {text}" if len(metrics) > 1 else text


def format_metric(metric: str, value: float | None, *, label: bool = True) -> str:
    if value is None:
        return "-"
    number = f"{value:.1%}" if metric == "accuracy" else f"{value:.4g}"
    return f"{LABELS[metric]} {number}" if label else number


def _names(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names) or "(none)"
