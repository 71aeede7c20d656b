"""What a step's cache key is made of, and why a key differs from the last build's.

Key material = {step kind, step version, the params the step reads, digests of its input
artifacts, digests of external files it reads, versions of the tools it uses}. Comparing the
material field by field with what the same step was last built with gives the reason a step
re-runs, in words a user can act on.
"""

from __future__ import annotations

import functools
from importlib import metadata
from typing import Any, Mapping


@functools.cache
def tool_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def key_material(
    kind: str,
    version: int,
    params: Mapping[str, Any],
    inputs: Mapping[str, str],
    files: Mapping[str, str],
    tools: tuple[str, ...],
    machine: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`machine`: what of the machine a step's bytes depend on (machine.key_entry), for the
    steps whose kind says so (StepKind.machine); absent from every other step's material, so
    their keys are the same on every machine."""
    material = {
        "kind": kind,
        "version": version,
        "params": dict(params),
        "inputs": dict(inputs),
        "files": dict(files),
        "tools": {name: tool_version(name) for name in tools},
    }
    if machine is not None:
        material["machine"] = dict(machine)
    return material


def explain_change(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> str:
    """Why `current` is not the material this step was last built with."""
    if previous is None:
        return "not in cache"
    if previous.get("tools") != current["tools"]:
        return "tool version changed" + _diff(previous.get("tools", {}), current["tools"])
    if (previous.get("kind"), previous.get("version")) != (current["kind"], current["version"]):
        return "step version changed"
    if previous.get("params") != current["params"]:
        return "params changed" + _diff(previous.get("params", {}), current["params"])
    if previous.get("machine") != current.get("machine"):
        return "machine changed" + _diff(previous.get("machine") or {}, current.get("machine") or {})
    changed_inputs = sorted(
        role
        for field in ("inputs", "files")
        for role in set(previous.get(field, {})) | set(current[field])
        if previous.get(field, {}).get(role) != current[field].get(role)
    )
    if changed_inputs:
        return f"input changed ({', '.join(changed_inputs)})"
    return "not in cache"


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one mapping of dotted keys (`train.epochs`) to leaf values."""
    if isinstance(value, Mapping):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def _diff(before: Mapping[str, Any], after: Mapping[str, Any], shown: int = 2) -> str:
    old, new = flatten(before), flatten(after)
    changes = [
        f"{key}: {old.get(key, '-')} -> {new.get(key, '-')}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]
    if not changes:
        return ""
    more = f", +{len(changes) - shown} more" if len(changes) > shown else ""
    return f" ({'; '.join(changes[:shown])}{more})"
