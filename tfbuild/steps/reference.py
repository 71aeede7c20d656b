"""`reference`: the SavedModel, reloaded from disk, run on the held-out test inputs.

Every exported artifact is compared with these outputs, so the reference is what users
deploy to TF Serving, not the in-memory Keras model that produced it. The outputs are kept
by name (outputs_io: `outputs.json` + one .npy per output) in the step's output folder.
"""

from __future__ import annotations

from typing import Any

from ..metrics import GENERATED, describe, task_metrics
from ..outputs_io import save_outputs
from .base import StepContext


class ReferenceStep:
    kind = "reference"
    version = 2  # 2: named outputs in a folder; metrics per output and task
    tools = ("tensorflow", "numpy")

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from ..datasets.split import Split
        from ..runtimes.savedmodel import run_saved_model

        split = Split(ctx.inputs["data"])
        inputs = split.inputs("test", ctx.params["samples"])
        samples = len(next(iter(inputs.values())))
        outputs = run_saved_model(ctx.inputs["saved_model"], inputs)
        save_outputs(ctx.outputs["outputs"], outputs)
        # Generated inputs have no labels: the outputs are compared, never scored.
        metrics = {} if split.generated else task_metrics(outputs, split.targets("test", ctx.params["samples"]), split.tasks())
        return {
            "runtime": "TensorFlow SavedModel",
            "samples": samples,
            "outputs": list(outputs),
            "generated": split.generated,
            "metrics": metrics,
            "summary": f"{describe(metrics)} on {samples} test samples" if metrics else f"{samples} {GENERATED}",
        }
