"""`verify[artifact]`: run an exported artifact on its own runtime and hold it to the reference.

.tflite runs on LiteRT; TF.js runs in Node on each configured backend; a mixed-precision or
XLA SavedModel runs on TensorFlow against its float32 twin. The outputs on the
held-out test inputs are compared with the reference (the SavedModel reloaded from disk);
a figure outside the variant's tolerance fails the step, and with it the build, naming the
artifact, the figure and the bound. Figures are recorded either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..agreement import accuracy, compare, violations
from .base import StepContext
from .reference import held_out_inputs


class VerificationFailed(Exception):
    pass


class VerifyStep:
    kind = "verify"
    version = 1
    tools = ("numpy", "ai-edge-litert")  # TF.js is keyed by the npm lockfile (a file input)

    def run(self, ctx: StepContext) -> dict[str, Any]:
        import numpy as np

        p = ctx.params
        x, y = held_out_inputs(ctx.inputs["data"], p["samples"])
        reference = np.load(ctx.inputs["reference"])
        runs = _run_artifact(p, ctx.inputs["artifact"], x)

        info: dict[str, Any] = {"format": p["format"], "variant": p["variant"], "tolerance": dict(p["tolerance"])}
        problems = []
        for runtime, outputs in runs.items():
            figures = compare(outputs, reference)
            figures["accuracy"] = round(accuracy(outputs, y), 6)
            figures["reference_accuracy"] = round(accuracy(reference, y), 6)
            info.setdefault("runtimes", {})[runtime] = figures
            problems += [f"{runtime}: {v}" for v in violations(figures, p["tolerance"])]
        worst = _worst(info["runtimes"].values())
        info.update(worst)
        info["summary"] = _summary(worst)
        if problems:
            artifact = p["format"] if p["variant"] is None else f"{p['format']}/{p['variant']}"
            raise VerificationFailed(f"{artifact} does not match the SavedModel: {'; '.join(problems)}")
        return info


def _run_artifact(p: dict[str, Any], path: Path, x: Any) -> dict[str, Any]:
    """runtime label -> outputs on `x`."""
    if p["format"] == "saved_model":
        from ..runtimes.savedmodel import run_saved_model

        return {"TensorFlow SavedModel": run_saved_model(path, x)}
    if p["format"] == "tflite":
        from ..runtimes.litert import litert_version, run_tflite

        return {litert_version(): run_tflite(path, x)}
    from ..runtimes.tfjs_node import run_tfjs

    run = run_tfjs(path, x, p["backends"], node=p["node"])
    return {f"TF.js {run.version} {backend}": outputs for backend, outputs in run.outputs.items()}


def _worst(figures: Any) -> dict[str, Any]:
    figures = list(figures)
    top1 = [f["top1_agreement"] for f in figures if f["top1_agreement"] is not None]
    return {
        "max_abs_diff": max(f["max_abs_diff"] for f in figures),
        "mean_abs_diff": max(f["mean_abs_diff"] for f in figures),
        "top1_agreement": min(top1) if top1 else None,
        "accuracy": min(f["accuracy"] for f in figures),
    }


def _summary(worst: dict[str, Any]) -> str:
    text = f"max |Δ| {worst['max_abs_diff']:.1e}"
    if worst["top1_agreement"] is not None:
        text = f"top-1 {worst['top1_agreement']:.1%}, " + text
    return text
