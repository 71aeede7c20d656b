"""The training library with real TensorFlow on tiny splits written with SplitWriter: tasks,
several inputs and outputs, optimizers and schedules, early stopping, class weights,
streaming against in-memory feeding, strategies, and loading with the user's modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.integration.user_code import CUSTOM_LAYERS as MY_LAYERS

from tfbuild.datasets.split import ArraySpec
from tfbuild.errors import DataError
from tfbuild.training.tasks import CLASSIFICATION, LOSS_NAMES, REGRESSION

from tests.unit.test_training import write_split

pytestmark = pytest.mark.slow

BASE = {"model_params": {}, "epochs": 2, "batch_size": 16, "learning_rate": 0.01, "seed": 0, "strategy": "default",
        "precision": "float32", "jit_compile": False}  # fmt: skip


class Ticks:
    def __init__(self):
        self.lines: list[str] = []
        self.positions: list[tuple[int, int]] = []

    def start(self, total, description):
        self.lines.append(f"start {total}")

    def advance(self, description=None):
        self.lines.append(description)

    def update(self, completed, total, description=None):
        self.positions.append((completed, total))


@pytest.fixture(scope="module")
def tf():
    from tfbuild.tfenv import import_tensorflow

    return import_tensorflow()


@pytest.fixture(scope="module")
def two_by_two(tmp_path_factory):
    """Inputs a (5 values) and b (3), targets c (2 classes) and v (2 values): 200 samples."""
    r = np.random.RandomState(0)
    a, b = r.rand(200, 5).astype(np.float32), r.rand(200, 3).astype(np.float32)
    c = (a[:, 0] + b[:, 0] > 1).astype(np.int64)
    v = np.stack([a[:, 1] * 2, b[:, 1] - a[:, 2]], axis=1).astype(np.float32)
    return write_split(tmp_path_factory.mktemp("split") / "two", {
        "a": (ArraySpec((5,), "float32"), a), "b": (ArraySpec((3,), "float32"), b),
    }, {
        "c": (ArraySpec((), "int64", CLASSIFICATION, 2), c), "v": (ArraySpec((2,), "float32", REGRESSION), v),
    })  # fmt: skip


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    """y = x . w + 3 (two values per sample) on 8 features: 300 samples."""
    r = np.random.RandomState(1)
    x = r.randn(300, 8).astype(np.float32)
    y = (x @ r.randn(8, 2) + 3).astype(np.float32)
    return write_split(tmp_path_factory.mktemp("split") / "reg", {"inputs": (ArraySpec((8,), "float32"), x)},
                       {"y": (ArraySpec((2,), "float32", REGRESSION), y)})  # fmt: skip


def test_the_loss_table_is_what_tf_keras_resolves(tf):
    import tf_keras as keras

    known = set()
    for name in dir(keras.losses):
        if name.startswith("_") or name in ("get", "serialize", "deserialize", "Loss", "Reduction"):
            continue
        try:
            keras.losses.get(name)
        except ValueError:
            continue
        known.add(name)
    assert set(LOSS_NAMES) == known


def test_regression_trains_a_linear_values_head_and_reports_mae_and_rmse(tf, regression, tmp_path):
    from tfbuild.training.keras_io import load_model
    from tfbuild.training.trainer import train

    ticks = Ticks()
    info = train({**BASE, "builder": "mlp", "epochs": 6, "learning_rate": 0.02}, regression.folder, tmp_path / "m.h5", ticks)
    test = regression.targets("test")["y"]
    assert info["outputs"] == {"values": {"target": "y", "task": REGRESSION, "loss": "mse"}}
    assert set(info["test_metrics"]["values"]) == {"mae", "rmse"}
    assert info["test_mae"] < float(np.mean(np.abs(test))) / 2, "learnt more than predicting zero"
    assert info["num_classes"] == 2 and info["input_shape"] == [8] and info["summary"].startswith("test MAE ")
    assert ticks.lines[0] == "start 6" and len(ticks.lines) == 7 and ticks.lines[-1].startswith("epoch 6/6 loss ")
    model = load_model(tmp_path / "m.h5")
    assert model.output_names == ["values"] and model.layers[-1].get_config()["activation"] == "linear"
    assert model.outputs[0].dtype.name == "float32"


def test_two_inputs_two_outputs_with_the_mlp_registry_builder(tf, two_by_two, tmp_path):
    from tfbuild.training.keras_io import load_model
    from tfbuild.training.trainer import train

    info = train({**BASE, "builder": "mlp", "loss": {"v": "huber"}}, two_by_two.folder, tmp_path / "m.h5", Ticks())
    assert info["outputs"] == {"c": {"target": "c", "task": CLASSIFICATION, "loss": "sparse_categorical_crossentropy"},
                               "v": {"target": "v", "task": REGRESSION, "loss": "huber"}}  # fmt: skip
    assert set(info["test_metrics"]) == {"c", "v"} and set(info["test_metrics"]["v"]) == {"mae", "rmse"}
    assert 0 <= info["test_accuracy"] <= 1 and {"c_accuracy", "v_mae", "val_v_rmse"} <= set(info["final"])
    assert info["input_shape"] == {"a": [5], "b": [3]} and info["num_classes"] == {"c": 2, "v": 2}
    model = load_model(tmp_path / "m.h5")
    assert (model.input_names, model.output_names) == (["a", "b"], ["c", "v"])


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "rmsprop"])
def test_each_optimizer_trains_under_a_cosine_schedule_that_ends_at_zero(tf, two_by_two, optimizer):
    from tfbuild.models.builders import mlp
    from tfbuild.training.builders import builder_arguments
    from tfbuild.training.feed import wire
    from tfbuild.training.fit import fit
    from tfbuild.training.optimizers import make_optimizer

    input_shape, units, task = builder_arguments(two_by_two)
    model = mlp(input_shape, units, task=task)
    steps = -(-two_by_two.count("train") // 16) * 2
    made = make_optimizer(optimizer, 0.01, weight_decay=0.01, schedule="cosine", total_steps=steps)
    fitted = fit(model, two_by_two, wire(model, two_by_two), Ticks(), optimizer=made, epochs=2, batch_size=16, seed=0)
    assert type(model.optimizer).__name__ == {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop"}[optimizer]
    assert int(model.optimizer.iterations) == steps and np.isfinite(fitted.final["loss"])
    schedule = model.optimizer.get_config()["learning_rate"]
    assert schedule["class_name"] == "CosineDecay"
    assert {k: schedule["config"][k] for k in ("initial_learning_rate", "decay_steps", "alpha")} == {
        "initial_learning_rate": 0.01, "decay_steps": steps, "alpha": 0.0}  # fmt: skip
    # The last step ran at cos(pi * 15/16): about 1% of the initial rate.
    assert 0 < float(model.optimizer.learning_rate) < 0.01 * 0.02


def test_training_reports_each_batch_position_and_each_epoch(tf, two_by_two, monkeypatch):
    from tfbuild.models.builders import mlp
    from tfbuild.training.builders import builder_arguments
    from tfbuild.training.feed import wire
    from tfbuild.training.fit import EpochProgress, fit
    from tfbuild.training.optimizers import make_optimizer

    monkeypatch.setattr(EpochProgress, "INTERVAL_S", 0.0)  # every batch, to see them all
    input_shape, units, task = builder_arguments(two_by_two)
    model, ticks = mlp(input_shape, units, task=task), Ticks()
    fit(model, two_by_two, wire(model, two_by_two), ticks, optimizer=make_optimizer("adam", 0.01), epochs=2,
        batch_size=16, seed=0)  # fmt: skip
    steps = -(-two_by_two.count("train") // 16)
    assert ticks.positions == [(i, 2 * steps) for i in range(1, 2 * steps + 1)]
    assert ticks.lines[0] == "start 2" and [line.split(" accuracy")[0] for line in ticks.lines[1:]] == ["epoch 1/2", "epoch 2/2"]


def test_early_stopping_ends_training_when_validation_loss_stops_improving(tf, two_by_two, tmp_path):
    from tfbuild.training.trainer import train

    # A zero learning rate: validation loss never improves on the first epoch's.
    ticks = Ticks()
    info = train({**BASE, "builder": "mlp", "epochs": 5, "optimizer": "sgd", "learning_rate": 0.0,
                  "early_stopping_patience": 1}, two_by_two.folder, tmp_path / "m.h5", ticks)  # fmt: skip
    assert (info["epochs"], info["epochs_run"]) == (5, 2)
    assert ticks.lines[-1].endswith(", early stop") and info["summary"].endswith("stopped after 2/5 epochs")


def test_balanced_class_weight_lifts_the_rare_class(tf, tmp_path):
    from tfbuild.models.builders import mlp
    from tfbuild.training.feed import wire
    from tfbuild.training.fit import fit
    from tfbuild.training.optimizers import make_optimizer

    # Features carry no signal and 10% of labels are 1: unweighted, the model learns "always 0".
    r = np.random.RandomState(2)
    y = (r.rand(300) < 0.1).astype(np.int64)
    split = write_split(tmp_path / "rare", {"inputs": (ArraySpec((4,), "float32"), r.rand(300, 4).astype(np.float32))},
                        {"label": (ArraySpec((), "int64", CLASSIFICATION, 2), y)})  # fmt: skip
    rare = {}
    for weighting in (None, "balanced"):
        model = mlp((4,), 2, hidden_units=(8,))
        fit(model, split, wire(model, split), Ticks(), optimizer=make_optimizer("adam", 0.05), epochs=3, batch_size=16,
            seed=0, class_weight=weighting)  # fmt: skip
        rare[weighting] = float(np.mean(model.predict(split.inputs("test")["inputs"], verbose=0)[:, 1]))
    assert rare[None] < 0.25 and rare["balanced"] > rare[None] + 0.15, rare


def test_class_weight_on_two_outputs_is_refused_before_fitting(tf, two_by_two, tmp_path):
    from tfbuild.training.trainer import train

    with pytest.raises(DataError, match="train.class_weight=balanced applies to a model with one classification output"):
        train({**BASE, "builder": "mlp", "class_weight": "balanced"}, two_by_two.folder, tmp_path / "m.h5", Ticks())
    assert not (tmp_path / "m.h5").exists()


def test_streaming_trains_the_same_weights_as_in_memory(tf, two_by_two):
    from tfbuild.models.builders import mlp
    from tfbuild.tfenv import seed_everything
    from tfbuild.training.builders import builder_arguments
    from tfbuild.training.feed import wire
    from tfbuild.training.fit import evaluate, fit
    from tfbuild.training.optimizers import make_optimizer

    results = []
    for limit in (0, None):  # 0: every part streams through Split.batches
        seed_everything(0)
        input_shape, units, task = builder_arguments(two_by_two)
        model = mlp(input_shape, units, task=task)
        wiring = wire(model, two_by_two)
        fit(model, two_by_two, wiring, Ticks(), optimizer=make_optimizer("adam", 0.01), epochs=2, batch_size=16, seed=3,
            memory_limit=limit)  # fmt: skip
        results.append((model.get_weights(), evaluate(model, two_by_two, wiring, memory_limit=limit)))
    (streamed, streamed_test), (in_memory, in_memory_test) = results
    assert all(np.array_equal(s, m) for s, m in zip(streamed, in_memory))
    assert streamed_test == in_memory_test


@pytest.mark.parametrize(
    "outputs, message",
    [
        (["c", "x"], "the model's outputs (c, x) do not match the data's (c, v)"),
        (["c"], "the model's outputs (c) do not match the data's (c, v)"),
    ],
)
def test_a_model_that_does_not_fit_the_data_is_refused_before_fitting(tf, two_by_two, outputs, message):
    import tf_keras as keras

    from tfbuild.training.feed import wire

    a, b = keras.Input((5,), name="a"), keras.Input((3,), name="b")
    x = keras.layers.Concatenate()([a, b])
    model = keras.Model([a, b], [keras.layers.Dense(2, name=n)(x) for n in outputs])
    with pytest.raises(DataError) as error:
        wire(model, two_by_two)
    assert str(error.value).startswith(message)


def test_input_shape_and_units_mismatches_name_the_tensor(tf, two_by_two):
    import tf_keras as keras

    from tfbuild.training.feed import wire

    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    x = keras.layers.Concatenate()([a, b])
    model = keras.Model([a, b], [keras.layers.Dense(2, name="c")(x), keras.layers.Dense(2, name="v")(x)])
    with pytest.raises(DataError, match=r"model input 'a' takes samples of shape \(4,\), the data's input 'a' has \(5,\)"):
        wire(model, two_by_two)
    a = keras.Input((5,), name="a")
    x = keras.layers.Concatenate()([a, b])
    model = keras.Model([a, b], [keras.layers.Dense(2, name="c")(x), keras.layers.Dense(3, name="v")(x)])
    with pytest.raises(DataError, match="model output 'v' has 3 values per sample, regression target 'v' has 2"):
        wire(model, two_by_two)


@pytest.mark.parametrize("method", ["prune", "cluster", "qat"])
def test_compression_fine_tunes_and_keeps_the_output_names(tf, two_by_two, method):
    from tfbuild.models.builders import mlp
    from tfbuild.training import compression
    from tfbuild.training.builders import builder_arguments
    from tfbuild.training.feed import wire
    from tfbuild.training.fit import fit
    from tfbuild.training.optimizers import make_optimizer

    input_shape, units, task = builder_arguments(two_by_two)
    trained = mlp(input_shape, units, task=task)
    wiring = wire(trained, two_by_two)
    chosen = compression.method(method, {"sparsity": 0.5, "clusters": 4}, total_steps=8)
    model = compression.wrapped(chosen, trained)
    assert model.output_names == ["c", "v"]
    fit(model, two_by_two, wiring, Ticks(), optimizer=make_optimizer("adam", 0.001), epochs=1, batch_size=16, seed=0,
        callbacks=chosen.callbacks)  # fmt: skip
    assert chosen.strip(model).output_names == ["c", "v"]


MY_MODELS = """\
import tf_keras as keras
from training_scale_layers import Scale


