"""Models that are not tfbuild's demo: a model trained with plain TensorFlow (a custom layer,
a classification and a regression output) brought as a file, regression recipes, image
folders, generated inputs, and a custom layer surviving a cached training. Each runs the
installed `tfbuild` as a user does."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_tfbuild
from tests.integration.user_code import CUSTOM_LAYERS as MY_LAYERS

BENCH = ["benchmark.warmup=1", "benchmark.min_runs=3", "benchmark.min_seconds=0"]



def _train_two_output_model(folder: Path, seed: int) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    """Plain tf_keras code, as a user writes it: features -> Scale -> Dense -> a 3-class head
    `kind` and a regression head `size`; trained one epoch and saved as .keras."""
    import importlib.util

    import tf_keras as keras

    # Loaded from its file, not by name: other tests in this process have a my_layers of their own.
    spec = importlib.util.spec_from_file_location("plain_tf_layers", folder / "my_layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    Scale = module.Scale
    rng = np.random.RandomState(0)
    x = rng.rand(240, 4).astype(np.float32)
    kind = (x[:, 0] * 3).astype(np.int64).clip(0, 2)
    size = (x[:, 1] * 10 + x[:, 2]).astype(np.float32)
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,), name="features")
    hidden = keras.layers.Dense(16, activation="relu")(Scale(name="scale")(inputs))
    model = keras.Model(inputs, {"kind": keras.layers.Dense(3, activation="softmax", name="kind")(hidden),
                                 "size": keras.layers.Dense(1, name="size")(hidden)})
    model.compile("adam", {"kind": "sparse_categorical_crossentropy", "size": "mse"})
    model.fit(x, {"kind": kind, "size": size}, epochs=1, verbose=0)
    path = folder / "model.keras"
    model.save(path)
    return path, x, kind, size


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("project")
    (folder / "my_layers.py").write_text(MY_LAYERS)
    path, x, kind, size = _train_two_output_model(folder, seed=1)
    rows = ["f0,f1,f2,f3,kind,size"] + [
        ",".join([*(f"{v:.6f}" for v in xs), str(int(k)), f"{s:.6f}"]) for xs, k, s in zip(x, kind, size)
    ]
    (folder / "table.csv").write_text("\n".join(rows) + "\n")
    return folder


FILE_BUILD = [
    "model=file", "model.path=model.keras", "model.modules=[my_layers]",
    "data=csv", "data.path=table.csv", "data.label=[kind,size]", "task.outputs.size=regression",
    "export.formats=[saved_model,tflite,tfjs]", "export.tflite.quantization=[float,int8]",
    "data.calibration_samples=16", *BENCH,
]  # fmt: skip


def _statuses(run: Path) -> dict[str, str]:
    return {s["name"]: s["status"] for s in json.loads((run / "build.json").read_text())["steps"]}


@pytest.mark.slow
def test_a_model_trained_with_plain_tensorflow_builds_from_a_csv_with_its_names_kept(project):
    run = project / "run1"
    result = run_tfbuild(*FILE_BUILD, f"hydra.run.dir={run}", cwd=project)
    assert result.returncode == 0, result.stderr
    statuses = _statuses(run)
    assert "train" not in statuses, "a trained model starts the graph: no training step"
    report = json.loads((run / "report.json").read_text())
    rows = {row["artifact"]: row for row in report["rows"]}
    assert set(rows) == {"saved_model", "tflite/float", "tflite/int8", "tfjs/none"}
    for row in rows.values():
        assert row["tasks"] == {"kind": "classification", "size": "regression"}
        assert set(row["metrics"]["kind"]) >= {"accuracy"} and set(row["metrics"]["size"]) >= {"mae", "rmse"}
        assert row["verify"] in ("reference", "passed")
    # The names are the model's in every signature.
    saved = json.loads((run / "build.json").read_text())
    info = next(s for s in saved["steps"] if s["name"] == "saved_model")["info"]
    assert list(info["inputs"]) == ["features"] and sorted(info["outputs"]) == ["kind", "size"]
    model_json = json.loads((run / "tfjs" / "none" / "model.json").read_text())
    assert sorted(model_json["signature"]["outputs"]) == ["kind", "size"]


@pytest.mark.slow
def test_replacing_the_model_file_rebuilds_what_depends_on_it_and_nothing_else(project, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    assert run_tfbuild(*FILE_BUILD, f"hydra.run.dir={first}", cwd=project).returncode == 0
    _train_two_output_model(project, seed=2)  # new weights, same path
    result = run_tfbuild(*FILE_BUILD, f"hydra.run.dir={second}", cwd=project)
    assert result.returncode == 0, result.stderr
    statuses = _statuses(second)
    assert statuses["data"] == "cached", "the data does not depend on the model"
    assert statuses["saved_model"] == "built" and statuses["tflite[int8]"] == "built"
    build = json.loads((second / "build.json").read_text())
    why = next(s for s in build["steps"] if s["name"] == "saved_model")["reason"]
    assert "model" in why, why


@pytest.mark.slow
def test_without_data_exports_are_verified_on_generated_inputs(project):
    run = project / "run_generated"
    result = run_tfbuild(
        "model=file", "model.path=model.keras", "model.modules=[my_layers]", "data=none",
        "export.formats=[tflite]", "export.tflite.quantization=[float,fp16]", *BENCH,
        f"hydra.run.dir={run}", cwd=project,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((run / "report.json").read_text())
    assert report["generated_inputs"] is True
    assert all(row["metrics"] == {} and row["accuracy"] is None for row in report["rows"])
    verified = {row["artifact"]: row["verify"] for row in report["rows"]}
    assert verified == {"saved_model": "reference", "tflite/float": "passed", "tflite/fp16": "passed"}
    assert "generated" in (run / "report.md").read_text().lower()


@pytest.mark.slow
def test_the_regression_recipe_builds_and_gates_on_mae(tmp_path):
    result = run_tfbuild("recipe=diabetes", "train.epochs=3", *BENCH, "gates.max_mae=1000", f"hydra.run.dir={tmp_path / 'run'}",
                         cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "run" / "report.json").read_text())["rows"]
    assert {row["artifact"] for row in rows} == {"saved_model", "tflite/float", "tflite/dynamic", "tfjs/none"}
    assert all(row["mae"] > 0 and row["rmse"] >= row["mae"] and row["accuracy"] is None for row in rows)
    failing = run_tfbuild("recipe=diabetes", "train.epochs=3", *BENCH, "gates.max_mae=1", cwd=tmp_path)
    assert failing.returncode == 1 and "max_mae" in failing.stderr, failing.stderr


@pytest.mark.slow
def test_the_mobilenet_recipe_builds_a_keras_application_on_resized_digits(tmp_path):
    # One epoch on a few samples: what is checked is the chain (resize to 32x32x3, MobileNetV2,
    # every export verified); the accuracy a full build reaches is in benchmarks/.
    result = run_tfbuild(
        "recipe=digits_mobilenet", "train.epochs=1", "data.limit=200", "data.calibration_samples=16",
        "verify.tolerances.tflite.int8.min_top1_agreement=0.5", *BENCH, f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    build = json.loads((tmp_path / "run" / "build.json").read_text())
    info = {s["name"]: s["info"] for s in build["steps"]}
    assert info["data"]["inputs"]["inputs"]["shape"] == [32, 32, 3]
    assert info["saved_model"]["inputs"]["inputs"]["shape"] == [None, 32, 32, 3]
    assert {"tflite[float]", "tflite[int8]", "tfjs[none]", "verify[tfjs/none]"} <= set(info)


@pytest.mark.slow
def test_an_image_folder_trains_and_exports(tmp_path):
    import tensorflow as tf

    rng = np.random.RandomState(0)
    for label, level in (("dark", 40), ("light", 210)):
        (tmp_path / "pics" / label).mkdir(parents=True)
        for i in range(24):
            pixels = np.clip(rng.normal(level, 20, (12, 10, 3)), 0, 255).astype(np.uint8)
            (tmp_path / "pics" / label / f"{i:02d}.png").write_bytes(tf.io.encode_png(pixels).numpy())
    result = run_tfbuild(
        "data=images", "data.path=pics", "data.image_size=[8,8]", "model=cnn", "train.epochs=2",
        "export.formats=[tflite]", "export.tflite.quantization=[float]", *BENCH, f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    build = json.loads((tmp_path / "run" / "build.json").read_text())
    data = next(s for s in build["steps"] if s["name"] == "data")["info"]
    assert data["inputs"]["inputs"]["shape"] == [8, 8, 3] and sum(data["samples"].values()) == 48


MY_MODELS = textwrap.dedent('''
    import tf_keras as keras

    from my_layers import Scale


    def build(input_shape, num_classes):
        inputs = keras.Input(input_shape, name="inputs")
        x = keras.layers.Flatten()(Scale(name="scale")(inputs))
        return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x))
''')


@pytest.mark.slow
def test_a_custom_layer_loads_when_training_is_cached_and_a_fresh_process_exports(tmp_path):
    (tmp_path / "my_layers.py").write_text(MY_LAYERS)
    (tmp_path / "my_models.py").write_text(MY_MODELS)
    build = ["recipe=digits", "model=custom", "model._target_=my_models.build", "model.modules=[my_layers]",
             "train.epochs=1", "data.limit=200", "data.calibration_samples=16", "verify.enabled=false",
             "benchmark.enabled=false"]  # fmt: skip
    assert run_tfbuild(*build, "export.tflite.quantization=[float]", cwd=tmp_path).returncode == 0
    # A new process: training is cached, and the SavedModel step reloads model.h5, whose Scale
    # layer only model.modules can provide.
    result = run_tfbuild(*build, "export.tflite.quantization=[float,dynamic]", "force=[saved_model]",
                         f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    statuses = _statuses(tmp_path / "run")
    assert statuses["train"] == "cached" and statuses["saved_model"] == "built"
