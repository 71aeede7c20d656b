"""`data[generated]`: inputs made from the SavedModel's signature, for a model brought
without data (model=file data=none). Seeded, so the same model gets the same inputs; every
part holds them, and there are no labels: exports are compared with the SavedModel on them,
and nothing is scored."""

from __future__ import annotations

from typing import Any

from ..signature import SIGNATURE
from .base import StepContext


class GeneratedDataStep:
    kind = "generated_data"
    version = 1
    tools = ("tensorflow", "numpy")

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from ..datasets.generated import write_generated_split
        from ..tfenv import import_tensorflow

        tf = import_tensorflow()
        serve = tf.saved_model.load(str(ctx.inputs["saved_model"])).signatures[SIGNATURE]
        specs = serve.structured_input_signature[1]
        shapes = {name: (tuple(spec.shape.as_list()[1:]), spec.dtype.name) for name, spec in specs.items()}
        unknown = [name for name, (shape, _) in shapes.items() if any(d is None for d in shape)]
        if unknown:
            from ..errors import DataError

            raise DataError(
                f"model.path: input '{unknown[0]}' has an unknown size {list(shapes[unknown[0]][0])}, so inputs "
                "cannot be generated for it; give data=... with real samples"
            )
        write_generated_split(ctx.outputs["split"], shapes, ctx.params["samples"], ctx.params["seed"])
        return {
            "generated": True,
            "samples": ctx.params["samples"],
            "inputs": {name: {"shape": list(shape), "dtype": dtype} for name, (shape, dtype) in shapes.items()},
            "summary": f"{ctx.params['samples']} generated inputs (no labels)",
        }
