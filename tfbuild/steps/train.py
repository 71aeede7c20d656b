"""`train`: build a tf_keras model from its builder and fit it, deterministically."""

from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..models import BUILDERS
from .base import Progress, StepContext
from .data import load_split


def resolve_builder(name: str, planned_file: Path | None = None) -> Callable[..., Any]:
    """The builder function. A user's module is imported here, at training time, and only
    here: this runs its code (planning read it only)."""
    if name in BUILDERS:
        return BUILDERS[name]
    module_name, _, attr = name.rpartition(".")
    module = importlib.import_module(module_name)
    imported = Path(getattr(module, "__file__", None) or "")
    if planned_file is not None and imported.resolve() != planned_file.resolve():
        # The key was computed over another file: training this one would cache it wrongly.
        raise RuntimeError(
            f"model._target_: Python imported '{module_name}' from {imported}, but the build was "
            f"planned with {planned_file} (was a module of that name imported before?)"
        )
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"model._target_: module '{module_name}' has no attribute '{attr}'") from None


class TrainStep:
    kind = "train"
    version = 2
    tools = ("tensorflow", "tf-keras", "numpy")

    def run(self, ctx: StepContext) -> dict[str, Any]:
        p = ctx.params
        if p["strategy"] == "multi_worker" and "TF_CONFIG" not in os.environ:
            from ..workers import train_on_local_workers

            return train_on_local_workers(dict(p), ctx.inputs["data"], ctx.outputs["model"], ctx.progress)
        return train(p, ctx.inputs["data"], ctx.outputs["model"], ctx.progress, ctx.files.get("builder"))


def train(
    p: Mapping[str, Any], data: Path, out: Path, progress: Progress, builder_file: Path | None = None
) -> dict[str, Any]:
    """Build the model under the target's strategy and precision policy, fit it, save it."""
    from ..distribute import STRATEGY_NAMES, make_strategy, op_determinism, precision_policy
    from ..tfenv import import_tensorflow, seed_everything

    tf = import_tensorflow()
    import numpy as np

    x_train, y_train = load_split(data, "train")
    x_val, y_val = load_split(data, "validation")
    x_test, y_test = load_split(data, "test")
    num_classes = int(max(y_train.max(), y_val.max(), y_test.max())) + 1

    strategy = make_strategy(tf, p)
    replicas = strategy.num_replicas_in_sync
    # train.batch_size is per replica, so a recipe keeps its meaning on any number of devices.
    global_batch = p["batch_size"] * replicas
    seed_everything(p["seed"])
    deterministic = not p["jit_compile"]
    with op_determinism(deterministic), precision_policy(p["precision"]), strategy.scope():
        model = resolve_builder(p["builder"], builder_file)(tuple(x_train.shape[1:]), num_classes, **p["model_params"])
        final = fit(progress, model, data, epochs=p["epochs"], batch_size=global_batch,
                    learning_rate=p["learning_rate"], jit_compile=p["jit_compile"])
        test_loss, test_accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    save_h5(model, out)
    output_dtype = model.outputs[0].dtype.name
    return {
        "model": model.name,
        "parameters": int(model.count_params()),
        "epochs": p["epochs"],
        "final": final,
        "test_loss": round(float(test_loss), 6),
        "test_accuracy": round(float(test_accuracy), 6),
        "summary": f"test accuracy {test_accuracy:.1%}" + (f", {replicas} replicas" if replicas > 1 else ""),
        "samples": {"train": int(len(y_train)), "validation": int(len(y_val)), "test": int(len(y_test))},
        "num_classes": num_classes,
        "input_shape": [int(d) for d in np.shape(x_train)[1:]],
        "strategy": STRATEGY_NAMES[p["strategy"]],
        "replicas": int(replicas),
        "global_batch_size": int(global_batch),
        "precision_policy": p["precision"],
        "output_dtype": output_dtype,
        "jit_compile": p["jit_compile"],
        "deterministic": deterministic,
    }


def fit(
    progress: Progress,
    model: Any,
    data: Path,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    callbacks: Sequence[Any] = (),
    jit_compile: bool = False,
) -> dict[str, float]:
    """Compile (Adam, sparse cross-entropy) and fit on the train split, validating on the
    validation split, with one progress tick per epoch; returns the last epoch's metrics."""
    import tf_keras as keras

    x_train, y_train = load_split(data, "train")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    progress.start(epochs, "epoch 0")
    history = model.fit(
        x_train,
        y_train,
        validation_data=load_split(data, "validation"),
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[*callbacks, epoch_progress_callback(progress, epochs)],
    )
    return {name: round(float(values[-1]), 6) for name, values in history.history.items()}


def save_h5(model: Any, path: Path) -> None:
    # HDF5 (not .keras, whose zip carries a save date) so equal weights give equal bytes.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*HDF5 file.*legacy", category=UserWarning)
        model.save(path, save_format="h5")


def epoch_progress_callback(progress: Progress, epochs: int):
    import tf_keras as keras

    class EpochProgress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            logs = logs or {}
            summary = f"epoch {epoch + 1}/{epochs}"
            if "accuracy" in logs:
                summary += f" accuracy {logs['accuracy']:.3f}"
            if "val_accuracy" in logs:
                summary += f" val {logs['val_accuracy']:.3f}"
            progress.advance(summary)

    return EpochProgress()
