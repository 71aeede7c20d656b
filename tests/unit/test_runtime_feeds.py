"""How runtimes pair arrays with a signature's named inputs, batch them, and word the
converters' refusals. Pure functions: no TensorFlow (the real runtimes and converters are
exercised in tests/integration/test_runtimes_multi_io.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tfbuild.conversion import tfjs_unsupported_ops, tflite_unsupported_ops
from tfbuild.errors import DataError
from tfbuild.runtimes.feeds import batch_size, batches, match_inputs, sample_count

IMAGE, META = np.zeros((4, 8, 8, 1), np.float32), np.zeros((4, 3), np.float32)


def test_one_array_feeds_a_one_input_model_whatever_the_names():
    assert match_inputs(IMAGE, ["input_1"], "m")["input_1"] is IMAGE
    assert match_inputs({"inputs": IMAGE}, ["input_1"], "m")["input_1"] is IMAGE


def test_several_inputs_pair_by_name_in_the_signature_order():
    fed = match_inputs({"meta": META, "image": IMAGE}, ["image", "meta"], "m")
    assert list(fed) == ["image", "meta"] and fed["meta"] is META


@pytest.mark.parametrize("given, detail", [
    ({"img": IMAGE, "meta": META}, "(missing 'image'; unknown 'img')"),
    ({"image": IMAGE}, "(missing 'meta')"),
    ({"image": IMAGE, "meta": META, "extra": META}, "(unknown 'extra')"),
])  # fmt: skip
def test_a_missing_or_unknown_name_is_one_line_naming_both_sides(given, detail):
    with pytest.raises(DataError) as caught:
        match_inputs(given, ["image", "meta"], "TFLite model m.tflite")
    assert str(caught.value) == (
        f"TFLite model m.tflite takes inputs ['image', 'meta'] but was given {list(given)} {detail}"
    )


def test_inputs_must_agree_on_the_sample_count():
    assert sample_count({"image": IMAGE, "meta": META}, "m") == 4
    with pytest.raises(DataError, match="different sample counts: {'image': 4, 'meta': 2}"):
        sample_count({"image": IMAGE, "meta": META[:2]}, "m")


def test_batches_bound_the_input_bytes_per_call():
    assert batch_size({"inputs": np.zeros((1, 224, 224, 3), np.float32)}) == 27
    assert batch_size({"image": IMAGE, "meta": META}) == 256
    assert batch_size({"inputs": np.zeros((1, 4096, 4096, 3), np.uint8)}) == 1
    assert batches(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert batches(0, 2) == [slice(0, 0)]


TFLITE_MESSAGE = (
    "Could not translate MLIR to FlatBuffer.<unknown>:0: error: loc(callsite(fused[\"Digamma:\"])): "
    "'tf.Digamma' op is neither a custom op nor a flex op\n<unknown>:0: note: see current operation"
)


def test_converter_refusals_name_the_ops_on_one_line():
    error = tflite_unsupported_ops(RuntimeError(TFLITE_MESSAGE))
    assert error is not None and str(error).startswith("TFLite cannot convert op 'tf.Digamma' (")
    assert tflite_unsupported_ops(RuntimeError("Could not translate MLIR to FlatBuffer: out of memory")) is None
    error = tfjs_unsupported_ops(ValueError("Unsupported Ops in the model before optimization\nLgamma, Digamma"))
    assert error is not None and str(error).startswith("TF.js cannot convert ops 'Digamma', 'Lgamma' (")
    assert "\n" not in str(error)
    assert tfjs_unsupported_ops(ValueError("Signature 'x' does not exist")) is None
