"""What each task trains with and is scored by.

Pure: no TensorFlow, no NumPy. The tables are names that tf_keras resolves when the model is
compiled, so planning can check `train.loss` and say what is allowed without importing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..errors import DataError, TfbuildError

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)

# Labels are integer class indices (the split stores int64), so the sparse forms apply.
DEFAULT_LOSS = {CLASSIFICATION: "sparse_categorical_crossentropy", REGRESSION: "mse"}
# What the step reports per output: accuracy for classes, MAE and RMSE for values.
METRICS = {CLASSIFICATION: ("accuracy",), REGRESSION: ("mae", "rmse")}
# The metric a one-line summary and the per-epoch progress show for an output.
HEADLINE = {CLASSIFICATION: "accuracy", REGRESSION: "mae"}

# Every name `tf_keras.losses.get` resolves (tf_keras 2.19; tests/integration/test_training.py
# checks this table against the installed tf_keras, so a new release cannot drift from it).
LOSS_NAMES = (
    "binary_crossentropy", "binary_focal_crossentropy", "categorical_crossentropy",
    "categorical_focal_crossentropy", "categorical_hinge", "cosine_similarity", "hinge", "huber",
    "kl_divergence", "kld", "kullback_leibler_divergence", "log_cosh", "logcosh", "mae", "mape",
    "mean_absolute_error", "mean_absolute_percentage_error", "mean_squared_error",
    "mean_squared_logarithmic_error", "mse", "msle", "poisson", "sparse_categorical_crossentropy",
    "squared_hinge",
    "BinaryCrossentropy", "BinaryFocalCrossentropy", "CategoricalCrossentropy",
    "CategoricalFocalCrossentropy", "CategoricalHinge", "CosineSimilarity", "Hinge", "Huber", "KLD",
    "KLDivergence", "LogCosh", "MAE", "MAPE", "MSE", "MSLE", "MeanAbsoluteError",
    "MeanAbsolutePercentageError", "MeanSquaredError", "MeanSquaredLogarithmicError", "Poisson",
    "SparseCategoricalCrossentropy", "SquaredHinge",
)  # fmt: skip
# The few an error message suggests (the full list is long).
SUGGESTED_LOSSES = ("sparse_categorical_crossentropy", "mse", "mae", "huber", "log_cosh", "mape", "msle")


@dataclass(frozen=True)
class Output:
    """One model output, paired with the data target it is trained on."""

    name: str  # the model's output name
    target: str  # the split's target name
    task: str
    loss: str

    @property
    def metrics(self) -> tuple[str, ...]:
        return METRICS[self.task]

    @property
    def headline(self) -> str:
        return HEADLINE[self.task]


def check_loss(
    loss: Any, output_names: Sequence[str] | None = None, error: type[TfbuildError] = DataError
) -> None:
    """`train.loss`: None, one loss name for every output, or {output name: loss name}.
    `output_names` None (planning, before the model exists) checks the names only; planning
    passes error=ConfigError."""
    if loss is None:
        return
    if isinstance(loss, str):
        _check_loss_name(loss, "train.loss", error)
        return
    if not isinstance(loss, Mapping):
        raise error(f"train.loss: expected a loss name or {{output: loss name}}, got {loss!r}")
    for output, name in loss.items():
        if output_names is not None and output not in output_names:
            raise error(
                f"train.loss.{output}: the model has no output '{output}' (its outputs: {', '.join(output_names)})"
            )
        _check_loss_name(name, f"train.loss.{output}", error)


def _check_loss_name(name: Any, key: str, error: type[TfbuildError]) -> None:
    if not isinstance(name, str) or name not in LOSS_NAMES:
        raise error(
            f"{key}: '{name}' is not a tf_keras loss (e.g. {', '.join(SUGGESTED_LOSSES)}; any name "
            "tf_keras.losses.get knows)"
        )


def outputs_for(
    pairs: Mapping[str, str], tasks: Mapping[str, str], loss: Any = None
) -> list[Output]:
    """The outputs in the model's order, each with its target's task and its loss:
    `train.loss` where given (checked here), else the task's."""
    check_loss(loss, list(pairs))
    result = []
    for output, target in pairs.items():
        task = tasks[target]
        if task not in TASKS:
            raise DataError(f"target '{target}': unknown task '{task}' (allowed: {', '.join(TASKS)})")
        chosen = loss if isinstance(loss, str) else (loss or {}).get(output)
        result.append(Output(output, target, task, chosen or DEFAULT_LOSS[task]))
    return result


