"""`verify[artifact]`: run an exported artifact on its own runtime and hold it to the reference.

.tflite runs on LiteRT; TF.js runs in Node on each configured backend; a mixed-precision or
XLA SavedModel runs on TensorFlow against its float32 twin. Every output on the held-out
test inputs is compared with the reference's output of the same name (the SavedModel
reloaded from disk); a figure of any output outside the variant's tolerance fails the step,
and with it the build, naming the artifact, the runtime, the output, the figure and the
bound. Figures and task metrics are recorded either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..agreement import compare_outputs, violations, worst
from ..metrics import CLASSIFICATION, GENERATED, output_tasks, task_metrics
from .base import StepContext


class VerificationFailed(Exception):
    pass


class VerifyStep:
    kind = "verify"
    version = 2  # 2: every named output; relative difference, cosine; metrics per task
    tools = ("numpy", "ai-edge-litert")  # TF.js is keyed by the npm lockfile (a file input)

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from ..datasets.split import Split
        from ..outputs_io import load_outputs

        p = ctx.params
        split = Split(ctx.inputs["data"])
        inputs = split.inputs("test", p["samples"])
        targets = {} if split.generated else split.targets("test", p["samples"])
        reference = load_outputs(ctx.inputs["reference"])
        tasks = output_tasks(list(reference), None if split.generated else split.tasks(),
                             task=p.get("task", CLASSIFICATION), task_outputs=p.get("task_outputs"))
        runs = _run_artifact(p, ctx.inputs["artifact"], inputs)

        info: dict[str, Any] = {
            "format": p["format"], "variant": p["variant"], "tolerance": dict(p["tolerance"]),
            "samples": len(next(iter(reference.values()))), "generated": split.generated, "tasks": tasks,
            "reference_metrics": task_metrics(reference, targets, split.tasks()), "runtimes": {},
        }  # fmt: skip
        problems = []
        for runtime, outputs in runs.items():
            per_output = _compared(outputs, reference, tasks, runtime)
            info["runtimes"][runtime] = {
                "samples": info["samples"], **worst(per_output.values()), "outputs": per_output,
                "metrics": task_metrics(outputs, targets, split.tasks()),
            }  # fmt: skip
            problems += [f"{runtime}: {v}" for v in violations(per_output, p["tolerance"])]
        info.update(worst(info["runtimes"].values()))
        info["summary"] = _summary(info)
        if problems:
            artifact = p["format"] if p["variant"] is None else f"{p['format']}/{p['variant']}"
            raise VerificationFailed(f"{artifact} does not match the SavedModel: {'; '.join(problems)}")
        return info


def _compared(outputs: dict[str, Any], reference: dict[str, Any], tasks: dict[str, str], runtime: str) -> dict[str, Any]:
    try:
        return compare_outputs(outputs, reference, tasks)
    except ValueError as error:  # a wrong name or shape: the artifact is not the model
        raise VerificationFailed(f"{runtime}: {error}") from None


def _run_artifact(p: dict[str, Any], path: Path, inputs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """runtime label -> {output name: outputs on `inputs`}."""
    if p["format"] == "saved_model":
        from ..runtimes.savedmodel import run_saved_model

        return {"TensorFlow SavedModel": run_saved_model(path, inputs)}
    if p["format"] == "tflite":
        from ..runtimes.litert import LiteRtModel, litert_version

        return {litert_version(): LiteRtModel(path, None).predict(inputs)}
    from ..runtimes.tfjs_node import run_tfjs

    run = run_tfjs(path, inputs, p["backends"], node=p["node"])
    return {f"TF.js {run.version} {backend}": outputs for backend, outputs in run.outputs.items()}


def _summary(info: dict[str, Any]) -> str:
    text = f"max |Δ| {info['max_abs_diff']:.1e}, min cos {info['min_cosine']:.4f}"
    if info["top1_agreement"] is not None:
        text = f"top-1 {info['top1_agreement']:.1%}, " + text
    return text + (f"; {GENERATED}" if info["generated"] else "")
