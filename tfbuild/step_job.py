"""One build of one step as a picklable job: run the step into its private folder and describe
what it wrote; and where jobs run (Executor): here, one at a time (InlineExecutor, jobs=1),
or in worker processes (worker_pool.WorkerPool). `run_job` is the same in both, so a step
cannot tell the two apart.

The cache is the main process's alone: it opens the private folder (`Cache.begin`) before the
job and seals or removes it (`Cache.commit` / `Cache.abort`) after, whatever the job did. The
job only writes inside that folder and hashes what it wrote (the slow part, done in parallel).
"""

from __future__ import annotations

import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Mapping, Protocol

from . import discovered
from .digests import tree_digest, tree_files
from .errors import TfbuildError
from .plan import StepSpec
from .steps.base import Progress, StepContext, StepKind


@dataclass(frozen=True)
class Job:
    spec: StepSpec
    kind: StepKind
    inputs: Mapping[str, Path]  # role -> a file or folder inside a committed cache entry
    tmp: Path  # the private folder from Cache.begin; outputs go under tmp/out/
    # Wraps the step's work (the CLI sends native output to build.log with it). Picklable when
    # the job goes to a worker: a module-level function or a functools.partial of one.
    quiet: Callable[[], ContextManager[Any]]
    # A runtime the step keeps in its process for the next ones that name it (one Chromium):
    # a worker pool gives all of them to the same worker (StepKind.affinity).
    affinity: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What a job did: `info` and `outputs` (the manifest's records) when it succeeded;
    otherwise `error` on one line and the full `traceback` for the log."""

    seconds: float
    info: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None
    bad_input: bool = False  # it failed on what the user gave it (a TfbuildError), not a bug
    traceback: str = ""
    # What it read besides its declared inputs (discovered.record): the manifest keeps it.
    discovered: dict[str, Any] = field(default_factory=dict)


def run_job(job: Job, progress: Progress) -> Outcome:
    """Run `job`; an exception in the step is its outcome, never raised. KeyboardInterrupt and
    other BaseExceptions go through: the caller aborts the private folder and stops."""
    started = time.perf_counter()
    spec = job.spec
    reads = None
    try:
        ctx = StepContext(
            spec=spec,
            params=spec.params,
            inputs=job.inputs,
            files={role: Path(path) for role, path in spec.files.items()},
            outputs={out.role: job.tmp / "out" / out.path for out in spec.outputs},
            progress=progress,
        )
        scope = discovered.scope_for(spec.kind, spec.files, job.tmp.parent.parent, [*job.inputs.values(), job.tmp])
        with job.quiet(), discovered.recording(scope) as reads:
            info = job.kind.run(ctx) or {}
        read = discovered.record(reads)  # a refused read fails the step even if it was swallowed
        seconds = time.perf_counter() - started
        return Outcome(seconds, info, output_records(spec, job.tmp), discovered=read)
    except Exception as exc:  # a step's failure is reported as the step's, never as a crash
        if reads is not None and reads.refused:  # whatever the step made of the refusal, it is the cause
            exc = discovered.UndeclaredRead(discovered.refusal(reads.scope, reads.refused[0]))
        bad_input = isinstance(exc, TfbuildError)
        return Outcome(time.perf_counter() - started, error=str(exc) if bad_input else one_line(exc),
                       bad_input=bad_input, traceback=traceback.format_exc())  # fmt: skip
    finally:
        if reads is not None:
            discovered.append_log(spec.name, reads)


def output_records(spec: StepSpec, tmp: Path) -> dict[str, dict[str, Any]]:
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


class Executor(Protocol):
    """Where jobs run. `slots`: how many at once. `submit` hands one over; `wait` returns the
    (step name, outcome) of jobs that ended, blocking up to `timeout` seconds (None: until one
    does) and forwarding their progress calls meanwhile; `abort` ends running jobs at once
    (after it returns none writes any more). Optional: `has_room(affinity) -> bool`, whether
    a job with that affinity (Job.affinity) may start now; without it, always."""

    slots: int

    def submit(self, name: str, job: Job, progress: Progress) -> None: ...

    def wait(self, timeout: float | None) -> list[tuple[str, Outcome]]: ...

    def abort(self) -> None: ...


class InlineExecutor:
    """Runs each job in this process when it is submitted: the sequential build (jobs=1)."""

    slots = 1

    def __init__(self) -> None:
        self._ended: list[tuple[str, Outcome]] = []

    def submit(self, name: str, job: Job, progress: Progress) -> None:
        self._ended.append((name, run_job(job, progress)))

    def wait(self, timeout: float | None) -> list[tuple[str, Outcome]]:
        ended, self._ended = self._ended, []
        if not ended and timeout:
            time.sleep(timeout)
        return ended

    def abort(self) -> None:
        pass


# MLIR's source locations, nested up to three levels: loc(callsite(fused[...] at ...)).
_MLIR_LOCATION = re.compile(r"loc\((?:[^()]|\((?:[^()]|\([^()]*\))*\))*\):?\s*")


def one_line(exc: BaseException) -> str:
    """TensorFlow's own message, on one line. Converter errors bury the cause ("'tf.X' op is
    neither a custom op nor a flex op") under MLIR locations and notes: those are dropped."""
    lines = [line for line in str(exc).splitlines() if not line.startswith("<unknown>:0: note:")]
    tidy = _MLIR_LOCATION.sub("", "\n".join(lines)).replace("<unknown>:0: ", "")
    text = " ".join(tidy.split()) or type(exc).__name__
    limit = 400
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}"
