"""Model sources other than the registry, with real TensorFlow: a tf_keras.applications network
built by name, and a model trained by plain tf_keras code (a custom layer, two outputs) brought
as .keras, .h5 and SavedModel, loaded in a fresh process that imports only model.modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.integration.user_code import CUSTOM_LAYERS as MY_LAYERS

from tfbuild.models.model_file import check_custom_objects, inspect_model_file


# Plain TensorFlow, as a user writes it: no tfbuild.
TRAIN = '''\
import os
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
import tensorflow as tf
import tf_keras as keras
from my_layers import Offset, Scale

keras.utils.set_random_seed(0)
features, image = keras.Input((6,), name="features"), keras.Input((4, 4, 1), name="image")
x = keras.layers.Concatenate()([Scale(3.0)(features), keras.layers.Flatten()(image)])
x = keras.layers.Dense(8, activation="relu")(Offset()(x))
model = keras.Model([features, image], [keras.layers.Dense(3, activation="softmax", name="label")(x),
                                        keras.layers.Dense(1, name="value")(x)])
rng = np.random.default_rng(0)
inputs = {"features": rng.random((16, 6), dtype=np.float32), "image": rng.random((16, 4, 4, 1), dtype=np.float32)}
model.compile("adam", {"label": "sparse_categorical_crossentropy", "value": "mse"})
model.fit(inputs, {"label": rng.integers(0, 3, 16), "value": rng.random((16, 1))}, epochs=1, verbose=0)
model.save("m.keras"); model.save("m.h5"); model.save("m_savedmodel")
label, value = model.predict(inputs, verbose=0)
np.savez("expected.npz", label=label, value=value, **inputs)


class Plain(tf.Module):  # a SavedModel that is not Keras: carried by its signature
    def __init__(self):
        self.w = tf.Variable(tf.fill((6, 2), 0.5))

    @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32, name="x"), tf.TensorSpec([None], tf.int32, name="ids")])
    def serve(self, x, ids):
        return {"score": tf.matmul(x, self.w), "twice": ids * 2}


plain = Plain()
tf.saved_model.save(plain, "plain_savedmodel", signatures={"serving_default": plain.serve})
'''

# A fresh process: it never imports my_layers itself; tfbuild imports model.modules.
LOAD = '''\
import json, os, sys
sys.path.insert(0, os.getcwd())  # as the tfbuild command does
from tfbuild.tfenv import import_tensorflow
tf = import_tensorflow()
import numpy as np
from tfbuild.errors import DataError
from tfbuild.models.model_file import load_model

expected = np.load("expected.npz")
inputs = {"features": expected["features"], "image": expected["image"]}
report = {}
for path in ("m.keras", "m.h5", "m_savedmodel"):
    model = load_model(path, ["my_layers"])
    label, value = model.predict(inputs, verbose=0)
    report[path] = {
        "inputs": model.input_names, "outputs": model.output_names,
        "classes": sorted({type(layer).__name__ for layer in model.layers if type(layer).__module__ == "my_layers"}),
        "max_diff": float(max(np.abs(label - expected["label"]).max(), np.abs(value - expected["value"]).max())),
    }
for planned in ({}, {"modules:my_layers": "elsewhere/my_layers.py"}):
    try:
        load_model("m.h5", [] if not planned else ["my_layers"], planned=planned)
    except DataError as exc:
        report.setdefault("refused", []).append(str(exc))

serving = load_model("plain_savedmodel", ["my_layers"])
tf.saved_model.save(serving.root, "resaved", signatures={"serving_default": serving.function()})
resaved = tf.saved_model.load("resaved").signatures["serving_default"]
out = resaved(x=tf.ones((2, 6)), ids=tf.constant([1, 2]))
report["plain"] = {
    "inputs": {name: [spec.shape.as_list(), spec.dtype.name] for name, spec in serving.inputs.items()},
    "outputs": serving.outputs,
    "resaved": {name: [t.dtype.name, t.numpy().tolist()] for name, t in sorted(out.items())},
}
print("REPORT=" + json.dumps(report))
'''


@pytest.mark.slow
def test_a_keras_application_is_built_by_name_and_runs_a_batch():
    from tfbuild.tfenv import import_tensorflow

    import_tensorflow()
    from tfbuild.models.keras_app import build_keras_app

    images = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    model = build_keras_app("MobileNetV2", (32, 32, 3), 10, alpha=0.35)
    assert (model.input_names, model.output_names, model.outputs[0].dtype.name) == (["inputs"], ["probabilities"], "float32")
    # One batch, eagerly (a training step would spend 25 s tracing MobileNetV2's gradients).
    probabilities = model(images, training=False).numpy()
    assert probabilities.shape == (4, 10) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)

    regression = build_keras_app("MobileNetV2", {"inputs": (32, 32, 3)}, {"y": 2}, task={"y": "regression"}, alpha=0.35)
    assert regression.output_names == ["values"] and regression(images, training=False).shape == (4, 2)


def run_python(code: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_a_model_with_a_custom_layer_loads_in_a_fresh_process_from_every_format(tmp_path, monkeypatch):
    (tmp_path / "my_layers.py").write_text(MY_LAYERS)
    monkeypatch.syspath_prepend(str(tmp_path))  # where model.modules are found, as from the folder tfbuild runs in
    run_python(TRAIN, tmp_path)

    # Planning, without TensorFlow: names and custom classes from the files themselves.
    for name in ("m.keras", "m.h5"):
        info = inspect_model_file(tmp_path / name)
        assert info.inputs == {"features": ((6,), "float32"), "image": ((4, 4, 1), "float32")}
        assert list(info.outputs) == ["label", "value"]
        assert info.custom_objects == ("Scale", "my_pkg>Offset")
        check_custom_objects(info, ["my_layers"])
    assert inspect_model_file(tmp_path / "m.keras").custom_modules == ("my_layers",)
    assert inspect_model_file(tmp_path / "m_savedmodel").keras
    assert not inspect_model_file(tmp_path / "plain_savedmodel").keras

    stdout = run_python(LOAD, tmp_path)
    report = json.loads(next(line for line in stdout.splitlines() if line.startswith("REPORT="))[len("REPORT="):])
    for name in ("m.keras", "m.h5", "m_savedmodel"):
        loaded = report[name]
        assert (loaded["inputs"], loaded["outputs"]) == (["features", "image"], ["label", "value"]), name
        assert loaded["classes"] == ["Offset", "Scale"], f"{name}: the module's own classes, not revived copies"
        assert loaded["max_diff"] < 1e-5, name
    assert report["refused"] == [
        "model.path: m.h5 uses the custom class Scale: list its module in model.modules",
        f"model.modules: Python imported 'my_layers' from {tmp_path / 'my_layers.py'}, but the build was planned "
        "with elsewhere/my_layers.py (was a module of that name imported before?)",
    ]
    assert report["plain"] == {
        "inputs": {"ids": [[None], "int32"], "x": [[None, 6], "float32"]},
        "outputs": ["score", "twice"],  # sorted, as TensorFlow flattens them
        "resaved": {"score": ["float32", [[3.0, 3.0], [3.0, 3.0]]], "twice": ["float32", [2.0, 4.0]]},
    }

