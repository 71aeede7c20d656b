"""The registry of step kinds. Explicit on purpose: what can run is listed in one place.

Step modules import TensorFlow (and NumPy) inside `run()` only, so importing this registry
is cheap enough for a fully cached build.
"""

from __future__ import annotations

from .base import StepKind
from .benchmark import BenchmarkStep
from .data import DataStep
from .generated import GeneratedDataStep
from .optimize import OptimizeStep
from .reference import ReferenceStep
from .saved_model import SavedModelStep
from .tflite import TfliteStep
from .tfjs import TfjsStep
from .train import TrainStep
from .verify import VerifyStep

REGISTRY: dict[str, StepKind] = {
    step.kind: step
    for step in (
        DataStep(),
        GeneratedDataStep(),
        TrainStep(),
        OptimizeStep(),
        SavedModelStep(),
        TfliteStep(),
        TfjsStep(),
        ReferenceStep(),
        VerifyStep(),
        BenchmarkStep(),
    )
}
