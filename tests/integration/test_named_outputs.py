"""Reference, verification and benchmark of a model with two named inputs and two named
outputs (one class, one regression), on real TensorFlow, LiteRT and TF.js: every output is
compared by name, scored by its own task, and a wrong output is named in the failure.

The model is tiny and untrained (its figures need not be good, only measured right); it is
saved with the project's serving signature and converted as the export steps convert.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tfbuild.datasets.split import ArraySpec, Split, SplitWriter
from tfbuild.outputs_io import load_outputs
from tfbuild.plan import StepSpec
from tfbuild.runtimes.tfjs_node import node_problem
from tfbuild.steps.base import StepContext
from tfbuild.steps.benchmark import BenchmarkStep
from tfbuild.steps.reference import ReferenceStep
from tfbuild.steps.verify import VerificationFailed, VerifyStep

pytestmark = pytest.mark.slow

SAMPLES = {"train": 4, "validation": 4, "test": 24}
INPUTS = {"pixels": ArraySpec((8,), "float32"), "extra": ArraySpec((2,), "float32")}
TARGETS = {"digit": ArraySpec((), "int64", "classification", 3), "age": ArraySpec((1,), "float32", "regression")}
LOOSE = {"max_abs_diff": 1e-4, "mean_abs_diff": None, "max_rel_diff": None, "min_cosine": 0.999, "min_top1_agreement": 0.99}
BENCH = {"warmup": 1, "min_runs": 3, "min_seconds": 0.0, "rounds": 3, "batch_size": 8, "threads": 1}
HAS_NODE = node_problem() is None


def write_split(folder: Path, *, generated: bool = False) -> Path:
    rng = np.random.RandomState(0)
    targets = {} if generated else TARGETS
    writer = SplitWriter(folder, INPUTS, targets, SAMPLES, **({"generated": True} if generated else {}))
    for part, n in SAMPLES.items():
        inputs = {name: rng.normal(size=(n, *spec.shape)).astype(np.float32) for name, spec in INPUTS.items()}
        labels = {"digit": rng.randint(0, 3, n).astype(np.int64), "age": rng.normal(30, 5, (n, 1)).astype(np.float32)}
        writer.write(part, np.arange(n), inputs, {k: labels[k] for k in targets})
    writer.close()
    return folder


def save_model(folder: Path, age_shift: float = 0.0) -> Path:
    """A two-input, two-output Keras model saved with the project's serving signature."""
    from tfbuild.steps.saved_model import serving_function
    from tfbuild.tfenv import import_tensorflow, seed_everything

    tf = import_tensorflow()
    import tf_keras as keras

    seed_everything(0)
    pixels, extra = keras.Input((8,), name="pixels"), keras.Input((2,), name="extra")
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()([pixels, extra]))
    digit = keras.layers.Dense(3, activation="softmax", name="digit")(hidden)
    age = keras.layers.Dense(1, name="age", bias_initializer=keras.initializers.Constant(30.0 + age_shift))(hidden)
    model = keras.Model({"pixels": pixels, "extra": extra}, {"digit": digit, "age": age})
    tf.saved_model.save(model, str(folder), signatures={"serving_default": serving_function(tf, model, False)})
    return folder


def to_tflite(saved_model: Path, path: Path) -> Path:
    from tfbuild.tfenv import import_tensorflow

    tf = import_tensorflow()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=["serving_default"])
    path.write_bytes(converter.convert())
    return path


def to_tfjs(saved_model: Path, folder: Path) -> Path:
    from tensorflowjs.converters.tf_saved_model_conversion_v2 import convert_tf_saved_model

    convert_tf_saved_model(str(saved_model), str(folder), signature_def="serving_default", saved_model_tags="serve")
    return folder


def run_step(step, params: dict, inputs: dict, outputs: dict | None = None) -> dict:
    spec = StepSpec(name=step.kind, kind=step.kind, params=params)
    return step.run(StepContext(spec=spec, params=params, inputs=inputs, files={}, outputs=outputs or {}))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("named")
    saved = save_model(root / "saved_model")
    built = {
        "root": root, "split": write_split(root / "split"), "saved_model": saved,
        "tflite": to_tflite(saved, root / "model.tflite"),
        "tfjs": to_tfjs(saved, root / "tfjs") if HAS_NODE else None,
    }  # fmt: skip
    built["reference_info"] = run_step(ReferenceStep(), {"samples": 20}, {"saved_model": saved, "data": built["split"]},
                                       {"outputs": root / "reference"})
    return built


def verify(made: dict, fmt: str, artifact: Path, tolerance: dict, **params) -> dict:
    p = {"format": fmt, "variant": None if fmt == "saved_model" else "float", "samples": 20, "tolerance": tolerance,
         "task": "classification", "task_outputs": {}, **params}
    if fmt == "tfjs":
        p.update(backends=["wasm"], node="node")
    return run_step(VerifyStep(), p, {"artifact": artifact, "reference": made["root"] / "reference", "data": made["split"]})


