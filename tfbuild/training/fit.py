"""Compile, fit and evaluate a model on a split, per output: what train and optimize share."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ..errors import DataError
from .feed import Wiring, eval_dataset, train_dataset
from .tasks import Output, balanced_class_weight, batch_description, check_class_weight, epoch_description, per_output

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
    validation part, with one progress tick per epoch and batch positions within it (see
    EpochProgress). `batch_size` is the global batch;
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
    progress.start(epochs, f"epoch 1/{epochs}")
    history = model.fit(
        train,
        steps_per_epoch=steps,
        epochs=epochs,
        validation_data=eval_dataset(split, wiring, "validation", batch_size=batch_size,
                                     memory_limit=memory_limit) if validates else None,  # fmt: skip
        class_weight=_class_weight(split, wiring) if class_weight else None,
        verbose=0,
        callbacks=[*callbacks, *stops, EpochProgress(progress, epochs, steps, wiring.outputs).callback()],
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
    """Training's progress: one tick per epoch (a log's line), and within an epoch the batch
    reached, as a position on the bar. Batch positions go out at most every `interval`
    seconds, so a fast model costs a clock read per batch, and a step in a worker process
    sends its parent a few messages a second, not one per batch."""

    INTERVAL_S = 0.1

    def __init__(self, progress: Progress, epochs: int, steps: int, outputs: Sequence[Output],
                 clock: Callable[[], float] = time.monotonic, interval: float | None = None) -> None:  # fmt: skip
        self.progress, self.epochs, self.steps, self.outputs = progress, epochs, max(int(steps), 1), outputs
        self.clock, self.interval = clock, self.INTERVAL_S if interval is None else interval
        self.epoch = 0
        self._last = -math.inf
        # A Progress written before update() existed still gets its epoch ticks.
        self._update = getattr(progress, "update", None)

    def batch_end(self, batch: int, logs: Mapping[str, Any]) -> None:
        now = self.clock()
        if self._update is None or now - self._last < self.interval:
            return
        self._last = now
        text = batch_description(self.epoch + 1, self.epochs, _floats(logs), self.outputs)
        self._update(self.epoch * self.steps + batch + 1, self.epochs * self.steps, text)

    def epoch_end(self, epoch: int, logs: Mapping[str, Any], stopped: bool) -> None:
        text = epoch_description(epoch + 1, self.epochs, _floats(logs), self.outputs)
        self.progress.advance(text + (", early stop" if stopped else ""))

    def callback(self) -> Any:
        import tf_keras as keras

        owner = self

        class Callback(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                # Batch logs stay tensors: read (a device sync) only when a position goes out.
                self._supports_tf_logs = True

            def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                owner.epoch = epoch

            def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
                owner.batch_end(batch, logs or {})

            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                # EarlyStopping (listed before this callback) has decided by now.
                owner.epoch_end(epoch, logs or {}, bool(self.model.stop_training))

        return Callback()


def _floats(logs: Mapping[str, Any]) -> dict[str, float]:
    """Keras logs (tensors or numbers) as floats; values that are not one number are left out."""
    out = {}
    for name, value in logs.items():
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            continue
    return out
