"""`tflite[variant]`: the SavedModel converted to .tflite, one step per quantization.

float    no optimization
dynamic  dynamic-range: int8 weights, float activations
fp16     float16 weights
int8     full integer: int8 weights, activations, input and output; calibrated
int16x8  int16 activations, int8 weights (float input and output); calibrated

The converted model is loaded in LiteRT (the runtime edge users run) before it is accepted.
"""

from __future__ import annotations

from typing import Any

from .base import StepContext
from .compressed import gzip_bytes
from .data import load_split
from .saved_model import SIGNATURE


def converter_for(tf: Any, saved_model_dir: str, quantization: str, calibration: Any = None):
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[SIGNATURE])
    if quantization == "float":
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization in ("int8", "int16x8"):

        def representative_dataset():
            for sample in calibration:
                yield [sample[None, ...]]

        converter.representative_dataset = representative_dataset
        if quantization == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        else:
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
    return converter


def tensor_summary(details: dict[str, Any]) -> dict[str, Any]:
    scale, zero_point = details.get("quantization", (0.0, 0))
    summary = {"name": details["name"], "dtype": details["dtype"].__name__, "shape": details["shape"].tolist()}
    if scale:
        summary["scale"], summary["zero_point"] = float(scale), int(zero_point)
    return summary


class TfliteStep:
    kind = "tflite"
    version = 1
    tools = ("tensorflow", "ai-edge-litert")

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from ..tfenv import import_tensorflow

        tf = import_tensorflow()
        from ai_edge_litert.interpreter import Interpreter

        quantization = ctx.params["quantization"]
        calibration = None
        if "data" in ctx.inputs:
            x_train, _ = load_split(ctx.inputs["data"], "train")
            calibration = x_train[: ctx.params["calibration_samples"]]
        converter = converter_for(tf, str(ctx.inputs["saved_model"]), quantization, calibration)
        flatbuffer = converter.convert()
        ctx.outputs["model"].write_bytes(flatbuffer)

        interpreter = Interpreter(model_path=str(ctx.outputs["model"]))
        interpreter.allocate_tensors()
        compressed = gzip_bytes(ctx.outputs["model"])
        return {
            "quantization": quantization,
            # Pruned zeros and clustered weights do not shrink a .tflite, but compress well.
            "gzip_bytes": compressed,
            "summary": f"gzip {compressed / 1024:.1f} KB",
            "calibration_samples": None if calibration is None else int(len(calibration)),
            "inputs": [tensor_summary(d) for d in interpreter.get_input_details()],
            "outputs": [tensor_summary(d) for d in interpreter.get_output_details()],
        }
