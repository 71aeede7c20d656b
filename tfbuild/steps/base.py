"""The step protocol: what a kind of step declares and what it receives when it runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol

from ..plan import StepSpec


class Progress(Protocol):
    """Where long steps report progress (training epochs); the runner draws it.

    Arguments are plain numbers and strings: a step running in a worker process may have its
    calls forwarded to the main process, so they must pickle and stay few (a step sends an
    update at most about ten times a second; see training.fit.EpochProgress).

    - start(total, description): a new bar of `total` units (epochs, stages).
    - advance(description): one unit done. On a terminal the bar moves to the unit's end; in
      a log (CI) `description` is printed as a line, so a log gets one line per unit.
    - update(completed, total, description): a finer position, `completed` of `total` in any
      unit (batches of the whole training). Terminal only: a log prints nothing for it.
    """

    def start(self, total: int, description: str) -> None: ...

    def advance(self, description: str | None = None) -> None: ...

    def update(self, completed: float, total: float, description: str | None = None) -> None: ...


class NoProgress:
    def start(self, total: int, description: str) -> None:
        pass

    def advance(self, description: str | None = None) -> None:
        pass

    def update(self, completed: float, total: float, description: str | None = None) -> None:
        pass


@dataclass
class StepContext:
    spec: StepSpec
    params: Mapping[str, Any]
    inputs: Mapping[str, Path]  # role -> a file or folder inside a cache entry (read-only use)
    files: Mapping[str, Path]  # role -> an external file the key was computed over
    outputs: Mapping[str, Path]  # role -> where to write (inside a private temp folder)
    progress: Progress = field(default_factory=NoProgress)


class StepKind(Protocol):
    """A kind of build step. `run` returns the `info` recorded in build.json.

    `version` is part of every cache key: bump it when the step's output would change for the
    same inputs. `tools` are the distributions whose installed versions also enter the key.
    Implementations import TensorFlow inside `run` only, so planning and cache hits stay fast.
    A kind may also set `exclusive = True` (read with getattr, default False): its steps time
    something, so none runs beside another step when several are built at once.
    And `affinity(spec) -> str | None`: the name of a runtime the step keeps in its process
    for the next steps that name it (TF.js's one Chromium): a worker pool builds all of them
    in the same worker, one after another, so that runtime starts once.
    And `machine(spec) -> dict | None`: what of this machine the step's bytes depend on
    (machine.key_entry: the CPU family, the GPU), which then enters its key; None or no such
    method: nothing (the step makes the same bytes everywhere).
    `run` may run in a worker process (jobs > 1): the kind and its context must pickle, and
    what it keeps per process (a browser session) ends when that process does.
    """

    kind: str
    version: int
    tools: tuple[str, ...]

    def run(self, ctx: StepContext) -> dict[str, Any]: ...
