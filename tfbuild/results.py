"""What a build says about each step: its status, reason, timing and entry; and the reporter
protocol that hears it as it happens (the terminal's, tests')."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .cache import Entry
from .plan import StepSpec
from .steps.base import NoProgress, Progress

BUILT, CACHED, FAILED, SKIPPED, TO_BUILD = "built", "cached", "failed", "skipped", "to build"
NOT_NEEDED = "not needed"  # a step that runs only if another fails, when that one did not
DOWNLOADED = "downloaded from the remote cache"  # the reason of a CACHED step the remote served


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

    # Optional: called once when the walk ends, however it ends (a live display stops here).
    # def build_ended(self) -> None: ...


class SilentReporter:
    def step_started(self, spec: StepSpec, reason: str) -> Progress:
        return NoProgress()

    def step_waiting(self, spec: StepSpec) -> None:
        pass

    def step_finished(self, result: StepResult) -> None:
        pass
