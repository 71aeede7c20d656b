"""Fake step kinds for engine tests (real files, no TensorFlow, runs counted), and a way to
damage a cache entry's manifest as a clumsy user or an attacker would."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from tfbuild.plan import OutputSpec, StepSpec
from tfbuild.steps.base import NoProgress, StepContext


class WriteStep:
    """Writes its `text` param, plus the content of each input, to its single output."""

    version = 1
    tools = ("pytest",)

    def __init__(self, kind: str, runs: Counter):
        self.kind = kind
        self.runs = runs

    def run(self, ctx: StepContext) -> dict[str, Any]:
        self.runs[ctx.spec.name] += 1
        if ctx.params.get("fail"):
            raise ValueError(f"{ctx.spec.name} was told to fail")
        parts = [str(ctx.params.get("text", ctx.spec.name))]
        parts += [ctx.inputs[role].read_text() for role in sorted(ctx.inputs)]
        for role, path in ctx.outputs.items():
            path.write_text("|".join(parts))
        ctx.progress.start(1, "working")
        ctx.progress.advance("done")
        return {"chars": sum(len(p) for p in parts)}


class EventReporter:
    """A runner reporter that records ("start", name) and ("end", name, status) in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def step_started(self, spec: StepSpec, reason: str) -> NoProgress:
        self.events.append(("start", spec.name))
        return NoProgress()

    def step_waiting(self, spec: StepSpec) -> None:
        pass

    def step_finished(self, result: Any) -> None:
        self.events.append(("end", result.spec.name, result.status))


def step(name: str, inputs: dict[str, str] | None = None, publish: bool = False, **params: Any) -> StepSpec:
    return StepSpec(
        name=name,
        kind="write",
        params=params,
        inputs=inputs or {},
        outputs=(OutputSpec(role="out", artifact=name, path=f"{name}.txt", publish=f"{name}.txt" if publish else None, format="txt" if publish else None),),
    )


def edit_manifest(folder: Path, change: Callable[[Any], Any]) -> None:
    """Rewrite an entry's manifest with `change` applied (it edits in place or returns a new one)."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest = change(manifest) or manifest
    path.chmod(0o644)
    path.write_text(json.dumps(manifest))
