"""The step protocol: what a kind of step declares and what it receives when it runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol

from ..plan import StepSpec


class Progress(Protocol):
    """Where long steps report progress (training epochs); the runner draws it."""

    def start(self, total: int, description: str) -> None: ...

    def advance(self, description: str | None = None) -> None: ...


class NoProgress:
    def start(self, total: int, description: str) -> None:
        pass

    def advance(self, description: str | None = None) -> None:
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
    `run` may run in a worker process (jobs > 1): the kind and its context must pickle, and
    what it keeps per process (a browser session) ends when that process does.
    """

    kind: str
    version: int
    tools: tuple[str, ...]

    def run(self, ctx: StepContext) -> dict[str, Any]: ...
