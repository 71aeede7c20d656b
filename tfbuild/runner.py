"""Walk a plan: reuse each step from the cache when its key is there, run it otherwise.

Every step ends with a status (built, cached, failed, skipped; in a dry run: cached or
to build) and a reason. A failed step skips the steps that depend on it; the others still
run (like `make -k`), so one broken variant does not hide the state of the rest.
"""

from __future__ import annotations

import contextlib
import re
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, ContextManager, Mapping, Protocol

from .cache import Cache, Entry, cache_key
from .digests import tree_digest, tree_files
from .errors import TfbuildError
from .keys import explain_change, key_material
from .plan import Plan, StepSpec
from .run_folder import clear_owned, publish_tree
from .steps.base import NoProgress, Progress, StepContext, StepKind

BUILT, CACHED, FAILED, SKIPPED, TO_BUILD = "built", "cached", "failed", "skipped", "to build"
NOT_NEEDED = "not needed"  # a step that runs only if another fails, when that one did not


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
    bad_input: bool = False  # it failed on what the user gave it (a TfbuildError), not a bug

    def output_digest(self, role: str) -> str:
        assert self.entry is not None
        return self.entry.manifest["outputs"][role]["sha256"]


@dataclass
class BuildResult:
    steps: list[StepResult]

    @property
    def failures(self) -> list[StepResult]:
        return [r for r in self.steps if r.status == FAILED]

    @property
    def failed(self) -> StepResult | None:
        """The first failure, if any."""
        return next(iter(self.failures), None)


class Reporter(Protocol):
    def step_started(self, spec: StepSpec, reason: str) -> Progress: ...

    def step_waiting(self, spec: StepSpec) -> None: ...

    def step_finished(self, result: StepResult) -> None: ...


class SilentReporter:
    def step_started(self, spec: StepSpec, reason: str) -> Progress:
        return NoProgress()

    def step_waiting(self, spec: StepSpec) -> None:
        pass

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
    """Build `plan`, publishing user-facing artifacts into `run_dir`.

    `scope` (the recipe) names whose previous build a step is compared with to explain a
    rebuild. `quiet` wraps each step's work (the CLI sends TensorFlow's noise to a log file
    with it); `log_error` receives the full traceback of a failed step.
    """
    publishing = run_dir is not None and not dry_run
    producers = plan.producers()
    results: dict[str, StepResult] = {}
    # Every entry this build uses stays locked against gc until the build ends.
    with contextlib.ExitStack() as uses:
        runner = _Runner(cache, registry, scope, force, dry_run, reporter or SilentReporter(), quiet, log_error, uses)
        if publishing:
            clear_owned(plan, run_dir)  # type: ignore[arg-type]
        for spec in plan.steps:
            upstream = {role: (results[producers[a][0]], producers[a][1]) for role, a in spec.inputs.items()}
            unneeded = _unneeded(spec, results)
            result = unneeded or runner.step(spec, upstream)
            if result.status in (BUILT, CACHED) and publishing:
                result = _published(result, run_dir)  # type: ignore[arg-type]
            results[spec.name] = result
            runner.reporter.step_finished(result)
    return BuildResult([results[s.name] for s in plan.steps])


def _unneeded(spec: StepSpec, results: Mapping[str, StepResult]) -> StepResult | None:
    """For a step that runs only if another fails: why it will not run, else None."""
    if spec.runs_if_failed is None:
        return None
    trigger = results[spec.runs_if_failed]
    if trigger.status == FAILED:
        return None
    if trigger.status == TO_BUILD:
        return StepResult(spec, TO_BUILD, f"only if {trigger.spec.name} fails")
    if trigger.status == SKIPPED:
        return StepResult(spec, SKIPPED, f"{trigger.spec.name} did not run")
    return StepResult(spec, NOT_NEEDED, f"{trigger.spec.name} passed")


def _published(result: StepResult, run_dir: Path) -> StepResult:
    """`result`, its artifacts published; or, when the run folder refuses them (full disk,
    read-only folder), the step failed with that reason on one line."""
    try:
        publish(result, run_dir)
    except OSError as exc:
        error = f"cannot publish into the run folder: {exc.strerror or exc} ({run_dir})"
        return StepResult(result.spec, FAILED, result.reason, result.key, result.seconds, result.info, result.entry, error)
    return result


