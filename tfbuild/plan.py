"""The plan: build steps connected by named artifacts (Kedro-style edges), in run order.

A step consumes artifacts by name and produces artifacts under new names; the graph is the
set of those name matches. `make_plan` checks the graph and orders it; it is pure.
"""

from __future__ import annotations

import graphlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .errors import PlanError


@dataclass(frozen=True)
class OutputSpec:
    role: str  # the step's local name for it: ctx.outputs[role]
    artifact: str  # the plan-wide name other steps consume, e.g. "tflite/int8"
    path: str  # relative path inside the step's output folder (a file or a folder)
    # Where the artifact appears in the run folder; None keeps it internal to the cache.
    publish: str | None = None
    format: str | None = None  # saved_model, tflite, tfjs (user-facing artifacts only)
    variant: str | None = None


@dataclass(frozen=True)
class StepSpec:
    name: str  # unique in the plan, e.g. "tflite[int8]"
    kind: str  # key into the step registry
    params: Mapping[str, Any] = field(default_factory=dict)  # only what the step reads
    inputs: Mapping[str, str] = field(default_factory=dict)  # role -> artifact name
    outputs: tuple[OutputSpec, ...] = ()
    # Files outside the plan whose content enters the cache key (a user's .npz, a builder's source).
    files: Mapping[str, str] = field(default_factory=dict)  # role -> path
    # The name of a step whose failure alone makes this one run (a diagnosis nobody asked for
    # unless something breaks); otherwise it is "not needed". It runs after that step.
    runs_if_failed: str | None = None


@dataclass(frozen=True)
class Plan:
    steps: tuple[StepSpec, ...]  # in run order: every producer before its consumers

    def producers(self) -> dict[str, tuple[str, str]]:
        """artifact name -> (producing step's name, the output's role in that step)."""
        return {out.artifact: (step.name, out.role) for step in self.steps for out in step.outputs}

    def step(self, name: str) -> StepSpec:
        return next(s for s in self.steps if s.name == name)


def make_plan(steps: Iterable[StepSpec]) -> Plan:
    """Check the graph (unique names and outputs, every input produced, no cycle) and order it.

    Ties are broken by declaration order so the same recipe always runs in the same order.
    """
    steps = list(steps)
    _check_unique_names(steps)
    producers = _producers(steps)
    for step in steps:
        for role, artifact in step.inputs.items():
            if artifact not in producers:
                raise PlanError(
                    f"step '{step.name}' needs artifact '{artifact}' (as {role}), "
                    f"but no step produces it"
                )

    by_name = {s.name: s for s in steps}
    for step in steps:
        if step.runs_if_failed is not None and step.runs_if_failed not in by_name:
            raise PlanError(f"step '{step.name}' runs if '{step.runs_if_failed}' fails, but no step is named so")
    order = {s.name: i for i, s in enumerate(steps)}
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for step in steps:
        after = [step.runs_if_failed] if step.runs_if_failed else []
        sorter.add(step.name, *(producers[a] for a in step.inputs.values()), *after)
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise PlanError(f"the steps form a cycle: {cycle}") from None
    ordered: list[StepSpec] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=order.__getitem__)
        for name in ready:
            ordered.append(by_name[name])
            sorter.done(name)
    return Plan(tuple(ordered))


def _check_unique_names(steps: list[StepSpec]) -> None:
    seen: set[str] = set()
    for step in steps:
        if step.name in seen:
            raise PlanError(f"two steps are named '{step.name}'")
        seen.add(step.name)


def _producers(steps: list[StepSpec]) -> dict[str, str]:
    producers: dict[str, str] = {}
    published: dict[str, str] = {}
    for step in steps:
        for out in step.outputs:
            if out.publish is not None:
                if out.publish in published:
                    raise PlanError(
                        f"steps '{published[out.publish]}' and '{step.name}' both publish '{out.publish}'"
                    )
                published[out.publish] = step.name
            if out.artifact in producers:
                raise PlanError(
                    f"artifact '{out.artifact}' is produced by both "
                    f"'{producers[out.artifact]}' and '{step.name}'"
                )
            producers[out.artifact] = step.name
    return producers
