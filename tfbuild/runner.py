"""Walk a plan: reuse each step from the cache when its key is there, build it otherwise.

Every step ends with a status (built, cached, failed, skipped; in a dry run: cached or
to build) and a reason. A failed step skips the steps that depend on it; the others still
run (like `make -k`), so one broken variant does not hide the state of the rest.

The plan is walked as a graph: a step is decided (its key, a cache lookup: cheap, no
TensorFlow) as soon as the steps it reads from are done, and the steps that must be built
go to an executor. The inline executor builds them here, one at a time, in plan order;
a WorkerPool (worker_pool.py) builds up to `jobs` at once in worker processes. The cache
stays this process's: it opens each step's private folder, and seals it or removes it
whatever happened to the job (a failure, a worker killed, Ctrl-C), so nothing half-written
is ever served.
"""

from __future__ import annotations

import contextlib
import heapq
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, ContextManager, Mapping

from .cache import Cache, Entry, cache_key
from .human import human_bytes
from .keys import explain_change, key_material
from .plan import Plan, StepSpec
from .remote_sync import RemoteSync
from .results import (BUILT, CACHED, DOWNLOADED, FAILED, NOT_NEEDED, SKIPPED, TO_BUILD, BuildResult, Reporter,
                      SilentReporter, StepResult)  # fmt: skip
from .run_folder import RunFolder
from .step_job import Executor, InlineExecutor, Job, Outcome, one_line
from .steps.base import StepKind

__all__ = ["BUILT", "CACHED", "FAILED", "NOT_NEEDED", "SKIPPED", "TO_BUILD", "BuildResult", "Reporter", "SilentReporter",
           "StepResult", "publish", "run_plan", "step_material"]  # fmt: skip

LOCK_POLL_S = 0.2  # how often a step whose key another tfbuild is building looks again
SHOW_DOWNLOAD_BYTES = 256 << 10  # smaller downloads get no line of their own


def run_plan(
    plan: Plan,
    cache: Cache,
    registry: Mapping[str, StepKind],
    *,
    run_dir: Path | RunFolder | None = None,
    scope: str = "",
    force: bool | tuple[str, ...] = False,
    dry_run: bool = False,
    reporter: Reporter | None = None,
    quiet: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
    log_error: Callable[[str], None] = lambda text: None,
    workers: Executor | None = None,
    remote: RemoteSync | None = None,
) -> BuildResult:
    """Build `plan`, publishing user-facing artifacts into `run_dir`.

    `run_dir`: a RunFolder its caller holds (and finishes), or a folder to hold for this walk
    (refused if another build holds it or it would publish over the user's files). `scope`
    (the recipe) names whose previous build a step is compared with to explain a
    rebuild. `quiet` wraps each step's work wherever it runs (the CLI sends TensorFlow's
    noise to a log file with it): with `workers` it must pickle (a module-level function or
    a functools.partial of one). `log_error` receives the full traceback of a failed step.
    `workers` builds steps (a WorkerPool: several at once, in its processes); None builds
    them here, one at a time, in plan order. `remote` is a shared cache looked in on a
    local miss (its entries are checked and committed locally before they are used).
    """
    reporter = reporter or SilentReporter()
    # Every entry this build uses stays locked against gc until the build ends.
    with contextlib.ExitStack() as uses:
        folder = run_dir if isinstance(run_dir, RunFolder) else None
        if isinstance(run_dir, Path) and not dry_run:  # held for this walk: nothing is removed before it ends
            folder = uses.enter_context(RunFolder.opened(run_dir, plan))
            folder.check_free(plan)
        walk = _Walk(plan, cache, registry, scope, force, dry_run, folder if not dry_run else None, reporter,
                     quiet, log_error, uses, workers or InlineExecutor(), remote)  # fmt: skip
        try:
            walk.run()
        finally:
            ended = getattr(reporter, "build_ended", None)
            if ended is not None:
                ended()
        if isinstance(run_dir, Path) and folder is not None:
            folder.finish()
    return BuildResult([walk.results[s.name] for s in plan.steps])


