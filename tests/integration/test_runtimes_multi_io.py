"""Models with several named inputs and outputs, through every runtime and export step.

A two-input ("image", "meta"), two-output ("digit" softmax, "size" regression) model is saved
as tfbuild saves models, converted by the real tflite and tfjs steps (calibrating from a split
on disk), and run on TensorFlow, LiteRT and TF.js in Node: every runtime answers by the
SavedModel's names, and agrees with it. Also: integer inputs, and a model a converter cannot
hold failing with the op named.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfbuild.conversion import UnsupportedOps
from tfbuild.datasets.split import Split
from tfbuild.errors import DataError
from tfbuild.runtimes.litert import LiteRtModel, run_tflite
from tfbuild.runtimes.savedmodel import SavedModelSession, run_saved_model, signature_dtypes
from tfbuild.runtimes.tfjs_node import node_problem, run_tfjs
from tfbuild.formats.tfjs import TfjsStep
from tfbuild.formats.tflite import TfliteStep

from tests.integration.multi_io import (
    TOKEN_TARGETS, TWO_IO_TARGETS, save_serving, step_context, token_inputs, token_model, two_io_inputs,
    two_io_model, write_split,
)  # fmt: skip

pytestmark = pytest.mark.slow
NODE_PROBLEM = node_problem()
needs_node = pytest.mark.skipif(NODE_PROBLEM is not None, reason=str(NODE_PROBLEM))

SAMPLES = {"train": 48, "validation": 4, "test": 40}
# Largest |TFLite - SavedModel| per output, as a fraction of the SavedModel output's largest value.
TFLITE_TOLERANCE = {"float": 1e-5, "dynamic": 0.05, "int8": 0.12}


@pytest.fixture(scope="module")
def two_io(tmp_path_factory):
    """(folder, keras model, test inputs, SavedModel outputs on them)."""
    root = tmp_path_factory.mktemp("two_io")
    model = two_io_model()
    save_serving(model, root / "saved_model")
    write_split(root / "split", two_io_inputs, TWO_IO_TARGETS, SAMPLES)
    x = {name: np.asarray(a) for name, a in Split(root / "split").inputs("test").items()}
    return root, model, x, run_saved_model(root / "saved_model", x)


def convert(step, root, name: str, quantization: str, **params):
    out = root / name
    ctx = step_context(
        {"quantization": quantization, **params}, {"saved_model": root / "saved_model", "data": root / "split"}, out
    )
    return out, step.run(ctx)


def assert_close(outputs: dict, reference: dict, fraction: float) -> None:
    assert list(outputs) and sorted(outputs) == sorted(reference)
    for name, ref in reference.items():
        assert outputs[name].shape == ref.shape and outputs[name].dtype == np.float32, name
        worst = float(np.abs(outputs[name] - ref).max())
        assert worst <= fraction * float(np.abs(ref).max()), name


def test_saved_model_runs_by_name_and_matches_keras(two_io):
    root, model, x, reference = two_io
    assert signature_dtypes(root / "saved_model") == (
        {"image": np.float32, "meta": np.float32}, {"digit": np.float32, "size": np.float32}
    )
    assert {k: v.shape for k, v in reference.items()} == {"digit": (40, 10), "size": (40, 1)}
    digit, size = model.predict([x["image"], x["meta"]], verbose=0)
    np.testing.assert_allclose(reference["digit"], digit, atol=1e-6)
    np.testing.assert_allclose(reference["size"], size, atol=1e-5)
    session = SavedModelSession(root / "saved_model", threads=1)
    try:
        assert session.input_names == ["image", "meta"] and session.output_names == ["digit", "size"]
        assert_close(session.predict(x), reference, 1e-6)
    finally:
        session.close()


@pytest.mark.parametrize("quantization", ["float", "dynamic", "int8"])
def test_tflite_variants_keep_names_and_agree(two_io, quantization):
    root, _, x, reference = two_io
    path, info = convert(TfliteStep(), root, f"{quantization}.tflite", quantization, calibration_samples=32)
    assert sorted(info["inputs"]) == ["image", "meta"] and sorted(info["outputs"]) == ["digit", "size"]
    io_dtype = "int8" if quantization == "int8" else "float32"
    assert {t["dtype"] for t in [*info["inputs"].values(), *info["outputs"].values()]} == {io_dtype}
    assert info["inputs"]["image"]["shape"] == [-1, 8, 8, 1]
    assert info["calibration_samples"] == (32 if quantization == "int8" else None)
    model = LiteRtModel(path, threads=1)
    assert model.input_names == ["image", "meta"] and model.output_names == ["digit", "size"]
    assert_close(run_tflite(path, x), reference, TFLITE_TOLERANCE[quantization])


def test_runtimes_refuse_inputs_that_do_not_match_the_signature(two_io):
    root, _, x, _ = two_io
    with pytest.raises(DataError) as caught:
        run_saved_model(root / "saved_model", {"img": x["image"], "meta": x["meta"]})
    message = str(caught.value)
    assert "\n" not in message and "['image', 'meta']" in message and "missing 'image'" in message
    assert "'img'" in message
    with pytest.raises(DataError, match="different sample counts"):
        run_saved_model(root / "saved_model", {"image": x["image"], "meta": x["meta"][:3]})


@needs_node
def test_tfjs_keeps_signature_names_and_agrees_on_wasm_and_cpu(two_io):
    root, _, x, reference = two_io
    out, info = convert(TfjsStep(), root, "tfjs", "none")
    signature = json.loads((out / "model.json").read_text())["signature"]
    assert sorted(signature["inputs"]) == info["inputs"] == ["image", "meta"]
    assert sorted(signature["outputs"]) == info["outputs"] == ["digit", "size"]
    run = run_tfjs(out, x, ["wasm", "cpu"])
    for backend in ("wasm", "cpu"):
        assert_close(run.outputs[backend], reference, 1e-5)


def test_integer_inputs_are_fed_as_the_signature_wants(tmp_path):
    save_serving(token_model(), tmp_path / "saved_model")
    write_split(tmp_path / "split", token_inputs, TOKEN_TARGETS, SAMPLES)
    assert signature_dtypes(tmp_path / "saved_model")[0] == {"tokens": np.int32}
    x = token_inputs(16, 5)  # float32 ids, as a split holds them
    reference = run_saved_model(tmp_path / "saved_model", x)
    assert reference["probs"].shape == (16, 3)
    _, info = convert(TfliteStep(), tmp_path, "int8.tflite", "int8", calibration_samples=16)
    assert info["inputs"]["tokens"]["dtype"] == "int32"  # ids are not quantized
    assert info["outputs"]["probs"]["dtype"] == "int8"
    assert_close(run_tflite(tmp_path / "int8.tflite", x), reference, 0.08)
    if NODE_PROBLEM is None:
        out, _ = convert(TfjsStep(), tmp_path, "tfjs", "none")
        assert_close(run_tfjs(out, x).outputs["wasm"], reference, 1e-5)


def test_an_op_without_kernel_fails_the_conversion_with_its_name(tmp_path):
    from tfbuild.tfenv import import_tensorflow

    tf = import_tensorflow()

    class Digamma(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="inputs")])
        def serve(self, inputs):
            return {"values": tf.raw_ops.Digamma(x=inputs) * 2.0}

    module = Digamma()
    tf.saved_model.save(module, str(tmp_path / "saved_model"), signatures={"serving_default": module.serve})
    with pytest.raises(UnsupportedOps) as caught:
        convert(TfliteStep(), tmp_path, "float.tflite", "float")
    assert str(caught.value).startswith("TFLite cannot convert op 'tf.Digamma' (")
    assert "\n" not in str(caught.value) and not (tmp_path / "float.tflite").exists()
    with pytest.raises(UnsupportedOps) as caught:
        convert(TfjsStep(), tmp_path, "tfjs", "none")
    assert str(caught.value).startswith("TF.js cannot convert op 'Digamma' (") and "\n" not in str(caught.value)
