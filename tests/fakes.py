"""Fake step kinds for engine tests (real files, no TensorFlow, runs counted), and a way to
damage a cache entry's manifest as a clumsy user or an attacker would."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from tfbuild.errors import DataError
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


class TreeStep:
    """Writes its `files` param ({relative path: text}) as a folder, or its `text` as a file;
    `fail`: raises (a step failure), `refuse`: raises DataError (the input is refused, exit 2),
    `wait_on`: a FIFO whose writer it waits for first (a build held mid-way)."""

    version = 1
    tools = ("pytest",)

    def __init__(self, runs: Counter):
        self.runs = runs

    def run(self, ctx: StepContext) -> dict[str, Any]:
        self.runs[ctx.spec.name] += 1
        if ctx.params.get("wait_on"):
            with open(ctx.params["wait_on"]) as fifo:  # blocks until the test opens it, then until it closes it
                fifo.read()
        if ctx.params.get("refuse"):
            raise DataError(f"{ctx.spec.name} refuses its input")
        if ctx.params.get("fail"):
            raise ValueError(f"{ctx.spec.name} was told to fail")
        out = ctx.outputs["out"]
        files = ctx.params.get("files")
        if files is None:
            out.write_text(str(ctx.params.get("text", ctx.spec.name)))
        for rel, text in (files or {}).items():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_text(text)
        return {}


def artifact(name: str, publish: str, inputs: dict[str, str] | None = None, **params: Any) -> StepSpec:
    """A TreeStep step publishing its output at `publish` (a folder when `files` is given)."""
    return StepSpec(name=name, kind="tree", params=params, inputs=inputs or {},
                    outputs=(OutputSpec(role="out", artifact=name, path="out", publish=publish, format="fake"),))  # fmt: skip


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
