"""The registry of step kinds. Explicit on purpose: what can run is listed in one place.

Step modules import TensorFlow (and NumPy) inside `run()` only, so importing this registry
is cheap enough for a fully cached build.
"""

from __future__ import annotations

from .base import StepKind
from .data import DataStep
from .saved_model import SavedModelStep
from .tflite import TfliteStep
from .train import TrainStep

REGISTRY: dict[str, StepKind] = {
    step.kind: step for step in (DataStep(), TrainStep(), SavedModelStep(), TfliteStep())
}