@dataclass
class _ToBuild:
    """A step decided to be built, from its decision until its job ends."""

    spec: StepSpec
    kind: StepKind
    key: str
    material: dict[str, Any]
    reason: str
    forced: bool
    inputs: dict[str, Path]
    started: float  # when it was decided: a wait for another tfbuild's lock counts
    affinity: str | None = None  # see StepKind.affinity
    waiting: bool = False  # another tfbuild holds its key's lock (reported once)
    lock: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    tmp: Path | None = None


class _LockBusy(Exception):
    pass


def _busy() -> None:
    raise _LockBusy  # from Cache.locked's on_wait: take the lock now or not at all


class _Walk:
    """One walk of the plan: decide ready steps in plan order, start builds as the executor
    has room, finish them as they end. With the inline executor this is the plan order
    exactly: each build ends before the next step is decided."""

    def __init__(self, plan: Plan, cache: Cache, registry: Mapping[str, StepKind], scope: str,
                 force: bool | tuple[str, ...], dry_run: bool, publish_to: RunFolder | None, reporter: Reporter,
                 quiet: Callable[[], ContextManager[Any]], log_error: Callable[[str], None],
                 uses: contextlib.ExitStack, executor: Executor, remote: RemoteSync | None) -> None:  # fmt: skip
        self.plan, self.cache, self.registry, self.scope = plan, cache, registry, scope
        self.force, self.dry_run, self.publish_to, self.reporter = force, dry_run, publish_to, reporter
        self.quiet, self.log_error, self.uses, self.executor = quiet, log_error, uses, executor
        self.remote = remote
        self.results: dict[str, StepResult] = {}
        self.index = {s.name: i for i, s in enumerate(plan.steps)}
        producers = plan.producers()
        self.upstream = {s.name: {role: producers[a] for role, a in s.inputs.items()} for s in plan.steps}
        # A step waits for the steps it reads from, and for the one whose failure alone runs it.
        self.blockers = {s.name: {name for name, _ in self.upstream[s.name].values()} for s in plan.steps}
        for s in plan.steps:
            if s.runs_if_failed:
                self.blockers[s.name].add(s.runs_if_failed)
        self.dependents: dict[str, list[str]] = {s.name: [] for s in plan.steps}
        for name, blockers in self.blockers.items():
            for blocker in blockers:
                self.dependents[blocker].append(name)
        self.ready = [self.index[name] for name, blockers in self.blockers.items() if not blockers]
        heapq.heapify(self.ready)
        self.queued: list[_ToBuild] = []  # decided to build, not started; in plan order
        self.running: dict[str, _ToBuild] = {}
        # Two steps may share a key (it is made of kind, params and inputs, not the name): the
        # later one is decided again once the earlier one's build ends, as it would be in turn.
        self.parked: dict[str, list[int]] = {}

    def run(self) -> None:
        try:
            while True:
                self._decide_ready()
                self._start_queued()  # may find a step built meanwhile, which readies others
                if self.ready:
                    continue
                if len(self.results) == len(self.plan.steps):
                    return
                if not self.running and not self.queued:
                    raise RuntimeError(f"no step can run, {len(self.results)} of {len(self.plan.steps)} done")
                # Block until a job ends; poll while a step waits for another tfbuild's lock.
                polling = not self.running or any(b.waiting for b in self.queued)
                for name, outcome in self.executor.wait(LOCK_POLL_S if polling else None):
                    self._ended(name, outcome)
        except BaseException:  # Ctrl-C, a bug: stop the jobs, then remove what they were writing
            self.executor.abort()
            for build in [*self.running.values(), *self.queued]:
                if build.tmp is not None:
                    self.cache.abort(build.tmp)
                build.lock.close()
            raise

    def _decide_ready(self) -> None:
        """Decide every ready step, lowest plan index first; start builds as they are decided
        and finish what already ended (the inline executor: at once), which readies more."""
        while self.ready:
            spec = self.plan.steps[heapq.heappop(self.ready)]
            decided = _unneeded(spec, self.results) or self._decide(spec)
            if isinstance(decided, StepResult):
                self._finish(decided)
                continue
            if any(b.key == decided.key for b in [*self.queued, *self.running.values()]):
                self.parked.setdefault(decided.key, []).append(self.index[spec.name])
                continue
            self.queued.append(decided)
            self.queued.sort(key=lambda b: self.index[b.spec.name])
            self._start_queued()
            for name, outcome in self.executor.wait(0):
                self._ended(name, outcome)

    def _decide(self, spec: StepSpec) -> StepResult | _ToBuild:
        """Reuse, skip or build `spec`; its upstream steps are all done."""
        upstream = {role: (self.results[name], out_role) for role, (name, out_role) in self.upstream[spec.name].items()}
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
        self.uses.enter_context(self.cache.using(key))
        refused: str | None = None
        if not forced:
            entry, refused = self.cache.lookup(key, _declared(spec))
            if entry is not None:
                if not self.dry_run:
                    self.cache.remember_material(self.scope, spec.name, material)
                return StepResult(spec, CACHED, "cached", key, time.perf_counter() - started, entry.manifest["info"], entry)
        previous = self.cache.previous_material(self.scope, spec.name)
        reason = "forced" if forced else refused or explain_change(previous, material)
        if self.dry_run:
            return StepResult(spec, TO_BUILD, reason, key)
        inputs = {role: r.entry.output_path(out_role) for role, (r, out_role) in upstream.items()}  # type: ignore[union-attr]
        affinity = getattr(kind, "affinity", None)
        return _ToBuild(spec, kind, key, material, reason, forced, inputs, started, affinity(spec) if affinity else None)

    def _start_queued(self) -> None:
        """Start queued builds while there is room. A step whose kind is `exclusive` (it times
        something) runs alone: it starts only when nothing runs, and nothing starts beside it;
        the others go first, so that it waits for no more than it must. A step with an affinity
        waits for the worker that keeps its runtime (the executor says)."""
        has_room = getattr(self.executor, "has_room", lambda affinity: True)
        for build in list(self.queued):
            if any(getattr(b.kind, "exclusive", False) for b in self.running.values()):
                return
            if len(self.running) >= self.executor.slots:
                return
            if getattr(build.kind, "exclusive", False) and (self.running or _startable_besides(build, self.queued)):
                continue
            if has_room(build.affinity):
                self._start(build)

    def _start(self, build: _ToBuild) -> None:
        spec = build.spec
        try:
            build.lock.enter_context(self.cache.locked(build.key, on_wait=_busy))
        except _LockBusy:  # another tfbuild builds this key: look again later, without blocking the rest
            if not build.waiting:
                build.waiting = True
                self.reporter.step_waiting(spec)
            return
        self.queued.remove(build)
        # Whoever held the lock may just have built this very key: take theirs.
        entry = None if build.forced else self.cache.lookup(build.key, _declared(spec))[0]
        reason = "built meanwhile by another tfbuild"
        if entry is None and not build.forced and self.remote is not None:
            entry, reason = self._download(build), DOWNLOADED
        if entry is not None:
            build.lock.close()
            self.cache.remember_material(self.scope, spec.name, build.material)
            self._finish(StepResult(spec, CACHED, reason, build.key, time.perf_counter() - build.started,
                                    entry.manifest["info"], entry))  # fmt: skip
            return
        self.running[spec.name] = build
        build.tmp = self.cache.begin(build.key)
        progress = self.reporter.step_started(spec, build.reason)
        self.executor.submit(spec.name, Job(spec, build.kind, build.inputs, build.tmp, self.quiet, build.affinity), progress)

    def _download(self, build: _ToBuild) -> Entry | None:
        """`build`'s entry from the remote cache (this process holds its key's lock), with the
        download shown as the step's progress; None when the remote cannot serve it."""
        assert self.remote is not None
        started: list[Any] = []

        def on_found(total: int) -> Callable[[int, int], None]:
            if total < SHOW_DOWNLOAD_BYTES:  # done in a blink: the summary table says it
                return lambda done, all_: None
            progress = self.reporter.step_started(build.spec, f"downloading {human_bytes(total)} from the remote cache")
            progress.start(1, "download")
            started.append(progress)
            return lambda done, all_: progress.update(done, all_, f"{human_bytes(done)} of {human_bytes(all_)}")

        entry = self.remote.download(build.key, build.spec.name, _declared(build.spec), on_found)
        if started and entry is None:  # the step is built after all: its line comes again
            self.reporter.step_finished(StepResult(build.spec, TO_BUILD, "remote copy refused", build.key))
        return entry

    def _ended(self, name: str, outcome: Outcome) -> None:
        """Seal a finished job's folder into the cache, or remove it; then finish the step."""
        build = self.running.pop(name)
        spec, key, tmp = build.spec, build.key, build.tmp
        assert tmp is not None
        result = StepResult(spec, FAILED, build.reason, key, outcome.seconds, error=outcome.error,
                            bad_input=outcome.bad_input)  # fmt: skip
        try:
            if outcome.error is None:
                manifest = {"key": key, "name": spec.name, "material": build.material, "info": outcome.info,
                            "seconds": round(outcome.seconds, 3), "outputs": outcome.outputs,
                            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            "discovered": outcome.discovered}  # fmt: skip
                entry = self.cache.commit(tmp, key, manifest, replace=build.forced)
                result = StepResult(spec, BUILT, build.reason, key, outcome.seconds, outcome.info, entry)
            else:
                self.cache.abort(tmp)
                self.log_error(f"step '{spec.name}' failed:\n{outcome.traceback}")
        except Exception as exc:  # sealing failed (a full disk): the step failed, nothing is left
            self.cache.abort(tmp)
            self.log_error(f"step '{spec.name}' failed:\n{traceback.format_exc()}")
            result = StepResult(spec, FAILED, build.reason, key, outcome.seconds, error=one_line(exc))
        finally:
            build.lock.close()
        if result.status == BUILT:
            self.cache.remember_material(self.scope, spec.name, build.material)
        self._finish(result)

    def _finish(self, result: StepResult) -> None:
        """Record a step's final result, publish it, and ready the steps that waited for it."""
        if result.status in (BUILT, CACHED) and self.publish_to is not None:
            result = _published(result, self.publish_to)
        name = result.spec.name
        self.results[name] = result
        self.reporter.step_finished(result)
        for index in self.parked.pop(result.key or "", []):
            heapq.heappush(self.ready, index)
        for dependent in self.dependents[name]:
            self.blockers[dependent].discard(name)
            if not self.blockers[dependent]:
                heapq.heappush(self.ready, self.index[dependent])


