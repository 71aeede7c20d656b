"""Quality gates: the limits an artifact must meet to ship, checked against report rows.

A limit is looked up from the most specific place that sets it: gates.FORMAT.VARIANT, then
gates.FORMAT, then gates (top level); the violation names the key it came from, so users
know which line of their recipe to look at.
"""

from __future__ import annotations

from typing import Any, Mapping

LIMITS = ("min_accuracy", "max_accuracy_drop", "max_bytes", "max_p95_ms")


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


def violations(row: Mapping[str, Any], limits: Mapping[str, tuple[float, str]]) -> list[tuple[str, str]]:
    """(limit, phrase) per broken limit, e.g. ('max_p95_ms', 'p95 0.41 ms > 0.3 ms
    (gates.tflite.int8.max_p95_ms)').
    A figure that could not be measured (its benchmark failed) breaks any limit on it."""
    checks = {
        "min_accuracy": ("accuracy", row.get("accuracy"), lambda v, lim: v >= lim, "<", "{:.4f}"),
        "max_accuracy_drop": ("accuracy drop", _drop(row), lambda v, lim: v <= lim, ">", "{:.4f}"),
        "max_bytes": ("size", row.get("bytes"), lambda v, lim: v <= lim, ">", "{:.0f} bytes"),
        "max_p95_ms": ("p95", row.get("p95_ms"), lambda v, lim: v <= lim, ">", "{:.4g} ms"),
    }
    broken = []
    for limit, (value_limit, key) in limits.items():
        label, value, ok, sign, fmt = checks[limit]
        if value is None:
            broken.append((limit, f"{label} was not measured ({key} {value_limit})"))
        elif not ok(value, value_limit):
            broken.append((limit, f"{label} {fmt.format(value)} {sign} {fmt.format(value_limit)} ({key})"))
    return broken


def _drop(row: Mapping[str, Any]) -> float | None:
    delta = row.get("accuracy_delta")
    return None if delta is None else -delta
