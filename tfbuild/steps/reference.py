"""`reference`: the SavedModel, reloaded from disk, run on the held-out test inputs.

Every exported artifact is compared with these outputs, so the reference is what users
deploy to TF Serving, not the in-memory Keras model that produced it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..agreement import accuracy
from .base import StepContext
from .data import load_split

if TYPE_CHECKING:
    import numpy as np


def held_out_inputs(data: Path, samples: int | None) -> tuple[np.ndarray, np.ndarray]:
    x_test, y_test = load_split(data, "test")
    return x_test[:samples], y_test[:samples]


class ReferenceStep:
    kind = "reference"
    version = 1
    tools = ("tensorflow", "numpy")

    def run(self, ctx: StepContext) -> dict[str, Any]:
        import numpy as np

        from ..runtimes.savedmodel import run_saved_model

        x, y = held_out_inputs(ctx.inputs["data"], ctx.params["samples"])
        outputs = run_saved_model(ctx.inputs["saved_model"], x)
        np.save(ctx.outputs["outputs"], outputs)
        test_accuracy = accuracy(outputs, y)
        return {
            "runtime": "TensorFlow SavedModel",
            "samples": int(len(x)),
            "accuracy": round(test_accuracy, 6),
            "summary": f"accuracy {test_accuracy:.1%} on {len(x)} test samples",
        }
