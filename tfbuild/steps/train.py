"""`train`: build a tf_keras model from its builder and fit it, deterministically.

Params (from the resolver): builder, model_params, modules, epochs, batch_size,
learning_rate, seed, optimizer, weight_decay, schedule, early_stopping_patience,
class_weight, loss; and the target's strategy, precision, jit_compile with cpu_devices,
gpus, workers or tpu. The work is in tfbuild/training; this adapts it to the step protocol.
"""

from __future__ import annotations

import os
from typing import Any

from ..plan import StepSpec
from .base import StepContext

# Strategies whose ops never run on a GPU, whatever the machine has.
_OFF_GPU = ("tpu",)


class TrainStep:
    kind = "train"
    version = 3  # 3: the split on disk (several inputs and targets), tasks, optimizers
    tools = ("tensorflow", "tf-keras", "numpy")

    def machine(self, spec: StepSpec) -> dict[str, str]:
        """The CPU family, and the GPUs: the default strategy runs on a visible GPU too."""
        from ..machine import key_entry

        params = spec.params
        on_cpus = params.get("strategy") in _OFF_GPU or bool(params.get("cpu_devices"))
        return key_entry(accelerator=not on_cpus)

    def run(self, ctx: StepContext) -> dict[str, Any]:
        p = dict(ctx.params)
        data, out, files = ctx.inputs["data"], ctx.outputs["model"], dict(ctx.files)
        if p["strategy"] == "multi_worker" and "TF_CONFIG" not in os.environ:
            from ..training.workers import train_on_local_workers

            return train_on_local_workers(p, data, out, ctx.progress, files)
        from ..training.trainer import train

        return train(p, data, out, ctx.progress, files)
