"""SavedModel -> .tflite: the converter per variant, the calibration set, and full-integer
conversion with chosen ops kept in float.

Calibration is an explicit input: the first `data.calibration_samples` samples of the
training split, fed one at a time, recorded with their count, split and sha256 (of the
names, dtypes, shapes and bytes of the arrays handed to the converter), so a report can say
exactly what the int8 ranges were drawn from.

Selective quantization follows what `tf.lite.experimental.QuantizationDebugger` does
internally: calibrate once (`_experimental_calibrate_only`), then quantize the calibrated
model with MLIR's quantizer, listing the ops (by output tensor name) to leave in float.
Only a conversion with ops kept in float takes that path; a plain int8 conversion stays the
converter's own, so its bytes are the ones any other tool would make from the same model.
Both are deterministic: a repaired model rebuilt from its pinned float set is byte-identical.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ...conversion import tflite_unsupported_ops
from ...errors import DataError
from ...signature import SIGNATURE

CALIBRATED = ("int8", "int16x8")
CALIBRATION_SPLIT = "train"
Samples = Callable[[], Iterator[dict[str, Any]]]


@dataclass(frozen=True)
class CalibrationSet:
    samples: Samples  # the representative dataset: one {input name: [1, ...] array} at a time
    count: int
    sha256: str

    def record(self) -> dict[str, Any]:
        return {"samples": self.count, "split": CALIBRATION_SPLIT, "sha256": self.sha256}


def calibration_set(split_dir: Path, dtypes: dict[str, Any], limit: int) -> CalibrationSet:
    """The first `limit` training samples as the signature wants them. The split's arrays are
    memory-mapped, so only those samples are read."""
    import numpy as np

    from ...datasets.split import Split
    from ...runtimes.feeds import match_inputs, sample_count

    split = Split(split_dir)
    if split.generated:
        raise DataError(
            "calibrated quantization (int8, int16x8) needs real data, and the inputs were generated "
            "from the model's signature: give a data source (data=...) or pick float, dynamic or fp16"
        )
    given = match_inputs(split.inputs(CALIBRATION_SPLIT, limit=limit), list(dtypes), "the SavedModel's serving signature")
    inputs = {name: np.ascontiguousarray(x, dtype=dtypes[name]) for name, x in given.items()}
    count = sample_count(inputs, "the training split")
    digest = hashlib.sha256()
    for name, x in inputs.items():
        digest.update(f"{name}\0{x.dtype.str}\0{list(x.shape)}\0".encode())
        digest.update(x.tobytes())

    def representative_dataset() -> Iterator[dict[str, Any]]:
        for i in range(count):
            yield {name: x[i : i + 1] for name, x in inputs.items()}

    return CalibrationSet(representative_dataset, count, digest.hexdigest())


def converter_for(tf: Any, saved_model_dir: str, quantization: str, calibration: Samples | None = None) -> Any:
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


def converted(converter: Any) -> bytes:
    """The flatbuffer; a model with ops TFLite has no kernel for fails with them named."""
    try:
        return bytes(converter.convert())
    except Exception as error:
        unsupported = tflite_unsupported_ops(error)
        if unsupported is None:
            raise
        raise unsupported from None


def calibrated_model(tf: Any, saved_model_dir: str, calibration: Samples) -> bytes:
    """The float model with the calibration's ranges recorded: what int8 is quantized from."""
    converter = converter_for(tf, saved_model_dir, "int8", calibration)
    converter._experimental_calibrate_only = True  # as QuantizationDebugger sets it
    return converted(converter)


def quantized(tf: Any, calibrated: bytes, float_ops: Sequence[str] = (), *, debug: bool = False) -> bytes:
    """Full integer (int8 activations and weights, int8 inputs and outputs) from a calibrated
    model, the ops whose output tensors are named in `float_ops` kept in float. `debug` adds
    a NumericVerify op after each quantized op, comparing it with its float twin on the same
    input (float inputs and outputs then, as the debugger makes it)."""
    from tensorflow.lite.python import convert as lite_convert
    from tensorflow.lite.python.lite import _deduplicate_readonly_buffers

    io_type = tf.float32 if debug else tf.int8
    model = lite_convert.mlir_quantize(
        calibrated, disable_per_channel=False, input_data_type=io_type, output_data_type=io_type,
        enable_numeric_verify=debug, denylisted_nodes=list(float_ops) or None,
    )
    # The converter's last pass on every model it makes; the debugger's own path skips it.
    return model if debug else bytes(_deduplicate_readonly_buffers(model))


def int8_model(tf: Any, saved_model_dir: str, calibration: Samples, float_ops: Sequence[str] = ()) -> bytes:
    """The int8 variant: the converter's own full-integer model, or with `float_ops` kept in float."""
    if not float_ops:
        return converted(converter_for(tf, saved_model_dir, "int8", calibration))
    return quantized(tf, calibrated_model(tf, saved_model_dir, calibration), float_ops)
