"""`verify[artifact]`: run an exported artifact on its own runtime and hold it to the reference.

Each format says how its artifacts run (its module's `verify`, tfbuild/formats/): .tflite on
LiteRT, TF.js in Node and in Chromium on each configured backend, a mixed-precision or XLA
SavedModel on TensorFlow against its float32 twin. Every output on the held-out test inputs
is compared with the reference's output of the same name (the SavedModel reloaded from
disk); a figure of any output outside the variant's tolerance fails the step,
and with it the build, naming the artifact, the runtime, the output, the figure and the
bound. Figures and task metrics are recorded either way.
"""

from __future__ import annotations

from typing import Any

from ..agreement import compare_outputs, violations, worst
from ..metrics import CLASSIFICATION, GENERATED, output_tasks, task_metrics
from ..plan import StepSpec
from .base import StepContext


class VerificationFailed(Exception):
    pass


class VerifyStep:
    kind = "verify"
    version = 3  # 3: runtimes from the format registry
    # Every format's runtimes (tools of the artifact's format alone would be tighter, but a
    # step kind's tools are fixed). TF.js is keyed by the npm lockfile (a file input).
    tools = ("numpy", "tensorflow", "ai-edge-litert")

    def affinity(self, spec: StepSpec) -> str | None:
        """What it keeps in its process for the next such step (a Chromium): see the runner."""
        from ..formats import shared_runtime

        return shared_runtime(spec.params)

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from ..datasets.split import Split
        from ..formats import FORMATS
        from ..outputs_io import load_outputs

        p = ctx.params
        split = Split(ctx.inputs["data"])
        inputs = split.inputs("test", p["samples"])
        targets = {} if split.generated else split.targets("test", p["samples"])
        reference = load_outputs(ctx.inputs["reference"])
        tasks = output_tasks(list(reference), None if split.generated else split.tasks(),
                             task=p.get("task", CLASSIFICATION), task_outputs=p.get("task_outputs"))
        fmt = FORMATS[p["format"]]
        assert fmt.verify is not None  # the resolver plans verification of verifiable formats only
        runs = fmt.verify(ctx.inputs["artifact"], inputs, p)

        info: dict[str, Any] = {
            "format": p["format"], "variant": p["variant"], "tolerance": dict(p["tolerance"]),
            "samples": len(next(iter(reference.values()))), "generated": split.generated, "tasks": tasks,
            "reference_metrics": task_metrics(reference, targets, split.tasks()), "runtimes": {},
        }  # fmt: skip
        problems = []
        for runtime, outputs in runs.items():
            rows = len(next(iter(outputs.values()), []))
            # A runtime that answers for the first samples only (a page's bundled samples,
            # warmup records) is held to the reference's first rows.
            expected, labels = reference, targets
            if fmt.partial_verify:
                expected = {name: r[:rows] for name, r in reference.items()}
                labels = {name: t[:rows] for name, t in targets.items()}
            per_output = _compared(outputs, expected, tasks, runtime)
            info["runtimes"][runtime] = {
                "samples": rows, **worst(per_output.values()), "outputs": per_output,
                "metrics": task_metrics(outputs, labels, split.tasks()),
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


def _summary(info: dict[str, Any]) -> str:
    text = f"max |Δ| {info['max_abs_diff']:.1e}, min cos {info['min_cosine']:.4f}"
    if info["top1_agreement"] is not None:
        text = f"top-1 {info['top1_agreement']:.1%}, " + text
    return text + (f"; {GENERATED}" if info["generated"] else "")
