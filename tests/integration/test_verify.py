"""TF.js exports and verification: every artifact run on its own runtime (LiteRT, TF.js in
Node on cpu and wasm) against the SavedModel reloaded from disk, within its tolerance; and a
broken artifact is caught."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tfbuild.datasets.split import Split
from tfbuild.outputs_io import load_outputs
from tfbuild.plan import StepSpec
from tfbuild.runtimes.tfjs_node import node_problem
from tfbuild.steps.base import StepContext
from tfbuild.steps.verify import VerificationFailed, VerifyStep

from tests.integration.conftest import info, step_result

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(node_problem() is not None, reason=f"TF.js verification needs Node: {node_problem()}"),
]

TFLITE = ("float", "dynamic", "fp16", "int8", "int16x8")
TFJS = ("none", "float16", "uint8", "uint16")


def test_every_tfjs_variant_is_a_graph_model_with_canonical_json(built):
    root, _, result = built
    for q in TFJS:
        folder = root / "run" / "tfjs" / q
        text = (folder / "model.json").read_text()
        model = json.loads(text)
        assert model["format"] == "graph-model"
        assert text == json.dumps(model, sort_keys=True, separators=(",", ":")), "sorted keys: equal models, equal bytes"
        for group in model["weightsManifest"]:
            for shard in group["paths"]:
                assert (folder / shard).stat().st_size > 0
        assert info(result, f"tfjs[{q}]")["quantization"] == q
    sizes = {q: info(result, f"tfjs[{q}]")["gzip_bytes"] for q in TFJS}
    assert sizes["uint8"] < sizes["float16"] < sizes["none"]


def test_each_artifact_ran_on_its_runtime_within_its_tolerance(built):
    _, cfg, result = built
    reference = info(result, "reference")
    assert reference["runtime"] == "TensorFlow SavedModel" and reference["samples"] == 120
    assert list(reference["metrics"]) == ["probabilities"], "the registry model's one output scores the one target"
    for fmt, variants in (("tflite", TFLITE), ("tfjs", TFJS)):
        for q in variants:
            figures = info(result, f"verify[{fmt}/{q}]")
            tolerance = cfg.verify.tolerances[fmt][q]
            runtimes = figures["runtimes"]
            if fmt == "tflite":
                assert list(runtimes) == ["LiteRT 2.3.0"]
            else:
                assert sorted(runtimes) == ["TF.js 4.22.0 cpu", "TF.js 4.22.0 wasm"], "both backends ran"
            verified = info(result, f"verify[{fmt}/{q}]")
            assert verified["reference_metrics"] == reference["metrics"]
            for name, run in runtimes.items():
                assert run["samples"] == 120 and list(run["outputs"]) == ["probabilities"], name
                if tolerance.max_abs_diff is not None:
                    assert run["max_abs_diff"] <= tolerance.max_abs_diff, (fmt, q, name)
                assert run["top1_agreement"] >= tolerance.min_top1_agreement, (fmt, q, name)
                assert -1 <= run["min_cosine"] <= 1 and run["max_rel_diff"] >= 0
    # Float exports reproduce the reference almost exactly; quantized ones measurably do not.
    assert info(result, "verify[tflite/float]")["max_abs_diff"] < 1e-5
    assert info(result, "verify[tfjs/none]")["max_abs_diff"] < 1e-5
    assert info(result, "verify[tflite/int8]")["max_abs_diff"] > 1e-4


def _verify(result, artifact_path, fmt: str, variant: str, tolerance: dict, backends=("cpu", "wasm")) -> dict:
    """Run the verify step on `artifact_path` with the shared build's data and reference."""
    params = {"format": fmt, "variant": variant, "samples": None, "tolerance": tolerance, "task": "classification",
              "task_outputs": {}}
    if fmt == "tfjs":
        params.update(backends=list(backends), node="node")
    ctx = StepContext(
        spec=StepSpec(name=f"verify[{fmt}/{variant}]", kind="verify", params=params),
        params=params,
        inputs={
            "artifact": artifact_path,
            "reference": step_result(result, "reference").entry.output_path("outputs"),
            "data": step_result(result, "data").entry.output_path("split"),
        },
        files={},
        outputs={},
    )
    return VerifyStep().run(ctx)


