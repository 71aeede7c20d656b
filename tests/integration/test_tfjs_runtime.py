"""TF.js exports run in real TF.js (Node, cpu and wasm backends) and match the SavedModel.

One session-scoped fixture trains a tiny CNN on a few hundred digits for a moment, saves it
with the project's own SavedModel step, and converts it once per weight quantization.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import tfbuild  # noqa: F401 - first: selects Keras 2 before TensorFlow is imported
from tfbuild.runtimes.tfjs_node import TfjsRuntimeError, node_problem, run_tfjs

BACKENDS = ("cpu", "wasm")
# quantization -> (TF.js converter's quantization_dtype_map, max abs diff allowed vs the SavedModel
# on softmax probabilities). Float is bit-for-bit up to summation order; the others are bounded
# by the weight rounding, with a wide margin over what was measured (print below, pytest -s).
QUANTIZATIONS: dict[str, tuple[dict[str, str] | None, float]] = {
    "float": (None, 1e-5),
    "float16": ({"float16": "*"}, 2e-3),  # measured 1.3e-4
    "uint16": ({"uint16": "*"}, 1e-4),  # measured 5.8e-6: 65536 levels beat fp16's 11-bit mantissa
    "uint8": ({"uint8": "*"}, 2e-2),  # measured 1.4e-3
}

# Without Node or `make setup`, the runtime tests say why in the skip reason (pytest -ra).
NODE_PROBLEM = node_problem()
needs_node = pytest.mark.skipif(NODE_PROBLEM is not None, reason=str(NODE_PROBLEM))


@pytest.fixture(scope="session")
def tfjs_models(tmp_path_factory) -> tuple[np.ndarray, np.ndarray, dict[str, Path]]:
    """(x, SavedModel probabilities for x, quantization -> converted TF.js folder)."""
    from sklearn.datasets import load_digits

    from tensorflowjs.converters import tf_saved_model_conversion_v2 as converter

    from tfbuild.plan import StepSpec
    from tfbuild.steps.base import StepContext
    from tfbuild.steps.saved_model import SavedModelStep
    from tfbuild.tfenv import import_tensorflow, seed_everything

    tf = import_tensorflow()
    import tf_keras as keras

    root = tmp_path_factory.mktemp("tfjs")
    digits = load_digits()
    x_all = (digits.images[..., None] / 16.0).astype(np.float32)
    seed_everything(0)
    model = keras.Sequential(
        [
            keras.layers.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    # A few epochs so the probabilities are peaked and top-1 is a meaningful comparison.
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x_all[:1200], digits.target[:1200], epochs=3, batch_size=64, verbose=0)
    with warnings.catch_warnings():  # "HDF5 is legacy": it is what the train step writes
        warnings.simplefilter("ignore", UserWarning)
        model.save(root / "model.h5", save_format="h5")

    saved_model = root / "saved_model"
    spec = StepSpec(name="saved_model", kind="saved_model")
    SavedModelStep().run(
        StepContext(spec=spec, params={}, inputs={"model": root / "model.h5"}, files={}, outputs={"saved_model": saved_model})
    )
    x = x_all[1200:1456]  # 256 held-out digits
    serve = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    reference = serve(inputs=tf.constant(x))["probabilities"].numpy()

    folders = {}
    for name, (dtype_map, _) in QUANTIZATIONS.items():
        folders[name] = root / f"tfjs_{name}"
        converter.convert_tf_saved_model(
            str(saved_model),
            str(folders[name]),
            signature_def="serving_default",
            saved_model_tags="serve",
            quantization_dtype_map=dtype_map,
        )
    return x, reference, folders


@pytest.mark.slow
@needs_node
@pytest.mark.parametrize("quantization", list(QUANTIZATIONS))
def test_tfjs_matches_saved_model_on_every_backend(tfjs_models, quantization):
    x, reference, folders = tfjs_models
    start = time.perf_counter()
    run = run_tfjs(folders[quantization], x, BACKENDS)
    elapsed = time.perf_counter() - start
    tolerance = QUANTIZATIONS[quantization][1]

    assert run.version == "4.22.0"
    for backend in BACKENDS:
        out = run.outputs[backend]
        assert out.shape == reference.shape and out.dtype == np.float32
        diff = float(np.abs(out - reference).max())
        agree = float(np.mean(out.argmax(1) == reference.argmax(1)))
        timing = run.timings[backend]
        # Shown with -s or on failure: the measured figures this file's tolerances rest on.
        print(f"{quantization:8} {backend:5} max|diff|={diff:.2e} top1={agree:.3f} {timing} run_tfjs={elapsed:.2f}s")
        assert diff < tolerance, f"{quantization}/{backend}: max abs diff {diff:.2e} >= {tolerance:.0e}"
        # Quantized weights may flip a sample whose top two classes are nearly tied; no more.
        assert agree >= (1.0 if quantization == "float" else 0.99)
        assert set(timing) == {"load_ms", "predict_ms"} and timing["predict_ms"] > 0
    # Both backends run the same weights, so they agree far more closely than either with TF.
    assert float(np.abs(run.outputs["cpu"] - run.outputs["wasm"]).max()) < 1e-5


@pytest.mark.slow
@needs_node
def test_corrupted_weight_shard_is_caught(tfjs_models, tmp_path):
    """The parity check has teeth: overwritten weights give outputs that no longer match."""
    x, reference, folders = tfjs_models
    broken = tmp_path / "broken"
    shutil.copytree(folders["float"], broken)
    manifest = json.loads((broken / "model.json").read_text())["weightsManifest"]
    assert len(manifest) == 1 and len(manifest[0]["paths"]) == 1, "the tiny model has one shard"
    # Find the dense kernel's bytes: unquantized float32/int32 weights are 4 bytes per value,
    # laid out in manifest order.
    offset = 0
    for weight in manifest[0]["weights"]:
        size = int(np.prod(weight["shape"])) * 4
        if weight["dtype"] == "float32" and len(weight["shape"]) == 2:
            break
        offset += size
    else:
        pytest.fail("no dense kernel in the manifest")
    shard = broken / manifest[0]["paths"][0]
    data = bytearray(shard.read_bytes())
    rng = np.random.default_rng(0)
    data[offset : offset + size] = (rng.standard_normal(size // 4) * 100).astype("<f4").tobytes()
    shard.write_bytes(bytes(data))

    run = run_tfjs(broken, x, BACKENDS)
    for backend in BACKENDS:
        out = run.outputs[backend]
        assert float(np.abs(out - reference).max()) > 0.5
        assert float(np.mean(out.argmax(1) == reference.argmax(1))) < 0.5


def test_node_problem_names_the_missing_node_and_the_fix():
    message = node_problem("tfbuild-no-such-node")
    assert message is not None and "\n" not in message
    assert "Node.js not found" in message and "tfbuild-no-such-node" in message
    assert "make setup" in message and "18" in message


def test_run_tfjs_with_unusable_node_raises_the_same_message(tmp_path):
    with pytest.raises(TfjsRuntimeError, match="Node.js not found"):
        run_tfjs(tmp_path, np.zeros((1, 8, 8, 1), np.float32), ["cpu"], node="tfbuild-no-such-node")


@needs_node
def test_folder_without_model_json_is_a_one_line_error(tmp_path):
    with pytest.raises(TfjsRuntimeError) as caught:
        run_tfjs(tmp_path, np.zeros((1, 8, 8, 1), np.float32), ["cpu", "wasm"])
    message = str(caught.value)
    assert message == f"tfjs_run: no model.json in {tmp_path.resolve()}"
