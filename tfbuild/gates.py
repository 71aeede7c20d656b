"""Quality gates: the limits an artifact must meet to ship, checked against report rows.

A limit is looked up from the most specific place that sets it: gates.FORMAT.VARIANT, then
gates.FORMAT, then gates (top level); the violation names the key it came from, so users
know which line of their recipe to look at.

Metric limits follow the task: accuracy limits bound every classification output, MAE
limits every regression output (each output on its own, named when there are several). A
metric limit no output of the model can meet is a config error found while planning
(`gates_not_applicable`), not a gate that silently passes.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from .metrics import CLASSIFICATION, GENERATED, REGRESSION

LIMITS = ("min_accuracy", "max_accuracy_drop", "max_mae", "max_mae_increase", "max_bytes", "max_p95_ms")
# Metric limit -> (the task of the outputs it bounds, the metric, from the delta (True) or
# the value, label, True when the figure must stay at or below the limit, number format).
METRIC_LIMITS: dict[str, tuple[str, str, bool, str, bool, str]] = {
    "min_accuracy": (CLASSIFICATION, "accuracy", False, "accuracy", False, "{:.4f}"),
    "max_accuracy_drop": (CLASSIFICATION, "accuracy", True, "accuracy drop", True, "{:.4f}"),
    "max_mae": (REGRESSION, "mae", False, "MAE", True, "{:.4g}"),
    "max_mae_increase": (REGRESSION, "mae", True, "MAE increase", True, "{:.4g}"),
}


def limits_for(gates: Mapping[str, Any], fmt: str, variant: str | None) -> dict[str, tuple[float, str]]:
    """limit name -> (value, the config key that set it), for one artifact."""
    scopes: list[tuple[str, Mapping[str, Any]]] = [("gates", gates)]
    format_node = gates.get(fmt) or {}
    scopes.append((f"gates.{fmt}", format_node))
    if variant is not None and isinstance(format_node.get(variant), Mapping):
        scopes.append((f"gates.{fmt}.{variant}", format_node[variant]))
    found: dict[str, tuple[float, str]] = {}
    for key, node in scopes:  # later (more specific) scopes win
        for limit in LIMITS:
            if node.get(limit) is not None:
                found[limit] = (node[limit], f"{key}.{limit}")
    return found


def gates_not_applicable(gates: Mapping[str, Any], tasks: Mapping[str, str], *, labelled: bool = True) -> list[str]:
    """One line per metric limit set anywhere under `gates` (plain values) that no output can
    be held to: an MAE limit on a model with no regression output, an accuracy limit with no
    classification output, any metric limit when there are no labels (generated inputs).
    `tasks`: {output (or target) name: task}. The planner raises the first as a ConfigError."""
    present = set(tasks.values())
    problems = []
    for key, node in _scopes(gates):
        for limit, (task, *_rest) in METRIC_LIMITS.items():
            if node.get(limit) is None:
                continue
            if not labelled:
                problems.append(f"{key}.{limit}: the test inputs are {GENERATED} (no data given), so there is "
                                f"nothing to measure it on: give data, or remove the limit")
            elif task not in present:
                names = ", ".join(f"{name}={t}" for name, t in tasks.items())
                problems.append(f"{key}.{limit} applies to {task} outputs, and this model has none ({names}); "
                                f"use {_fitting(task)}")
    return problems


def _fitting(task: str) -> str:
    other = [k for k, (t, *_rest) in METRIC_LIMITS.items() if t != task]
    return " or ".join(f"gates.{k}" for k in other)


def _scopes(gates: Mapping[str, Any]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    yield "gates", gates
    from .formats import FORMATS

    for fmt in FORMATS:
        node = gates.get(fmt) or {}
        yield f"gates.{fmt}", node
        for variant, child in node.items():
            if isinstance(child, Mapping):
                yield f"gates.{fmt}.{variant}", child


def violations(row: Mapping[str, Any], limits: Mapping[str, tuple[float, str]]) -> list[tuple[str, str]]:
    """(limit, phrase) per broken limit, e.g. ('max_p95_ms', 'p95 0.41 ms > 0.3 ms
    (gates.tflite.int8.max_p95_ms)'). A figure that could not be measured (its benchmark
    failed) breaks any limit on it."""
    checks: dict[str, tuple[str, Any, bool, str]] = {
        "max_bytes": ("size", row.get("bytes"), True, "{:.0f} bytes"),
        "max_p95_ms": ("p95", row.get("p95_ms"), True, "{:.4g} ms"),
    }
    broken = []
    for limit, (value_limit, key) in limits.items():
        if limit in METRIC_LIMITS:
            broken += [(limit, phrase) for phrase in _metric_violations(row, limit, value_limit, key)]
            continue
        label, value, at_most, fmt = checks[limit]
        phrase = _phrase(label, value, value_limit, key, at_most, fmt)
        if phrase:
            broken.append((limit, phrase))
    return broken


def _metric_violations(row: Mapping[str, Any], limit: str, value_limit: float, key: str) -> list[str]:
    task, metric, from_delta, label, at_most, fmt = METRIC_LIMITS[limit]
    metrics = row.get("metrics") or {}
    if not metrics:  # no benchmark figures (it failed or was skipped), or no labels
        why = f", {GENERATED}" if row.get("generated") else ""
        return [f"{label} was not measured ({key} {value_limit}{why})"]
    deltas = row.get("metric_deltas") or {}
    outputs = [name for name, figures in metrics.items() if figures["task"] == task]
    phrases = []
    for name in outputs:  # none: the planner refused the limit (gates_not_applicable)
        value = (deltas.get(name) or {}).get(metric) if from_delta else metrics[name].get(metric)
        if value is not None and from_delta and metric == "accuracy":
            value = -value  # a drop is the negative change
        named = f"{label} of {name!r}" if len(outputs) > 1 else label
        phrase = _phrase(named, value, value_limit, key, at_most, fmt)
        if phrase:
            phrases.append(phrase)
    return phrases


def _phrase(label: str, value: float | None, limit: float, key: str, at_most: bool, fmt: str) -> str | None:
    ok: Callable[[float, float], bool] = (lambda v, lim: v <= lim) if at_most else (lambda v, lim: v >= lim)
    if value is None:
        return f"{label} was not measured ({key} {limit})"
    if ok(value, limit):
        return None
    return f"{label} {fmt.format(value)} {'>' if at_most else '<'} {fmt.format(limit)} ({key})"
