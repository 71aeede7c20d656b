"""`tflite[variant]`: the SavedModel converted to .tflite, one step per quantization.

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

from pathlib import Path
from typing import Any, Callable, Iterator

from ..conversion import tflite_unsupported_ops
from ..errors import DataError
from ..signature import SIGNATURE
from .base import StepContext
from .compressed import gzip_bytes

CALIBRATED = ("int8", "int16x8")
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

    from ..datasets.split import Split
    from ..runtimes.feeds import match_inputs, sample_count

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
        from ..tfenv import import_tensorflow

        tf = import_tensorflow()
        from ..runtimes.litert import LiteRtModel
        from ..runtimes.savedmodel import signature_dtypes

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
