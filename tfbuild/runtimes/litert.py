"""Run a .tflite model on LiteRT (`ai_edge_litert`), float in and float out.

Fully quantized models take int8 inputs and give int8 outputs: inputs are quantized with the
input tensor's (scale, zero point) and outputs dequantized with the output tensor's, so the
caller compares plain probabilities whatever the variant.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


def quantize(x: np.ndarray, details: dict[str, Any]) -> np.ndarray:
    import numpy as np

    scale, zero_point = details["quantization"]
    dtype = details["dtype"]
    if not scale:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, details: dict[str, Any]) -> np.ndarray:
    import numpy as np

    scale, zero_point = details["quantization"]
    if not scale:
        return y.astype(np.float32)
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)


def run_tflite(path: Path, x: np.ndarray, threads: int | None = None) -> np.ndarray:
    """The model's single output for the batch `x` (the batch dimension is resized to fit)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    (input_details,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(input_details["index"], list(x.shape))
    interpreter.allocate_tensors()
    (input_details,) = interpreter.get_input_details()
    (output_details,) = interpreter.get_output_details()
    interpreter.set_tensor(input_details["index"], quantize(x, input_details))
    interpreter.invoke()
    return dequantize(interpreter.get_tensor(output_details["index"]), output_details)


def litert_version() -> str:
    from importlib.metadata import version

    return f"LiteRT {version('ai-edge-litert')}"