@dataclass
class _Runner:
    cache: Cache
    registry: Mapping[str, StepKind]
    scope: str
    force: bool | tuple[str, ...]
    dry_run: bool
    reporter: Reporter
    quiet: Callable[[], ContextManager[Any]]
    log_error: Callable[[str], None]
    uses: contextlib.ExitStack

    def step(self, spec: StepSpec, upstream: Mapping[str, tuple[StepResult, str]]) -> StepResult:
        """Decide and do one step; `upstream` maps each input role to (its producer's result, output role)."""
        blocked = sorted({r.spec.name for r, _ in upstream.values() if r.status in (FAILED, SKIPPED)})
        if blocked:
            return StepResult(spec, SKIPPED, f"{', '.join(blocked)} did not build")
        pending = sorted({r.spec.name for r, _ in upstream.values() if r.status == TO_BUILD})
        if pending:  # a dry run cannot know the digests of outputs not yet built
            return StepResult(spec, TO_BUILD, f"after {', '.join(pending)} (its input may change)")

        kind = self.registry[spec.kind]
        input_digests = {role: r.output_digest(out_role) for role, (r, out_role) in upstream.items()}
        material = step_material(spec, kind, input_digests, self.cache.state.digest)
        key = cache_key(material)
        started = time.perf_counter()
        forced = self.force is True or (
            isinstance(self.force, tuple) and (spec.name in self.force or spec.kind in self.force)
        )
        outputs = {out.role: out.path for out in spec.outputs}
        self.uses.enter_context(self.cache.using(key))
        refused: str | None = None
        if not forced:
            entry, refused = self.cache.lookup(key, outputs)
            if entry is not None:
                if not self.dry_run:
                    self.cache.remember_material(self.scope, spec.name, material)
                return StepResult(spec, CACHED, "cached", key, time.perf_counter() - started, entry.manifest["info"], entry)
        previous = self.cache.previous_material(self.scope, spec.name)
        reason = "forced" if forced else refused or explain_change(previous, material)
        if self.dry_run:
            return StepResult(spec, TO_BUILD, reason, key)
        inputs = {role: r.entry.output_path(out_role) for role, (r, out_role) in upstream.items()}  # type: ignore[union-attr]
        with self.cache.locked(key, on_wait=lambda: self.reporter.step_waiting(spec)):
            # Whoever held the lock may just have built this very key: take theirs.
            entry, _ = (None, None) if forced else self.cache.lookup(key, outputs)
            if entry is not None:
                self.cache.remember_material(self.scope, spec.name, material)
                return StepResult(spec, CACHED, "built meanwhile by another tfbuild", key,
                                  time.perf_counter() - started, entry.manifest["info"], entry)
            result = self._build(spec, kind, material, key, reason, inputs, replace=forced)
        if result.status == BUILT:
            self.cache.remember_material(self.scope, spec.name, material)
        return result

    def _build(
        self, spec: StepSpec, kind: StepKind, material: dict[str, Any], key: str, reason: str, inputs: dict[str, Path],
        *, replace: bool,
    ) -> StepResult:
        """Run the step into a private folder and commit it; `replace` (a forced build) puts
        the new entry in place of an existing one rather than keeping that."""
        started = time.perf_counter()
        tmp = self.cache.begin(key)
        progress = self.reporter.step_started(spec, reason)
        try:
            ctx = StepContext(
                spec=spec,
                params=spec.params,
                inputs=inputs,
                files={role: Path(path) for role, path in spec.files.items()},
                outputs={out.role: tmp / "out" / out.path for out in spec.outputs},
                progress=progress,
            )
            with self.quiet():
                info = kind.run(ctx) or {}
            seconds = time.perf_counter() - started
            manifest = {"key": key, "name": spec.name, "material": material, "info": info,
                        "seconds": round(seconds, 3), "outputs": _output_records(spec, tmp),
                        "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            entry = self.cache.commit(tmp, key, manifest, replace=replace)
        except Exception as exc:  # a step's failure is reported as the step's, never as a crash
            self.cache.abort(tmp)
            self.log_error(f"step '{spec.name}' failed:\n{traceback.format_exc()}")
            bad_input = isinstance(exc, TfbuildError)
            error = str(exc) if bad_input else _one_line(exc)
            return StepResult(spec, FAILED, reason, key, time.perf_counter() - started, error=error, bad_input=bad_input)
        except BaseException:  # Ctrl-C: leave no temp folder behind, then stop
            self.cache.abort(tmp)
            raise
        return StepResult(spec, BUILT, reason, key, seconds, info, entry)


def step_material(
    spec: StepSpec, kind: StepKind, inputs: Mapping[str, str], file_digest: Callable[[Path], str]
) -> dict[str, Any]:
    """A step's key material, given its input artifacts' digests. Shared with pinned builds,
    which key the data step (no inputs) before any work exactly as the runner will."""
    files = {role: file_digest(Path(path)) for role, path in spec.files.items()}
    return key_material(spec.kind, kind.version, spec.params, inputs, files, kind.tools)


def _output_records(spec: StepSpec, tmp: Path) -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    for out in spec.outputs:
        path = tmp / "out" / out.path
        if not path.exists():
            raise RuntimeError(f"the step did not write its output '{out.path}'")
        if any(p.is_symlink() for p in [path, *(path.rglob("*") if path.is_dir() else ())]):
            raise RuntimeError(f"the step left a symlink in its output '{out.path}' (a cache entry holds files only)")
        files = tree_files(path)
        if not files:  # an entry with an empty output could not be told from a damaged one
            raise RuntimeError(f"the step wrote no files in its output '{out.path}'")
        records[out.role] = {
            "artifact": out.artifact,
            "path": out.path,
            "sha256": tree_digest(files),
            "bytes": sum(f.bytes for f in files),
            "files": [vars(f) for f in files],
        }
    return records


def publish(result: StepResult, run_dir: Path) -> None:
    """Copy (reflink where possible) a step's user-facing outputs into the run folder."""
    assert result.entry is not None
    for out in result.spec.outputs:
        if out.publish is not None:
            publish_tree(result.entry.output_path(out.role), run_dir / out.publish)


# MLIR's source locations, nested up to three levels: loc(callsite(fused[...] at ...)).
_MLIR_LOCATION = re.compile(r"loc\((?:[^()]|\((?:[^()]|\([^()]*\))*\))*\):?\s*")


def _one_line(exc: BaseException) -> str:
    """TensorFlow's own message, on one line. Converter errors bury the cause ("'tf.X' op is
    neither a custom op nor a flex op") under MLIR locations and notes: those are dropped."""
    lines = [line for line in str(exc).splitlines() if not line.startswith("<unknown>:0: note:")]
    tidy = _MLIR_LOCATION.sub("", "\n".join(lines)).replace("<unknown>:0: ", "")
    text = " ".join(tidy.split()) or type(exc).__name__
    limit = 400
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}"