def test_the_reference_keeps_every_output_by_name_and_scores_each_by_its_task(made):
    info = made["reference_info"]
    outputs = load_outputs(made["root"] / "reference")
    assert sorted(outputs) == ["age", "digit"] and sorted(info["outputs"]) == ["age", "digit"]
    assert outputs["digit"].shape == (20, 3) and outputs["age"].shape == (20, 1), "verify.samples limits the test split"
    assert (made["root"] / "reference" / "outputs.json").is_file()
    split = Split(made["split"])
    targets = split.targets("test", 20)
    expected_accuracy = float(np.mean(outputs["digit"].argmax(1) == targets["digit"]))
    expected_mae = float(np.mean(np.abs(outputs["age"] - targets["age"])))
    assert info["metrics"]["digit"] == {"task": "classification", "accuracy": pytest.approx(expected_accuracy)}
    assert info["metrics"]["age"]["task"] == "regression" and info["metrics"]["age"]["mae"] == pytest.approx(expected_mae, rel=1e-5)
    assert info["samples"] == 20 and info["generated"] is False and "on 20 test samples" in info["summary"]


def test_tflite_is_verified_per_output_with_top1_only_for_the_class(made):
    info = verify(made, "tflite", made["tflite"], LOOSE)
    (runtime,) = info["runtimes"].values()
    assert set(runtime["outputs"]) == {"digit", "age"}
    assert runtime["outputs"]["digit"]["top1_agreement"] == 1.0 and runtime["outputs"]["age"]["top1_agreement"] is None
    for figures in runtime["outputs"].values():
        assert figures["max_abs_diff"] < 1e-4 and figures["min_cosine"] > 0.9999 and figures["max_rel_diff"] < 1e-4
    assert info["tasks"] == {"digit": "classification", "age": "regression"}
    assert runtime["metrics"]["age"]["mae"] == pytest.approx(made["reference_info"]["metrics"]["age"]["mae"], rel=1e-4)
    assert info["reference_metrics"] == made["reference_info"]["metrics"]


def test_an_output_off_the_reference_fails_verification_naming_it(made, tmp_path):
    shifted = save_model(tmp_path / "shifted", age_shift=1.0)  # same weights, the age head's bias + 1
    with pytest.raises(VerificationFailed) as failure:
        verify(made, "saved_model", shifted, LOOSE)
    message = str(failure.value)
    assert message.startswith("saved_model does not match the SavedModel: TensorFlow SavedModel: 'age': max abs diff 1 > ")
    assert "'digit'" not in message, "the class output matches: only the wrong output is named"


@pytest.mark.skipif(not HAS_NODE, reason=f"TF.js needs Node: {node_problem()}")
def test_tfjs_keeps_the_names_and_matches_every_output(made):
    info = verify(made, "tfjs", made["tfjs"], LOOSE)
    (runtime,) = info["runtimes"].values()
    assert set(runtime["outputs"]) == {"digit", "age"} and runtime["max_abs_diff"] < 1e-4


@pytest.mark.parametrize("fmt", ["saved_model", "tflite", *(["tfjs"] if HAS_NODE else [])])
def test_benchmark_times_dict_inputs_and_scores_every_output(made, fmt):
    p = {"format": fmt, "variant": None if fmt == "saved_model" else "float", **BENCH}
    if fmt == "tfjs":
        p.update(backends=["wasm"], node="node")
    info = run_step(BenchmarkStep(), p, {"artifact": made[fmt], "data": made["split"]})
    (figures,) = info["runtimes"].values()
    assert figures["samples"] == SAMPLES["test"] and figures["throughput"]["batch_size"] == 8
    assert set(figures["metrics"]) == {"digit", "age"} and figures["metrics"]["age"]["rmse"] >= figures["metrics"]["age"]["mae"]
    assert info["summary"].startswith("p50 ") and "digit: accuracy" in info["summary"]


def test_generated_inputs_are_compared_but_never_scored(made, tmp_path):
    split = write_split(tmp_path / "split", generated=True)
    reference = run_step(ReferenceStep(), {"samples": None}, {"saved_model": made["saved_model"], "data": split},
                         {"outputs": tmp_path / "reference"})
    assert reference["metrics"] == {} and reference["generated"] is True
    assert reference["summary"] == "24 generated inputs, no labels"
    params = {"format": "tflite", "variant": "float", "samples": None, "tolerance": LOOSE,
              "task": "regression", "task_outputs": {"digit": "classification"}}  # fmt: skip
    info = run_step(VerifyStep(), params, {"artifact": made["tflite"], "reference": tmp_path / "reference", "data": split})
    assert info["tasks"] == {"digit": "classification", "age": "regression"}, "from the config: no labels to say"
    (runtime,) = info["runtimes"].values()
    assert runtime["metrics"] == {} and info["reference_metrics"] == {} and info["top1_agreement"] == 1.0
    assert info["summary"].endswith("; generated inputs, no labels")
    bench = run_step(BenchmarkStep(), {"format": "tflite", "variant": "float", **BENCH}, {"artifact": made["tflite"], "data": split})
    assert bench["generated"] is True and bench["summary"].endswith(", generated inputs, no labels")
