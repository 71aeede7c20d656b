"""The TFLite format: `tflite[variant]` converts the SavedModel to .tflite, one step per
quantization; LiteRT (the runtime edge users run) verifies and times it.

float    no optimization
dynamic  dynamic-range: int8 weights, float activations
fp16     float16 weights
int8     full integer: int8 weights, activations, and float inputs and outputs; calibrated
int16x8  int16 activations, int8 weights (float input and output); calibrated

The `serving_default` signature is converted with its names, so LiteRT's signature runner
takes and gives the tensors the SavedModel names. The converted model is loaded in LiteRT
(the runtime edge users run) before it is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from omegaconf import DictConfig

from ...conversion import tflite_unsupported_ops
from ...errors import ConfigError, DataError
from ...plan import OutputSpec, StepSpec
from ...signature import SIGNATURE
from ...steps.base import StepContext
from ...steps.compressed import gzip_bytes
from ..base import DATA, Arrays, Format, PlanContext, Runs, Scorer

VARIANTS = ("float", "dynamic", "fp16", "int8", "int16x8")
CALIBRATED = ("int8", "int16x8")
# How far each variant may be from the SavedModel on the test inputs (verify.tolerances.tflite).
# Float must match numerically; quantized variants are held to top-1 agreement.
TOLERANCES = {
    "float": {"max_abs_diff": 0.0001, "min_top1_agreement": 0.99},
    "dynamic": {"min_top1_agreement": 0.97},
    "fp16": {"max_abs_diff": 0.01, "min_top1_agreement": 0.98},
    "int8": {"min_top1_agreement": 0.95},
    "int16x8": {"min_top1_agreement": 0.97},
}
Calibration = Callable[[], Iterator[dict[str, Any]]]


def converter_for(tf: Any, saved_model_dir: str, quantization: str, calibration: Calibration | None = None):
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[SIGNATURE])
    if quantization == "float":
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization in CALIBRATED:
        converter.representative_dataset = calibration
        if quantization == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            # Applies to float inputs and outputs only: integer inputs (ids) keep their type.
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        else:
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
    return converter


def calibration_samples(split_dir: Path, dtypes: dict[str, Any], limit: int) -> tuple[Calibration, int]:
    """(representative dataset, sample count): one sample at a time from the training split,
    as {signature input name: array of the dtype the signature wants}. The split's arrays are
    memory-mapped, so only the samples handed to the converter are read."""
    import numpy as np

    from ...datasets.split import Split
    from ...runtimes.feeds import match_inputs, sample_count

    split = Split(split_dir)
    if split.generated:
        raise DataError(
            "calibrated quantization (int8, int16x8) needs real data, and the inputs were generated "
            "from the model's signature: give a data source (data=...) or pick float, dynamic or fp16"
        )
    inputs = match_inputs(split.inputs("train", limit=limit), list(dtypes), "the SavedModel's serving signature")
    count = sample_count(inputs, "the training split")

    def representative_dataset() -> Iterator[dict[str, Any]]:
        for i in range(count):
            yield {name: np.asarray(x[i : i + 1], dtype=dtypes[name]) for name, x in inputs.items()}

    return representative_dataset, count


def tensor_summary(details: dict[str, Any]) -> dict[str, Any]:
    scale, zero_point = details.get("quantization", (0.0, 0))
    summary = {"dtype": details["dtype"].__name__, "shape": details["shape_signature"].tolist()}
    if scale:
        summary["scale"], summary["zero_point"] = float(scale), int(zero_point)
    return summary


class TfliteStep:
    kind = "tflite"
    version = 2  # 2: calibration and info by signature name; unsupported ops named
    tools = ("tensorflow", "ai-edge-litert")

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from ...tfenv import import_tensorflow

        tf = import_tensorflow()
        from ...runtimes.litert import LiteRtModel
        from ...runtimes.savedmodel import signature_dtypes

        quantization = ctx.params["quantization"]
        saved_model = ctx.inputs["saved_model"]
        calibration, samples = None, None
        if quantization in CALIBRATED and "data" in ctx.inputs:
            input_dtypes, _ = signature_dtypes(saved_model)
            calibration, samples = calibration_samples(
                ctx.inputs["data"], input_dtypes, ctx.params["calibration_samples"]
            )
        converter = converter_for(tf, str(saved_model), quantization, calibration)
        try:
            flatbuffer = converter.convert()
        except Exception as error:
            unsupported = tflite_unsupported_ops(error)
            if unsupported is None:
                raise
            raise unsupported from None
        ctx.outputs["model"].write_bytes(flatbuffer)

        model = LiteRtModel(ctx.outputs["model"])  # LiteRT loads it, and by its signature
        compressed = gzip_bytes(ctx.outputs["model"])
        return {
            "quantization": quantization,
            # Pruned zeros and clustered weights do not shrink a .tflite, but compress well.
            "gzip_bytes": compressed,
            "summary": f"gzip {compressed / 1024:.1f} KB",
            "calibration_samples": samples,
            "signature": SIGNATURE,
            "inputs": {name: tensor_summary(d) for name, d in model.input_details().items()},
            "outputs": {name: tensor_summary(d) for name, d in model.output_details().items()},
        }


@dataclass
class TfliteExport:
    # One value or a list of float, dynamic, fp16, int8, int16x8: one build step per value.
    # null: the target's (target.tflite_quantization). Set while tflite is not built: an error.
    quantization: Any = None


def plan(ctx: PlanContext, quantization: str | None) -> list[StepSpec]:
    assert quantization is not None
    params: dict[str, Any] = {"quantization": quantization}
    inputs = {"saved_model": ctx.source}
    if quantization in CALIBRATED:
        params["calibration_samples"] = ctx.cfg.data.calibration_samples
        inputs["data"] = DATA
    filename = f"model_{quantization}.tflite"
    output = OutputSpec(role="model", artifact=TFLITE.artifact(quantization), path=filename,
                        publish=f"tflite/{filename}", format="tflite", variant=quantization)
    return [StepSpec(name=f"tflite[{quantization}]", kind="tflite", params=params, inputs=inputs, outputs=(output,))]


def verify(path: Path, inputs: Arrays, params: Any) -> Runs:
    from ...runtimes.litert import LiteRtModel, litert_version

    return {litert_version(): LiteRtModel(path, None).predict(inputs)}


def benchmark(path: Path, inputs: Arrays, score: Scorer, params: Any, protocol: Any) -> dict[str, Any]:
    from ...runtimes.feeds import first_sample, tiled
    from ...runtimes.litert import LiteRtModel, litert_version
    from ...runtimes.timing import figures, time_calls

    model = LiteRtModel(path, params["threads"])
    outputs = model.predict(inputs)
    # Timed: set input, invoke, read output, on an input already quantized (as on a device).
    one = model.prepare(first_sample(inputs))
    latency = time_calls(lambda: model.invoke(one), protocol)
    batch = model.prepare(tiled(inputs, params["batch_size"]))
    batches = time_calls(lambda: model.invoke(batch), protocol)
    runtime = litert_version()
    samples = len(next(iter(outputs.values())))
    return {runtime: figures(runtime, params["threads"], latency, batches, params["batch_size"], score(outputs), samples)}


def runtime_params(cfg: DictConfig, purpose: str) -> tuple[dict[str, Any], dict[str, str]]:
    return ({"threads": cfg.benchmark.threads} if purpose == "benchmark" else {}), {}


def check(cfg: DictConfig, variants: tuple[str, ...], formats: tuple[str, ...]) -> None:
    calibrated = [q for q in variants if q in CALIBRATED]
    if calibrated and cfg.data.source.value == "none":
        raise ConfigError(
            f"export.tflite.quantization={calibrated[0]} calibrates on real samples, and data=none gives none: "
            "choose data=... (the samples your model sees), or a variant without calibration (float, dynamic, fp16)"
        )
    if calibrated and cfg.data.calibration_samples < 1:
        raise ConfigError(
            f"export.tflite.quantization={calibrated[0]} needs calibration data: set "
            "data.calibration_samples to 1 or more (100 is typical)"
        )
    if cfg.optimize.method.value == "qat" and "int16x8" in variants:
        raise ConfigError(
            "optimize=qat trains for int8 and cannot be converted to int16x8: remove int16x8 "
            "from export.tflite.quantization, or use optimize=none|prune|cluster"
        )


TFLITE = Format(
    name="tflite",
    title="TFLite",
    summary="a .tflite flatbuffer per quantization, verified and timed on LiteRT (phones, edge devices)",
    steps=(TfliteStep(),),
    plan=plan,
    variants=VARIANTS,
    default_variants=("float", "int8"),
    export_config=TfliteExport,
    tolerances=TOLERANCES,
    verify=verify,
    benchmark=benchmark,
    runtime_params=runtime_params,
    check=check,
    tools=("ai-edge-litert",),
)