def balanced_class_weight(counts: Sequence[int]) -> dict[int, float]:
    """n_samples / (n_classes * count) per class, as scikit-learn's "balanced"; a class with no
    training samples gets 1.0 (its weight is never used, and infinity would poison the dict)."""
    total, present = sum(counts), sum(1 for c in counts if c)
    return {i: (total / (present * c) if c else 1.0) for i, c in enumerate(counts)}


def check_class_weight(class_weight: str | None, outputs: Sequence[Output]) -> None:
    if class_weight is None:
        return
    if class_weight != "balanced":
        raise DataError(f"train.class_weight: '{class_weight}' is not allowed (allowed: balanced, null)")
    if len(outputs) != 1 or outputs[0].task != CLASSIFICATION:
        described = ", ".join(f"{o.name} ({o.task})" for o in outputs)
        raise DataError(
            "train.class_weight=balanced applies to a model with one classification output; "
            f"this one has {described}"
        )


def metric_key(output: Output, metric: str, outputs_count: int, prefix: str = "") -> str:
    """The name tf_keras gives a metric in its logs: bare for a single-output model,
    "<output>_<metric>" with several."""
    name = metric if outputs_count == 1 else f"{output.name}_{metric}"
    return prefix + name


def per_output(logs: Mapping[str, float], outputs: Sequence[Output]) -> dict[str, dict[str, float]]:
    """{output: {metric: value}} from tf_keras' flat logs (evaluate's or fit's last epoch)."""
    return {
        o.name: {m: round(float(logs[metric_key(o, m, len(outputs))]), 6) for m in o.metrics}
        for o in outputs
    }


def epoch_description(epoch: int, epochs: int, logs: Mapping[str, float], outputs: Sequence[Output]) -> str:
    """One progress line per epoch: the first output's accuracy when it classifies, else the loss."""
    text = f"epoch {epoch}/{epochs}"
    first = outputs[0] if outputs else None
    if first is not None and first.task == CLASSIFICATION:
        key = metric_key(first, "accuracy", len(outputs))
        if key in logs:
            text += f" accuracy {logs[key]:.3f}"
        if "val_" + key in logs:
            text += f" val {logs['val_' + key]:.3f}"
        return text
    if "loss" in logs:
        text += f" loss {logs['loss']:.4g}"
    if "val_loss" in logs:
        text += f" val {logs['val_loss']:.4g}"
    return text


def batch_description(epoch: int, epochs: int, logs: Mapping[str, float], outputs: Sequence[Output]) -> str:
    """The bar's text within an epoch: the running loss, and the first output's running
    accuracy when it classifies."""
    text = f"epoch {epoch}/{epochs}"
    if "loss" in logs:
        text += f" loss {logs['loss']:.4g}"
    first = outputs[0] if outputs else None
    if first is not None and first.task == CLASSIFICATION:
        key = metric_key(first, "accuracy", len(outputs))
        if key in logs:
            text += f" accuracy {logs[key]:.3f}"
    return text


def summary(metrics: Mapping[str, Mapping[str, float]], outputs: Sequence[Output]) -> str:
    """The first output's headline figure: "test accuracy 93.1%" or "test MAE 0.412"."""
    first = outputs[0]
    value = metrics[first.name][first.headline]
    return f"test accuracy {value:.1%}" if first.task == CLASSIFICATION else f"test MAE {value:.4g}"


def headline_metrics(test: Mapping[str, Mapping[str, float]], outputs: Sequence[Output], suffix: str = "") -> dict[str, float]:
    """The first output's figures as flat keys (test_accuracy, or test_mae and test_rmse), the
    ones summaries, gates and older records read."""
    if not test:
        return {}
    first = outputs[0]
    names = ("accuracy",) if first.task == CLASSIFICATION else ("mae", "rmse")
    return {f"test_{m}{suffix}": test[first.name][m] for m in names}
