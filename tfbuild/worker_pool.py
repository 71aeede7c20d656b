"""Worker processes that build steps, several at once (`jobs=N`); the runner's Executor.

Each worker is a fresh interpreter (`python -c`, started like multiprocessing's 'spawn';
never a fork: the parent may hold threads, rich's refresh thread or a browser driver's
readers) that builds one step at a time and keeps what it imported, so TensorFlow is
imported once per worker, not once per step. It is started with subprocess rather than
multiprocessing: 'spawn' re-imports the parent's main script and copies the parent's start
method, which breaks inside Hydra's joblib launcher (its workers' method, 'loky', does not
exist in a plain child). The pool starts its
workers on the first job only: a build where everything is cached starts none. Started,
a worker imports TensorFlow while it has nothing to do (the way every step imports it,
tfenv.import_tensorflow), so the import overlaps the work of the others.

One pipe per worker carries jobs down and, back up, the step's progress calls (forwarded to
the runner's reporter) and its outcome. A worker that dies mid-step (the OOM killer, a
crash in native code) fails that step with one line; the pool replaces it on the next job.
Workers ignore Ctrl-C: the main process decides, ends them, then removes their unfinished
work. A pool outlives one build (a sweep's jobs reuse it); `close()` ends it, and with it
whatever its workers keep per process (a shared Chromium ends at the worker's exit).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ContextManager

from .step_job import Job, Outcome, run_job
from .steps.base import Progress
from .tfenv import environment_numerics, started_otherwise

if TYPE_CHECKING:  # multiprocessing is imported when workers start: a cached build needs none
    from multiprocessing.connection import Connection

STOP_S = 10.0  # how long a closing pool waits for an idle worker to exit before ending it
# What a worker process runs: the parent's import path first, so that it imports tfbuild, the
# user's builders and step kinds (a test's) from where the parent did.
WORKER = ("import json, sys; sys.path[:] = json.loads(sys.argv[2]); "
          "from tfbuild.worker_pool import serve; serve(int(sys.argv[1]))")


def job_count(jobs: int | None) -> int:
    """`jobs` as configured; null means one per CPU this process may use."""
    if jobs is not None:
        return jobs
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(eq=False)
class _Worker:
    process: subprocess.Popen
    conn: Connection
    step: str | None = None  # the step it builds now
    progress: Progress | None = None
    warm: bool = False  # it said it has imported what steps need (TensorFlow)
    # Since when an idle worker that is not warm has been importing (it does once idle)
    warming_since: float = field(default_factory=time.monotonic)
    ran: bool = False  # it was given a step
    since: float = 0.0  # when it was given the step it builds now


def _import_tensorflow() -> None:
    from .tfenv import import_tensorflow

    import_tensorflow()


class WorkerPool:
    """Up to `size` steps built at once, each in a worker process. `preload` runs in each
    worker while it is idle, before its first job if it has none waiting (None: nothing)."""

    def __init__(self, size: int, preload: Callable[[], Any] | None = _import_tensorflow) -> None:
        if size < 1:
            raise ValueError(f"a worker pool needs at least one worker, got {size}")
        self.slots = size
        self._preload = preload
        self._workers: list[_Worker] = []
        self._ended: list[tuple[str, Outcome]] = []
        self._keepers: dict[str, _Worker] = {}  # affinity -> the worker that keeps that runtime
        # TensorFlow's threads and oneDNN as the build set them (tfenv.set_for_plan): the
        # workers start with them, and a build that sets others needs other workers.
        self.numerics = environment_numerics()

    @property
    def started(self) -> int:
        """Workers alive now (for tests and the curious)."""
        return sum(1 for w in self._workers if w.process.poll() is None)

    def has_room(self, affinity: str | None) -> bool:
        """Whether a step with this affinity may start now: not while the worker that keeps its
        runtime is busy (the runner checks that a slot is free)."""
        keeper = self._keeper(affinity)
        return keeper is None or keeper.step is None

    def submit(self, name: str, job: Job, progress: Progress) -> None:
        if not self._workers:  # the first job starts them all: their TensorFlow imports overlap
            self._workers = [self._spawn(job.quiet) for _ in range(self.slots)]
        keeper = self._keeper(job.affinity)
        worker = keeper if keeper is not None and keeper.step is None else self._idle_worker(job.quiet)
        if job.affinity is not None:
            self._keepers[job.affinity] = worker
        try:
            worker.conn.send(job)  # pickled whole before a byte is written
        except Exception as error:  # noqa: BLE001 - the worker died while idle (OSError), or the job does not pickle
            why = f"could not hand the step to a worker process ({type(error).__name__}: {error})"
            self._ended.append((name, _failed(why)))
            if isinstance(error, OSError):
                self._discard(worker)
            return
        worker.step, worker.progress, worker.ran, worker.since = name, progress, True, time.perf_counter()
        worker.warming_since = float("inf")  # a cold worker imports in the step, or after it

    def wait(self, timeout: float | None) -> list[tuple[str, Outcome]]:
        from multiprocessing.connection import wait

        busy = [w for w in self._workers if w.step is not None]
        if busy and not self._ended:
            ready = wait([w.conn for w in busy], timeout)  # a message, or the end of the pipe: a death
            for worker in busy:
                if worker.conn in ready:
                    self._receive(worker)
        elif not self._ended and timeout:
            time.sleep(timeout)
        ended, self._ended = self._ended, []
        return ended

    def abort(self) -> None:
        """End the workers that are building now (their jobs' folders are the caller's to remove)."""
        for worker in [w for w in self._workers if w.step is not None]:
            _end(worker.process)
            self._discard(worker)

    def close(self) -> None:
        """End every worker: those that ran a step exit by themselves (their exit handlers end
        what they kept, a shared Chromium); one that never did is still importing at most."""
        self.abort()
        for worker in self._workers:
            if not worker.ran:
                _end(worker.process)
                continue
            try:
                worker.conn.send(None)
            except OSError:
                pass
        for worker in self._workers:
            _end(worker.process, STOP_S)
            worker.conn.close()
        self._workers = []

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self, quiet: Callable[[], ContextManager[Any]]) -> _Worker:
        from multiprocessing.connection import Pipe

        ours, theirs = Pipe()  # a socket pair: the worker's end is inherited by its number
        try:
            environment = {**os.environ, **{k: v for k, v in self.numerics.items() if v is not None}}
            process = subprocess.Popen([sys.executable, "-c", WORKER, str(theirs.fileno()), json.dumps(sys.path)],
                                       pass_fds=(theirs.fileno(),), env=environment)  # fmt: skip
        finally:
            theirs.close()
        ours.send((quiet, self._preload))
        return _Worker(process, ours)

    def _idle_worker(self, quiet: Callable[[], ContextManager[Any]]) -> _Worker:
        for worker in [w for w in self._workers if w.step is None and w.process.poll() is not None]:
            self._discard(worker)  # died while idle (killed): replaced below
        idle = [w for w in self._workers if w.step is None]
        if not idle:
            self._workers.append(self._spawn(quiet))
            idle = self._workers[-1:]
        for worker in idle:
            self._receive(worker)  # has it said it is warm?
        # A warm worker; else the one whose import began first (a step waits for it less).
        return min(idle, key=lambda w: (not w.warm, w.warming_since))

    def _receive(self, worker: _Worker) -> None:
        """Handle what `worker` sent; its death, if it died before its outcome."""
        try:
            while worker.conn.poll():
                kind, *payload = worker.conn.recv()
                if kind == "progress" and worker.progress is not None:
                    method, args = payload
                    call = getattr(worker.progress, method, None)
                    if call is not None:  # a reporter without that call shows less, never fails
                        call(*args)
                elif kind == "warm":
                    worker.warm = True
                elif kind == "done":
                    self._ended.append((worker.step, payload[0]))  # type: ignore[arg-type]
                    worker.step = worker.progress = None
                    worker.warming_since = time.monotonic()
                    return
        except (EOFError, OSError):  # its end of the pipe closed: it died (idle: replaced when needed)
            if worker.step is not None:
                _end(worker.process, STOP_S)
                died = _failed(_death(worker.process.returncode), time.perf_counter() - worker.since)
                self._ended.append((worker.step, died))
                self._discard(worker)

    def _keeper(self, affinity: str | None) -> _Worker | None:
        keeper = self._keepers.get(affinity) if affinity is not None else None
        return keeper if keeper in self._workers and keeper.process.poll() is None else None

    def _discard(self, worker: _Worker) -> None:
        worker.conn.close()
        self._workers.remove(worker)


class Pools:
    """The worker pool of a process whose builds run one after another (a sweep's jobs): made
    by the first build that asks for more than one job, reused by the next ones (TensorFlow
    imported once a sweep, not once a job), replaced when a build asks for another size, or
    for other TensorFlow threads or oneDNN (train.threads, train.onednn: fixed at its import).
    Its owner (the CLI's main) closes it, with `close()` or `with`."""

    def __init__(self) -> None:
        self._pool: WorkerPool | None = None

    def for_jobs(self, jobs: int) -> WorkerPool | None:
        """The pool for a build of `jobs` jobs; None for one job (built in this process), unless
        this process's TensorFlow runs with other threads or oneDNN than the build sets."""
        if self._pool is not None and (self._pool.slots != jobs or self._pool.numerics != environment_numerics()):
            self._pool.close()
            self._pool = None
        # One job builds in this process, unless TensorFlow runs here with other threads or
        # oneDNN than this build's (fixed at its import): then in one fresh worker.
        if (jobs > 1 or started_otherwise()) and self._pool is None:
            self._pool = WorkerPool(jobs)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> "Pools":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _failed(message: str, seconds: float = 0.0) -> Outcome:
    return Outcome(seconds, error=message, traceback=message + "\n")


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (out of memory?)" if -exitcode == signal.SIGKILL else ""
        return f"the worker process building it was killed by {name}{hint}"
    return f"the worker process building it exited with code {exitcode}"


def _end(process: subprocess.Popen, wait_s: float = 0.0) -> None:
    """`process` gone: after `wait_s` for it to exit by itself, terminated, then killed."""
    for stop in (None, process.terminate, process.kill):
        if stop is not None and process.poll() is None:
            stop()
        try:
            process.wait(wait_s if stop is None else 2.0)
            return
        except subprocess.TimeoutExpired:
            continue


class _ForwardedProgress:
    """A step's progress calls, sent to the main process's reporter as they happen. Any method
    name is forwarded (start, advance, and whatever Progress grows), arguments pickled."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def __getattr__(self, method: str) -> Callable[..., None]:
        if method.startswith("_"):
            raise AttributeError(method)
        return lambda *args: self._conn.send(("progress", method, args))


def serve(fd: int) -> None:
    """A worker's life (WORKER runs it): build the jobs that come on the connection `fd`, until
    told to stop or the pipe closes; then run the exit handlers (they end what steps kept: a
    shared Chromium) and exit at once: an interpreter with TensorFlow loaded takes most of a
    second to tear itself down."""
    from multiprocessing.connection import Connection

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    code = 0
    try:
        conn = Connection(fd)
        quiet, preload = conn.recv()
        _build_jobs(conn, quiet, preload)
    except BaseException:  # a bug here: say it where the worker's output goes, then exit
        traceback.print_exc()
        code = 1
    finally:
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)


def _build_jobs(conn: Connection, quiet: Callable[[], ContextManager[Any]], preload: Callable[[], Any] | None) -> None:
    progress = _ForwardedProgress(conn)
    while True:
        if preload is not None and not conn.poll():  # idle: import TensorFlow now, not in the next step
            with quiet():
                preload()
            preload = None
            conn.send(("warm",))
        try:
            job = conn.recv()
        except EOFError:  # the main process is gone
            return
        except Exception as error:  # noqa: BLE001 - a job that does not unpickle here (a class not importable)
            conn.send(("done", _failed(f"the worker process could not read the step ({type(error).__name__}: {error})")))
            continue
        if job is None:
            return
        outcome = run_job(job, progress)
        try:
            conn.send(("done", outcome))
        except OSError:  # the main process is gone
            return
