"""The training library's pure parts: what each task, optimizer and schedule means, the
errors for bad choices, and how builders are called. No TensorFlow here."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tfbuild.datasets.split import ArraySpec, SplitWriter, Split
from tfbuild.errors import ConfigError, DataError
from tfbuild.training import builders, optimizers, tasks
from tfbuild.training.feed import epoch_seed, in_memory_bytes
from tfbuild.training.tasks import CLASSIFICATION, REGRESSION, Output


def test_importing_the_library_imports_no_tensorflow():
    # Planning may read these tables; a cached build must not pay for TensorFlow.
    code = ("import sys; import tfbuild.training.tasks, tfbuild.training.optimizers, tfbuild.training.builders, "
            "tfbuild.training.feed, tfbuild.training.fit, tfbuild.training.trainer, tfbuild.training.compression, "
            "tfbuild.training.keras_io, tfbuild.training.workers, tfbuild.training.strategies; "
            "print('tensorflow' in sys.modules, 'numpy' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize(
    "task, loss, metrics, headline",
    [
        (CLASSIFICATION, "sparse_categorical_crossentropy", ("accuracy",), "accuracy"),
        (REGRESSION, "mse", ("mae", "rmse"), "mae"),
    ],
)
def test_each_task_has_its_loss_metrics_and_headline(task, loss, metrics, headline):
    (output,) = tasks.outputs_for({"out": "target"}, {"target": task})
    assert (output.loss, output.metrics, output.headline) == (loss, metrics, headline)
    assert output.loss in tasks.LOSS_NAMES


def test_train_loss_overrides_every_output_or_the_named_ones():
    pairs, kinds = {"a": "a", "b": "b"}, {"a": CLASSIFICATION, "b": REGRESSION}
    assert [o.loss for o in tasks.outputs_for(pairs, kinds, "huber")] == ["huber", "huber"]
    assert [o.loss for o in tasks.outputs_for(pairs, kinds, {"b": "mae"})] == ["sparse_categorical_crossentropy", "mae"]


@pytest.mark.parametrize(
    "loss, message",
    [
        ("msee", "train.loss: 'msee' is not a tf_keras loss (e.g. sparse_categorical_crossentropy, mse, mae, huber"),
        ({"b": "nope"}, "train.loss.b: 'nope' is not a tf_keras loss (e.g. sparse_categorical_crossentropy, mse"),
        ({"c": "mse"}, "train.loss.c: the model has no output 'c' (its outputs: a, b)"),
        (3, "train.loss: expected a loss name or {output: loss name}, got 3"),
    ],
)
def test_bad_train_loss_is_one_line_naming_the_key(loss, message):
    with pytest.raises(DataError) as error:
        tasks.outputs_for({"a": "a", "b": "b"}, {"a": CLASSIFICATION, "b": REGRESSION}, loss)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_planning_checks_loss_names_with_its_own_error_and_no_outputs():
    tasks.check_loss({"anything": "log_cosh"}, None, ConfigError)  # outputs unknown yet: names only
    with pytest.raises(ConfigError, match="train.loss.anything: 'logcoshh'"):
        tasks.check_loss({"anything": "logcoshh"}, None, ConfigError)


def test_balanced_class_weight_is_inverse_frequency():
    assert tasks.balanced_class_weight([90, 10]) == {0: 100 / (2 * 90), 1: 100 / (2 * 10)}
    # A class absent from training is not counted and gets a harmless weight (never infinity).
    assert tasks.balanced_class_weight([3, 0, 1]) == {0: 4 / (2 * 3), 1: 1.0, 2: 4 / (2 * 1)}


@pytest.mark.parametrize(
    "outputs, value, message",
    [
        ([Output("a", "a", CLASSIFICATION, "x"), Output("b", "b", REGRESSION, "mse")], "balanced",
         "train.class_weight=balanced applies to a model with one classification output; this one has "
         "a (classification), b (regression)"),
        ([Output("values", "y", REGRESSION, "mse")], "balanced",
         "train.class_weight=balanced applies to a model with one classification output; this one has "
         "values (regression)"),
        ([Output("p", "y", CLASSIFICATION, "x")], "inverse", "train.class_weight: 'inverse' is not allowed"),
    ],
)  # fmt: skip
def test_class_weight_is_refused_where_it_has_no_meaning(outputs, value, message):
    with pytest.raises(DataError) as error:
        tasks.check_class_weight(value, outputs)
    assert str(error.value).startswith(message)
    tasks.check_class_weight(None, outputs)


def test_logs_are_read_per_output_with_keras_names():
    one = [Output("probabilities", "label", CLASSIFICATION, "x")]
    assert tasks.per_output({"loss": 1.0, "accuracy": 0.5}, one) == {"probabilities": {"accuracy": 0.5}}
    two = [Output("c", "c", CLASSIFICATION, "x"), Output("v", "v", REGRESSION, "mse")]
    logs = {"loss": 1.0, "c_accuracy": 0.25, "v_mae": 0.5, "v_rmse": 0.75}
    assert tasks.per_output(logs, two) == {"c": {"accuracy": 0.25}, "v": {"mae": 0.5, "rmse": 0.75}}
    assert tasks.headline_metrics(tasks.per_output(logs, two), two) == {"test_accuracy": 0.25}
    assert tasks.headline_metrics({"v": {"mae": 0.5, "rmse": 0.75}}, two[1:], "_before") == {
        "test_mae_before": 0.5, "test_rmse_before": 0.75}  # fmt: skip
    assert tasks.summary({"c": {"accuracy": 0.25}}, two) == "test accuracy 25.0%"
    assert tasks.summary({"v": {"mae": 0.5}}, two[1:]) == "test MAE 0.5"


def test_progress_shows_accuracy_for_classifiers_and_loss_otherwise():
    one = [Output("p", "y", CLASSIFICATION, "x")]
    assert tasks.epoch_description(2, 5, {"accuracy": 0.5, "val_accuracy": 0.25}, one) == "epoch 2/5 accuracy 0.500 val 0.250"
    two = [Output("c", "c", CLASSIFICATION, "x"), Output("v", "v", REGRESSION, "mse")]
    assert tasks.epoch_description(1, 3, {"c_accuracy": 0.5}, two) == "epoch 1/3 accuracy 0.500"
    regression = [Output("values", "y", REGRESSION, "mse")]
    assert tasks.epoch_description(1, 3, {"loss": 2.5, "val_loss": 3.0}, regression) == "epoch 1/3 loss 2.5 val 3"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("adam", ("Adam", {})),
        ("adamw", ("AdamW", {"weight_decay": 0.004})),
        ("sgd", ("SGD", {"momentum": 0.9, "nesterov": True})),
        ("rmsprop", ("RMSprop", {})),
    ],
)
def test_optimizer_table(name, expected):
    assert optimizers.optimizer_spec(name, 0.004) == expected


def test_schedule_table():
    assert optimizers.schedule_spec("constant", 0.01, 100) is None
    assert optimizers.schedule_spec("cosine", 0.01, 120) == (
        "CosineDecay", {"initial_learning_rate": 0.01, "decay_steps": 120, "alpha": 0.0})  # fmt: skip
    assert optimizers.schedule_spec("cosine", 0.01, 0)[1]["decay_steps"] == 1


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: optimizers.optimizer_spec("adagrad"), "train.optimizer: 'adagrad' is not one of adam, adamw, sgd, rmsprop"),
        (lambda: optimizers.schedule_spec("step", 0.1, 10), "train.schedule: 'step' is not one of constant, cosine"),
    ],
)
def test_unknown_optimizer_or_schedule_is_one_line(call, message):
    with pytest.raises(DataError, match=f"^{message}$"):
        call()


def test_epoch_seeds_differ_per_epoch_and_seed_and_fit_randomstate():
    seeds = {epoch_seed(s, e) for s in range(5) for e in range(5)}
    assert len(seeds) == 25 and all(0 <= s < 2**32 for s in seeds)
    assert epoch_seed(1, 0) != epoch_seed(0, 1) and epoch_seed(3, 2) == epoch_seed(3, 2)


def test_in_memory_bound_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("TFBUILD_IN_MEMORY_MB", raising=False)
    assert in_memory_bytes() == 128 * 2**20
    monkeypatch.setenv("TFBUILD_IN_MEMORY_MB", "0")
    assert in_memory_bytes() == 0
    monkeypatch.setenv("TFBUILD_IN_MEMORY_MB", "lots")
    with pytest.raises(DataError, match="TFBUILD_IN_MEMORY_MB='lots': expected a number of megabytes"):
        in_memory_bytes()


def write_split(folder, inputs: dict, targets: dict) -> Split:
    """A split of `inputs` / `targets` ({name: (spec, array)}): 60% train, 20% validation, 20% test."""
    n = len(next(iter(inputs.values()))[1])
    sizes = {"train": n - 2 * (n // 5), "validation": n // 5, "test": n // 5}
    writer = SplitWriter(folder, {k: s for k, (s, _) in inputs.items()}, {k: s for k, (s, _) in targets.items()}, sizes)
    start = 0
    for part, size in sizes.items():
        rows = slice(start, start + size)
        writer.write(part, np.arange(size), {k: a[rows] for k, (_, a) in inputs.items()},
                     {k: a[rows] for k, (_, a) in targets.items()})  # fmt: skip
        start += size
    writer.close()
    return Split(folder)


def test_builders_get_shapes_units_and_tasks_as_the_spine_says(tmp_path):
    x = np.zeros((10, 4), np.float32)
    one = write_split(tmp_path / "one", {"inputs": (ArraySpec((4,), "float32"), x)},
                      {"label": (ArraySpec((), "int64", CLASSIFICATION, 3), np.zeros(10, np.int64))})  # fmt: skip
    assert builders.builder_arguments(one) == ((4,), 3, CLASSIFICATION)
    several = write_split(
        tmp_path / "several",
        {"a": (ArraySpec((4,), "float32"), x), "b": (ArraySpec((2, 2), "float32"), x.reshape(10, 2, 2))},
        {"c": (ArraySpec((), "int64", CLASSIFICATION, 5), np.zeros(10, np.int64)),
         "v": (ArraySpec((3,), "float32", REGRESSION), np.zeros((10, 3), np.float32))},
    )  # fmt: skip
    assert builders.builder_arguments(several) == (
        {"a": (4,), "b": (2, 2)}, {"c": 5, "v": 3}, {"c": CLASSIFICATION, "v": REGRESSION})  # fmt: skip


def test_task_goes_only_to_builders_that_declare_it(tmp_path):
    split = write_split(tmp_path / "s", {"inputs": (ArraySpec((4,), "float32"), np.zeros((10, 4), np.float32))},
                        {"y": (ArraySpec((2,), "float32", REGRESSION), np.zeros((10, 2), np.float32))})  # fmt: skip
    calls = []

    def old_style(input_shape, num_classes, width=1):
        calls.append((input_shape, num_classes, width))

    def with_task(input_shape, num_classes, task="classification"):
        calls.append((input_shape, num_classes, task))

    builders.call_builder(old_style, split, {"width": 2})
    builders.call_builder(with_task, split, {})
    assert calls == [((4,), 2, 2), ((4,), 2, REGRESSION)]
    with pytest.raises(DataError, match="model.params.task: the task comes from task.name"):
        builders.call_builder(with_task, split, {"task": "regression"})


def test_keras_app_builders_call_the_models_part_by_name(monkeypatch, tmp_path):
    # What the adapter hands to the models part's constructor (building it needs TensorFlow).
    monkeypatch.setattr("tfbuild.models.keras_app.build_keras_app",
                        lambda name, input_shape, num_classes, task, **params: (name, input_shape, num_classes, task, params))  # fmt: skip
    split = write_split(tmp_path / "s", {"inputs": (ArraySpec((4, 4, 3), "float32"), np.zeros((10, 4, 4, 3), np.float32))},
                        {"label": (ArraySpec((), "int64", CLASSIFICATION, 7), np.zeros(10, np.int64))})  # fmt: skip
    build = builders.resolve_builder("keras_app:MobileNetV2")
    assert builders.call_builder(build, split, {"alpha": 0.35}) == ("MobileNetV2", (4, 4, 3), 7, CLASSIFICATION, {"alpha": 0.35})


def test_registry_builders_declare_task_so_planning_knows_it_is_not_a_param():
    import inspect

    from tfbuild.models import BUILDERS

    for builder in BUILDERS.values():
        assert {"input_shape", "num_classes", "task"} <= set(inspect.signature(builder).parameters)