def test_tfjs_weights_altered_after_conversion_fail_verification(built, tmp_path):
    root, _, result = built
    broken = tmp_path / "tfjs_none"
    shutil.copytree(root / "run" / "tfjs" / "none", broken)
    model = json.loads((broken / "model.json").read_text())
    (shard,) = model["weightsManifest"][0]["paths"]
    weights = np.frombuffer((broken / shard).read_bytes(), np.float32).copy()
    weights[-650:] *= -1.0  # the head's kernel and bias (64x10 + 10) are stored last
    (broken / shard).write_bytes(weights.tobytes())
    tolerance = {"max_abs_diff": 1e-4, "mean_abs_diff": None, "max_rel_diff": None, "min_cosine": None,
                 "min_top1_agreement": 0.99}
    with pytest.raises(VerificationFailed) as failure:
        _verify(result, broken, "tfjs", "none", tolerance)
    message = str(failure.value)
    assert message.startswith("tfjs/none does not match the SavedModel: TF.js 4.22.0 cpu: max abs diff ")
    assert "> max_abs_diff 0.0001" in message and "top-1 agreement" in message and "wasm" in message
    # The untouched copy passes the same check.
    assert _verify(result, root / "run" / "tfjs" / "none", "tfjs", "none", tolerance)["top1_agreement"] == 1.0


def test_tflite_weights_altered_after_conversion_fail_verification(built, tmp_path):
    root, _, result = built
    import tf_keras as keras

    model = keras.models.load_model(step_result(result, "train").entry.output_path("model"), compile=False)
    # TFLite stores a Dense kernel transposed ([out, in]); find the head's bytes and negate them.
    kernel = model.get_layer("probabilities").kernel.numpy().T.astype(np.float32)
    data = bytearray((root / "run" / "tflite" / "model_float.tflite").read_bytes())
    at = bytes(data).find(kernel.tobytes())
    assert at > 0, "the head's kernel is stored verbatim in the float .tflite"
    data[at : at + kernel.nbytes] = (-kernel).tobytes()
    broken = tmp_path / "model_float.tflite"
    broken.write_bytes(bytes(data))
    tolerance = {"max_abs_diff": 1e-4, "mean_abs_diff": None, "max_rel_diff": None, "min_cosine": None,
                 "min_top1_agreement": 0.99}
    with pytest.raises(VerificationFailed, match=r"^tflite/float does not match the SavedModel: LiteRT 2\.3\.0: max abs diff .* > max_abs_diff 0\.0001"):
        _verify(result, broken, "tflite", "float", tolerance)


def test_a_bound_just_past_the_measured_figure_fails_and_at_it_passes(built):
    _, _, result = built
    measured = info(result, "verify[tflite/int8]")["top1_agreement"]
    path = step_result(result, "tflite[int8]").entry.output_path("model")
    bound = {"max_abs_diff": None, "mean_abs_diff": None, "max_rel_diff": None, "min_cosine": None}
    with pytest.raises(VerificationFailed, match=r"top-1 agreement .* < min_top1_agreement"):
        _verify(result, path, "tflite", "int8", dict(bound, min_top1_agreement=measured + 1e-6))
    assert _verify(result, path, "tflite", "int8", dict(bound, min_top1_agreement=measured))["top1_agreement"] == measured


def test_the_reference_is_the_saved_model_from_disk(built):
    root, _, result = built
    import tensorflow as tf

    inputs = Split(step_result(result, "data").entry.output_path("split")).inputs("test")
    serve = tf.saved_model.load(str(root / "run" / "saved_model")).signatures["serving_default"]
    expected = serve(**{name: tf.constant(x) for name, x in inputs.items()})["probabilities"].numpy()
    reference = load_outputs(step_result(result, "reference").entry.output_path("outputs"))
    assert list(reference) == ["probabilities"]
    np.testing.assert_array_equal(reference["probabilities"], expected)
