"""The registry of step kinds. Explicit on purpose: what can run is listed in one place, the
engine's own steps here and each format's conversion steps in its module (tfbuild/formats/).

Step modules import TensorFlow (and NumPy) inside `run()` only, so importing this registry
is cheap enough for a fully cached build.
"""

from __future__ import annotations

from typing import Iterator, Mapping

from .base import StepKind
from .benchmark import BenchmarkStep
from .data import DataStep
from .generated import GeneratedDataStep
from .optimize import OptimizeStep
from .reference import ReferenceStep
from .saved_model import SavedModelStep
from .train import TrainStep
from .verify import VerifyStep

ENGINE_STEPS: tuple[StepKind, ...] = (
    DataStep(),
    GeneratedDataStep(),
    TrainStep(),
    OptimizeStep(),
    SavedModelStep(),
    ReferenceStep(),
    VerifyStep(),
    BenchmarkStep(),
)


class _Registry(Mapping[str, StepKind]):
    """kind -> step: the engine's steps, then every registered format's (read when asked, so a
    format registered later, e.g. by a test, is there too)."""

    def _kinds(self) -> dict[str, StepKind]:
        from ..formats import FORMATS  # formats import steps.base: not at module import time

        steps = [*ENGINE_STEPS, *(step for fmt in FORMATS.values() for step in fmt.steps)]
        return {step.kind: step for step in steps}

    def __getitem__(self, kind: str) -> StepKind:
        return self._kinds()[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds())

    def __len__(self) -> int:
        return len(self._kinds())


REGISTRY: Mapping[str, StepKind] = _Registry()
