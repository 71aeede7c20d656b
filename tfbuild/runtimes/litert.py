"""Run a .tflite model on LiteRT (`ai_edge_litert`) through its signature runner, by name.

The converter keeps the SavedModel's `serving_default` signature, so inputs and outputs are
addressed by the names the model was saved with, not by tensor index. Fully quantized models
take and give int8 (or int16) tensors: each input is quantized with its own tensor's (scale,
zero point) and each output dequantized with its own, so the caller compares plain floats
whatever the variant. Integer inputs that are not quantized (token ids) are cast to the
integer type the signature declares.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataError
from .feeds import Inputs, batch_size, batches, match_inputs, sample_count
from ..signature import SIGNATURE

if TYPE_CHECKING:
    import numpy as np


def quantize(x: np.ndarray, details: dict[str, Any]) -> np.ndarray:
    import numpy as np

    scale, zero_point = details["quantization"]
    dtype = details["dtype"]
    if not scale:
        return np.ascontiguousarray(x, dtype=dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(np.asarray(x) / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, details: dict[str, Any]) -> np.ndarray:
    import numpy as np

    scale, zero_point = details["quantization"]
    if not scale:
        return y.astype(np.float32)
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)


class LiteRtModel:
    """One signature of a .tflite model; the batch dimension follows the inputs given."""

    def __init__(self, path: Path, threads: int | None = None, signature: str = SIGNATURE):
        from ai_edge_litert.interpreter import Interpreter

        self._name = f"TFLite model {path}"
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        signatures = interpreter.get_signature_list()
        if signature not in signatures:
            raise DataError(f"{self._name} has no signature '{signature}' (it has: {sorted(signatures)})")
        interpreter.allocate_tensors()  # a model LiteRT cannot prepare fails here, not mid-run
        self._runner = interpreter.get_signature_runner(signature)
        self._inputs = self._runner.get_input_details()
        self._outputs = self._runner.get_output_details()
        self.input_names: list[str] = list(self._inputs)
        self.output_names: list[str] = list(self._outputs)

    def input_details(self) -> dict[str, dict[str, Any]]:
        """name -> LiteRT's tensor details (dtype, shape, quantization)."""
        return dict(self._inputs)

    def output_details(self) -> dict[str, dict[str, Any]]:
        return dict(self._outputs)

    def prepare(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """`inputs` by the signature's names, quantized or cast to each input tensor's type
        (what a device's caller hands over)."""
        feeds = match_inputs(inputs, self.input_names, self._name)
        return {name: quantize(x, self._inputs[name]) for name, x in feeds.items()}

    def invoke(self, prepared: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The raw outputs for inputs from `prepare`: the part a benchmark times. The runner
        resizes the inputs to the batch given (a no-op when the shape did not change)."""
        return self._runner(**prepared)

    def predict(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """Every output on all samples of `inputs`, dequantized to float32, in batches."""
        import numpy as np

        feeds = match_inputs(inputs, self.input_names, self._name)
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.output_names}
        for rows in batches(sample_count(feeds, self._name), batch_size(feeds)):
            raw = self.invoke(self.prepare({name: x[rows] for name, x in feeds.items()}))
            for name, y in raw.items():
                parts[name].append(dequantize(y, self._outputs[name]))
        return {name: np.concatenate(values) for name, values in parts.items()}


def run_tflite(path: Path, inputs: Inputs, threads: int | None = None) -> dict[str, np.ndarray]:
    """Every output of the model's serving signature on all samples of `inputs`."""
    return LiteRtModel(path, threads).predict(inputs)


def litert_version() -> str:
    from importlib.metadata import version

    return f"LiteRT {version('ai-edge-litert')}"