def _startable_besides(build: _ToBuild, queued: list[_ToBuild]) -> bool:
    """Whether a step other than `build` that need not run alone is queued (and not waiting
    for another tfbuild): it goes first."""
    return any(b is not build and not getattr(b.kind, "exclusive", False) and not b.waiting for b in queued)


def _declared(spec: StepSpec) -> dict[str, str]:
    return {out.role: out.path for out in spec.outputs}


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


def _published(result: StepResult, run_dir: RunFolder) -> StepResult:
    """`result`, its artifacts published; or, when the run folder refuses them (full disk,
    read-only folder, a file of the user's in the way), the step failed with that reason on one line."""
    try:
        publish(result, run_dir)
    except OSError as exc:
        error = f"cannot publish into the run folder: {exc.strerror or exc} ({run_dir.root})"
        return StepResult(result.spec, FAILED, result.reason, result.key, result.seconds, result.info, result.entry, error)
    return result


def step_material(
    spec: StepSpec, kind: StepKind, inputs: Mapping[str, str], file_digest: Callable[[Path], str]
) -> dict[str, Any]:
    """A step's key material, given its input artifacts' digests. Shared with pinned builds,
    which key the data step (no inputs) before any work exactly as the runner will."""
    files = {role: file_digest(Path(path)) for role, path in spec.files.items()}
    machine = getattr(kind, "machine", None)  # see StepKind.machine
    return key_material(spec.kind, kind.version, spec.params, inputs, files, kind.tools, machine(spec) if machine else None)


def publish(result: StepResult, run_dir: RunFolder) -> None:
    """Copy (reflink where possible) a step's user-facing outputs into the run folder."""
    assert result.entry is not None
    for out in result.spec.outputs:
        if out.publish is not None:
            digest = result.entry.manifest["outputs"][out.role]["sha256"]
            run_dir.publish(out.publish, result.entry.output_path(out.role), digest)