def build(input_shape, num_classes):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(Scale(3.0)(inputs)))
"""
def test_a_custom_layer_trains_and_loads_only_with_its_module_imported(tf, regression, tmp_path, monkeypatch):
    from tfbuild.training.trainer import train

    # Module names of their own: other tests in this process import a my_models of theirs.
    (tmp_path / "training_scale_layers.py").write_text(MY_LAYERS)
    (tmp_path / "training_scale_models.py").write_text(MY_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    files = {"builder": tmp_path / "training_scale_models.py", "modules:training_scale_layers": tmp_path / "training_scale_layers.py"}
    info = train({**BASE, "builder": "training_scale_models.build", "modules": ["training_scale_layers"], "epochs": 1}, regression.folder,
                 tmp_path / "m.h5", Ticks(), files)  # fmt: skip
    assert [o["task"] for o in info["outputs"].values()] == [REGRESSION]

    def load(modules):
        code = textwrap.dedent(f"""
            from tfbuild.tfenv import import_tensorflow
            from tfbuild.training.keras_io import load_model
            import_tensorflow()
            print(type(load_model({str(tmp_path / 'm.h5')!r}, modules={modules!r}).layers[1]).__name__)
        """)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)

    assert load(["training_scale_layers"]).stdout.strip() == "Scale"
    refused = load([])
    assert refused.returncode != 0 and "uses the custom class Scale" in refused.stderr


TRAIN_TWICE_MIRRORED = """\
import json, os, sys
from pathlib import Path
from tfbuild.training.trainer import train

