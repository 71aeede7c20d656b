"""Walk a plan: reuse each step from the cache when its key is there, run it otherwise.

Every step ends with a status (built, cached, failed, skipped; in a dry run: cached or
to build) and a reason. A failed step stops the build: the steps after it are skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Mapping, Protocol

from .cache import Cache, Entry, cache_key
from .digests import tree_digest, tree_files
from .keys import explain_change, key_material
from .plan import Plan, StepSpec
from .steps.base import NoProgress, Progress, StepContext, StepKind

BUILT, CACHED, FAILED, SKIPPED, TO_BUILD = "built", "cached", "failed", "skipped", "to build"


@dataclass
class StepResult:
    spec: StepSpec
    status: str
    reason: str
    key: str | None = None
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    entry: Entry | None = None
    error: str | None = None

    def output_digest(self, role: str) -> str:
        assert self.entry is not None
        return self.entry.manifest["outputs"][role]["sha256"]


@dataclass
class BuildResult:
    steps: list[StepResult]

    @property
    def failed(self) -> StepResult | None:
        return next((r for r in self.steps if r.status == FAILED), None)


class Reporter(Protocol):
    def step_started(self, spec: StepSpec, reason: str) -> Progress: ...

    def step_finished(self, result: StepResult) -> None: ...


class SilentReporter:
    def step_started(self, spec: StepSpec, reason: str) -> Progress:
        return NoProgress()

    def step_finished(self, result: StepResult) -> None:
        pass


def run_plan(
    plan: Plan,
    cache: Cache,
    registry: Mapping[str, StepKind],
    *,
    run_dir: Path | None = None,
    scope: str = "",
    force: bool | tuple[str, ...] = False,
    dry_run: bool = False,
    reporter: Reporter | None = None,
    quiet: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
    log_error: Callable[[str], None] = lambda text: None,
) -> BuildResult:
    """Build `plan`. `quiet` wraps each step's work (the CLI sends TensorFlow's noise to a log
    file with it); `log_error` receives full tracebacks of failed steps."""
    reporter = reporter or SilentReporter()
    results: dict[str, StepResult] = {}
    producers = {out.artifact: (step.name, out.role) for step in plan.steps for out in step.outputs}
    stop = False

    for spec in plan.steps:
        upstream = {role: results[producers[a][0]] for role, a in spec.inputs.items()}
        if stop or any(r.status in (FAILED, SKIPPED) for r in upstream.values()):
            result = StepResult(spec, SKIPPED, "an earlier step failed")
        elif any(r.status == TO_BUILD for r in upstream.values()):
            pending = sorted({r.spec.name for r in upstream.values() if r.status == TO_BUILD})
            result = StepResult(spec, TO_BUILD, f"after {', '.join(pending)} (its input may change)")
        else:
            kind = registry[spec.kind]
            material = key_material(
                spec.kind,
                kind.version,
                spec.params,
                {role: r.output_digest(producers[spec.inputs[role]][1]) for role, r in upstream.items()},
                {role: cache.state.digest(Path(path)) for role, path in spec.files.items()},
                kind.tools,
            )
            result = _build_or_reuse(
                spec, kind, material, cache, upstream, producers, scope, force, dry_run, reporter, quiet, log_error
            )
            if result.status in (BUILT, CACHED):
                cache.remember_material(scope, spec.name, material)
                if run_dir is not None and not dry_run:
                    publish(result, run_dir)
        results[spec.name] = result
        stop = stop or result.status == FAILED
        if result.status != TO_BUILD or dry_run:
            reporter.step_finished(result)
    return BuildResult([results[s.name] for s in plan.steps])


def _build_or_reuse(
    spec: StepSpec,
    kind: StepKind,
    material: dict[str, Any],
    cache: Cache,
    upstream: Mapping[str, StepResult],
    producers: Mapping[str, tuple[str, str]],
    scope: str,
    force: bool | tuple[str, ...],
    dry_run: bool,
    reporter: Reporter,
    quiet: Callable[[], ContextManager[Any]],
    log_error: Callable[[str], None],
) -> StepResult:
    key = cache_key(material)
    started = time.perf_counter()
    forced = force is True or (isinstance(force, tuple) and (spec.name in force or spec.kind in force))
    refused: str | None = None
    if not forced:
        entry, refused = cache.lookup(key)
        if entry is not None:
            return StepResult(
                spec, CACHED, "cached", key, time.perf_counter() - started, entry.manifest["info"], entry
            )
    reason = "forced" if forced else refused or explain_change(cache.previous_material(scope, spec.name), material)
    if dry_run:
        return StepResult(spec, TO_BUILD, reason, key)

    progress = reporter.step_started(spec, reason)
    tmp = cache.begin(key)
    try:
        ctx = StepContext(
            spec=spec,
            params=spec.params,
            inputs={
                role: r.entry.output_path(producers[spec.inputs[role]][1])  # type: ignore[union-attr]
                for role, r in upstream.items()
            },
            files={role: Path(path) for role, path in spec.files.items()},
            outputs={out.role: tmp / "out" / out.path for out in spec.outputs},
            progress=progress,
        )
        with quiet():
            info = kind.run(ctx) or {}
        seconds = time.perf_counter() - started
        outputs = _output_records(spec, tmp)
        manifest = {"key": key, "name": spec.name, "material": material, "info": info,
                    "seconds": round(seconds, 3), "outputs": outputs}
        entry = cache.commit(tmp, key, manifest)
    except Exception as exc:  # a step's failure is reported as the step's, never as a crash
        cache.abort(tmp)
        log_error(f"step '{spec.name}' failed:\n{traceback.format_exc()}")
        return StepResult(spec, FAILED, reason, key, time.perf_counter() - started, error=_one_line(exc))
    return StepResult(spec, BUILT, reason, key, seconds, info, entry)


def _output_records(spec: StepSpec, tmp: Path) -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    for out in spec.outputs:
        path = tmp / "out" / out.path
        if not path.exists():
            raise RuntimeError(f"the step did not write its output '{out.path}'")
        files = tree_files(path)
        records[out.role] = {
            "artifact": out.artifact,
            "path": out.path,
            "sha256": tree_digest(files),
            "bytes": sum(f.bytes for f in files),
            "files": [vars(f) for f in files],
        }
    return records


def publish(result: StepResult, run_dir: Path) -> None:
    """Hard-link (or copy, across filesystems) a step's user-facing outputs into the run folder."""
    assert result.entry is not None
    for out in result.spec.outputs:
        if out.publish is None:
            continue
        source = result.entry.output_path(out.role)
        target = run_dir / out.publish
        if target.exists() or target.is_symlink():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
        for file in files:
            destination = target if source.is_file() else target / file.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(file, destination)
            except OSError:
                shutil.copy2(file, destination)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    limit = 400
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}"
