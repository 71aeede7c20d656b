"""Fake step kinds for the parallel runner's tests: no TensorFlow, importable by worker
processes (a spawned worker unpickles them by module path), and an executor that runs jobs
on threads so that tests can meet steps at barriers without timing anything."""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from pathlib import Path
from typing import Any

from tfbuild.step_job import Job, Outcome, run_job
from tfbuild.steps.base import Progress, StepContext

WAIT_S = 30.0  # longest a test step waits for its partner before it fails the test


class MeetStep:
    """Writes its text like tests.fakes.WriteStep, but first waits, in whatever process it
    runs, until every step named in its `meet` param has started too (marker files in the
    `folder` param): steps that do not run at the same time fail, on a timeout."""

    kind = "meet"
    version = 1
    tools = ("pytest",)

    def run(self, ctx: StepContext) -> dict[str, Any]:
        folder = Path(ctx.params["folder"])
        (folder / f"{ctx.spec.name}.started").write_text(str(os.getpid()))
        deadline = time.monotonic() + WAIT_S
        while not all((folder / f"{other}.started").exists() for other in ctx.params["meet"]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{ctx.spec.name} never ran beside {ctx.params['meet']}")
            time.sleep(0.01)
        for path in ctx.outputs.values():
            path.write_text(f"{ctx.spec.name}|{os.getpid()}")
        return {"pid": os.getpid()}


class DieStep:
    """Kills its own process, as the OOM killer would (SIGKILL: no handler, no cleanup)."""

    kind = "die"
    version = 1
    tools = ("pytest",)

    def run(self, ctx: StepContext) -> dict[str, Any]:
        for path in ctx.outputs.values():
            path.write_text("half-written")
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")


class InterruptStep:
    """Once the step named by its `after` param has started (if any), starts its progress
    (the test's reporter raises Ctrl-C's KeyboardInterrupt there, in the main process), then
    waits; run in this process, it raises KeyboardInterrupt itself."""

    kind = "interrupt"
    version = 1
    tools = ("pytest",)

    def run(self, ctx: StepContext) -> dict[str, Any]:
        for path in ctx.outputs.values():
            path.write_text("half-written")
        if "after" in ctx.params:
            _wait_for(Path(ctx.params["folder"]) / f"{ctx.params['after']}.started")
        ctx.progress.start(1, "started")
        if "folder" in ctx.params:
            _wait_for(Path(ctx.params["folder"]) / "never")
        raise KeyboardInterrupt


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


class PrintStep:
    """Writes to file descriptors 1 and 2 as TensorFlow's C++ does, then its output."""

    kind = "print"
    version = 1
    tools = ("pytest",)

    def run(self, ctx: StepContext) -> dict[str, Any]:
        os.write(1, b"native noise on fd 1\n")
        os.write(2, b"native noise on fd 2\n")
        for path in ctx.outputs.values():
            path.write_text(ctx.spec.name)
        return {}


class ThreadExecutor:
    """The runner's Executor on threads: jobs share this process, so steps can meet at a
    threading.Barrier and count their runs in one Counter."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._ended: queue.Queue[tuple[str, Outcome]] = queue.Queue()

    def submit(self, name: str, job: Job, progress: Progress) -> None:
        threading.Thread(target=lambda: self._ended.put((name, run_job(job, progress))), daemon=True).start()

    def wait(self, timeout: float | None) -> list[tuple[str, Outcome]]:
        try:
            ended = [self._ended.get(timeout=timeout) if timeout != 0 else self._ended.get_nowait()]
        except queue.Empty:
            return []
        while not self._ended.empty():
            ended.append(self._ended.get_nowait())
        return ended

    def abort(self) -> None:
        pass


class BarrierStep:
    """Writes like WriteStep after meeting the other steps at a threading.Barrier (threads only)."""

    kind = "barrier"
    version = 1
    tools = ("pytest",)

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=WAIT_S)

    def run(self, ctx: StepContext) -> dict[str, Any]:
        self.barrier.wait()  # BrokenBarrierError (the step fails) unless all parties run at once
        for path in ctx.outputs.values():
            path.write_text(ctx.spec.name)
        return {}


class KeeperStep:
    """Writes the id of the process it ran in; its `affinity` param is its kind's affinity
    (the name of a runtime it would keep in that process, as TF.js steps keep a Chromium)."""

    kind = "keeper"
    version = 1
    tools = ("pytest",)

    def affinity(self, spec: Any) -> str | None:
        return spec.params.get("affinity")

    def run(self, ctx: StepContext) -> dict[str, Any]:
        for path in ctx.outputs.values():
            path.write_text(f"{ctx.spec.name}|{os.getpid()}")
        return {"pid": os.getpid()}
