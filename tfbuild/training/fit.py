"""Compile, fit and evaluate a model on a split, per output: what train and optimize share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import DataError
from .feed import Wiring, eval_dataset, train_dataset
from .tasks import Output, balanced_class_weight, check_class_weight, epoch_description, per_output

if TYPE_CHECKING:
    from ..datasets.split import Split
    from ..steps.base import Progress

METRIC_OBJECTS = {
    "accuracy": "SparseCategoricalAccuracy",  # labels are class indices
    "mae": "MeanAbsoluteError",
    "rmse": "RootMeanSquaredError",
}


@dataclass(frozen=True)
class Fitted:
    final: dict[str, float]  # the last epoch's logs (loss, metrics, val_*)
    epochs_run: int  # fewer than asked when early stopping ended training


def compile_model(model: Any, outputs: Sequence[Output], optimizer: Any = "rmsprop", jit_compile: bool = False) -> None:
    """Each output's loss and metrics; a single output's are passed bare, so the logs say
    "loss", "accuracy" (several: "<output>_loss", "<output>_accuracy")."""
    import tf_keras as keras

    def metrics(output: Output) -> list[Any]:
        return [getattr(keras.metrics, METRIC_OBJECTS[m])(name=m) for m in output.metrics]

    if len(outputs) == 1:
        loss: Any = outputs[0].loss
        metric: Any = metrics(outputs[0])
    else:
        loss = {o.name: o.loss for o in outputs}
        metric = {o.name: metrics(o) for o in outputs}
    model.compile(optimizer=optimizer, loss=loss, metrics=metric, jit_compile=jit_compile)


def fit(
    model: Any,
    split: Split,
    wiring: Wiring,
    progress: Progress,
    *,
    optimizer: Any,
    epochs: int,
    batch_size: int,
    seed: int,
    jit_compile: bool = False,
    class_weight: str | None = None,
    early_stopping_patience: int | None = None,
    callbacks: Sequence[Any] = (),
    memory_limit: int | None = None,
) -> Fitted:
    """Compile and fit on the train part in seeded per-epoch orders, validating on the
    validation part, with one progress tick per epoch. `batch_size` is the global batch;
    `memory_limit` (bytes, for tests) overrides feed.in_memory_bytes()."""
    import tf_keras as keras

    check_class_weight(class_weight, wiring.outputs)
    validates = split.count("validation") > 0
    if early_stopping_patience is not None and not validates:
        raise DataError("train.early_stopping_patience needs a validation part (data.validation_fraction > 0)")
    compile_model(model, wiring.outputs, optimizer, jit_compile)
    train, steps = train_dataset(split, wiring, batch_size=batch_size, seed=seed, epochs=epochs,
                                 memory_limit=memory_limit)  # fmt: skip
    stops: list[Any] = []
    if early_stopping_patience is not None:
        stops.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(early_stopping_patience),
                                                   restore_best_weights=True))  # fmt: skip
    progress.start(epochs, "epoch 0")
    history = model.fit(
        train,
        steps_per_epoch=steps,
        epochs=epochs,
        validation_data=eval_dataset(split, wiring, "validation", batch_size=batch_size,
                                     memory_limit=memory_limit) if validates else None,  # fmt: skip
        class_weight=_class_weight(split, wiring) if class_weight else None,
        verbose=0,
        callbacks=[*callbacks, *stops, EpochProgress.make(progress, epochs, wiring.outputs)],
    )
    epochs_run = len(history.history.get("loss", ()))
    return Fitted({name: round(float(values[-1]), 6) for name, values in history.history.items()}, epochs_run)


def evaluate(model: Any, split: Split, wiring: Wiring, part: str = "test", batch_size: int = 256,
             memory_limit: int | None = None) -> tuple[float | None, dict[str, dict[str, float]]]:  # fmt: skip
    """(loss, {output: {metric: value}}) on `part` for a compiled model; (None, {}) when the
    part is empty."""
    if not split.count(part):
        return None, {}
    logs = model.evaluate(eval_dataset(split, wiring, part, batch_size=batch_size, memory_limit=memory_limit),
                          verbose=0, return_dict=True)  # fmt: skip
    return round(float(logs["loss"]), 6), per_output(logs, wiring.outputs)


def _class_weight(split: Split, wiring: Wiring) -> dict[int, float]:
    import numpy as np

    (output,) = wiring.outputs
    labels = split.targets("train")[output.target]
    classes = split.targets_spec[output.target].classes
    counts = np.bincount(np.asarray(labels), minlength=classes or 0)
    return balanced_class_weight([int(c) for c in counts])


class EpochProgress:
    """One progress tick per epoch, with the first output's accuracy (or the loss)."""

    @staticmethod
    def make(progress: Progress, epochs: int, outputs: Sequence[Output]) -> Any:
        import tf_keras as keras

        class Callback(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                text = epoch_description(epoch + 1, epochs, logs or {}, outputs)
                # EarlyStopping (listed before this callback) has decided by now.
                progress.advance(text + (", early stop" if self.model.stop_training else ""))

        return Callback()
