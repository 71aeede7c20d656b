"""`data`: a deterministic train/validation/test split of a source, written as a Split
(tfbuild/datasets/split.py) that every later step reads."""

from __future__ import annotations

from typing import Any

from ..datasets.assemble import write_split
from .base import StepContext


class DataStep:
    kind = "data"
    version = 2  # 2: named inputs and targets with tasks, in a Split folder
    tools = ("numpy", "scikit-learn", "tensorflow")  # TensorFlow decodes images and TFRecords

    def run(self, ctx: StepContext) -> dict[str, Any]:
        return write_split(dict(ctx.params), dict(ctx.files), ctx.outputs["split"])