class Quiet:
    def start(self, total, description): pass
    def advance(self, description=None): pass

params, data, out = json.loads(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
infos = []
for megabytes in ("0", "128"):  # streamed, then gathered from memory
    os.environ["TFBUILD_IN_MEMORY_MB"] = megabytes
    infos.append(train(params, data, out / f"{megabytes}.h5", Quiet()))
print(json.dumps(infos))
"""


def test_mirrored_over_two_logical_cpus_streams_and_gathers_alike(two_by_two, tmp_path):
    """In its own process: the CPU is split into logical devices before TensorFlow starts."""
    params = {**BASE, "builder": "mlp", "strategy": "mirrored", "cpu_devices": 2}
    result = subprocess.run([sys.executable, "-c", TRAIN_TWICE_MIRRORED, json.dumps(params), str(two_by_two.folder),
                             str(tmp_path)], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": "-1"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    streamed, in_memory = json.loads(result.stdout.strip().splitlines()[-1])
    assert (streamed["strategy"], streamed["replicas"], streamed["global_batch_size"]) == ("MirroredStrategy", 2, 32)
    assert streamed["test_metrics"] == in_memory["test_metrics"] and streamed["final"] == in_memory["final"]


def test_two_local_workers_train_from_a_streamed_split(two_by_two, tmp_path, monkeypatch):
    from tfbuild.training.workers import train_on_local_workers

    monkeypatch.setenv("TFBUILD_IN_MEMORY_MB", "0")  # the workers inherit it: the generator path
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    ticks = Ticks()
    params = {**BASE, "builder": "mlp", "strategy": "multi_worker", "workers": 2}
    info = train_on_local_workers(params, two_by_two.folder, tmp_path / "m.h5", ticks)
    assert (info["strategy"], info["replicas"], info["workers"]) == ("MultiWorkerMirroredStrategy", 2, 2)
    assert set(info["test_metrics"]) == {"c", "v"} and (tmp_path / "m.h5").is_file()
    assert ticks.lines[0] == "start 2" and ticks.lines[-1].startswith("epoch 2/2 accuracy ")
    assert ticks.positions and ticks.positions[0][0] == 1, "the chief's batch positions reach the parent"
