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


class LiteRtModel:
    """An interpreter whose batch dimension follows the inputs it is given."""

    def __init__(self, path: Path, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self._shape: tuple[int, ...] | None = None

    def _resize(self, shape: tuple[int, ...]) -> None:
        (details,) = self._interpreter.get_input_details()
        self._interpreter.resize_tensor_input(details["index"], list(shape))
        self._interpreter.allocate_tensors()
        (self._input,) = self._interpreter.get_input_details()
        (self._output,) = self._interpreter.get_output_details()
        self._shape = shape

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """`x` resized for and quantized to the input tensor (what a device's caller hands over)."""
        if x.shape != self._shape:
            self._resize(x.shape)
        return quantize(x, self._input)

    def invoke(self, prepared: np.ndarray) -> np.ndarray:
        """The raw output for an input from `prepare`: the part a benchmark times."""
        self._interpreter.set_tensor(self._input["index"], prepared)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output["index"])

    def predict(self, x: np.ndarray) -> np.ndarray:
        return dequantize(self.invoke(self.prepare(x)), self._output)


def run_tflite(path: Path, x: np.ndarray, threads: int | None = None) -> np.ndarray:
    """The model's single output for the batch `x`."""
    return LiteRtModel(path, threads).predict(x)


def litert_version() -> str:
    from importlib.metadata import version

    return f"LiteRT {version('ai-edge-litert')}"
