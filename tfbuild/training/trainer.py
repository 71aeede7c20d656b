"""One training run, as the train step (or each multi-worker process) does it: the target's
strategy and precision policy, the model from its builder, fit, evaluate, save."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .tasks import headline_metrics, summary

if TYPE_CHECKING:
    from ..steps.base import Progress


def train(
    p: Mapping[str, Any], data: Path, out: Path, progress: Progress, files: Mapping[str, Path] | None = None
) -> dict[str, Any]:
    """Train as the step params `p` say (see steps/train.py for the keys) on the split in
    `data`, save the model to `out` (HDF5), return the step's info. `files` are the step's
    (role -> path): the builder's and the modules' sources the key was computed over."""
    from ..datasets.split import Split
    from ..tfenv import Numerics, import_tensorflow, seed_everything
    from .builders import builder_arguments, call_builder, resolve_builder
    from .feed import wire
    from .fit import evaluate, fit
    from .keras_io import import_model_modules, save_h5
    from .optimizers import make_optimizer
    from .strategies import STRATEGY_NAMES, make_strategy, op_determinism, precision_policy

    tf = import_tensorflow(Numerics.of(p))  # threads and oneDNN as train.threads/onednn say
    split = Split(data)
    strategy = make_strategy(tf, p)
    replicas = strategy.num_replicas_in_sync
    # train.batch_size is per replica, so a recipe keeps its meaning on any number of devices.
    global_batch = p["batch_size"] * replicas
    steps = -(-split.count("train") // global_batch) * p["epochs"]
    optimizer, schedule = p.get("optimizer", "adam"), p.get("schedule", "constant")
    seed_everything(p["seed"])
    files = dict(files or {})
    objects = import_model_modules(p.get("modules") or (), files)
    deterministic = not p["jit_compile"]
    import tf_keras as keras

    # The modules' classes by name: tfmot and Keras clone models through their configs.
    with op_determinism(deterministic), precision_policy(p["precision"]), strategy.scope(), \
            keras.utils.custom_object_scope(objects):
        model = call_builder(resolve_builder(p["builder"], files.get("builder")), split, p["model_params"])
        wiring = wire(model, split, p.get("loss"))
        fitted = fit(
            model, split, wiring, progress,
            optimizer=make_optimizer(optimizer, p["learning_rate"], weight_decay=p.get("weight_decay", 0.0),
                                     schedule=schedule, total_steps=steps),
            epochs=p["epochs"], batch_size=global_batch, seed=p["seed"], jit_compile=p["jit_compile"],
            class_weight=p.get("class_weight"), early_stopping_patience=p.get("early_stopping_patience"),
        )  # fmt: skip
        test_loss, test = evaluate(model, split, wiring, "test", batch_size=max(256, global_batch))
    save_h5(model, out)
    input_shape, units, _ = builder_arguments(split)
    info: dict[str, Any] = {
        "model": model.name,
        "parameters": int(model.count_params()),
        "epochs": p["epochs"],
        "epochs_run": fitted.epochs_run,
        "optimizer": optimizer,
        "schedule": schedule,
        "final": fitted.final,
        "test_loss": test_loss,
        "test_metrics": test,
        **headline_metrics(test, wiring.outputs),
        "outputs": {o.name: {"target": o.target, "task": o.task, "loss": o.loss} for o in wiring.outputs},
        "samples": {part: split.count(part) for part in ("train", "validation", "test")},
        "num_classes": units,
        "input_shape": list(input_shape) if isinstance(input_shape, tuple) else {k: list(v) for k, v in input_shape.items()},
        "strategy": STRATEGY_NAMES[p["strategy"]],
        "replicas": int(replicas),
        "global_batch_size": int(global_batch),
        "precision_policy": p["precision"],
        "output_dtype": model.outputs[0].dtype.name,
        "output_dtypes": {name: t.dtype.name for name, t in zip(model.output_names, model.outputs)},
        "jit_compile": p["jit_compile"],
        "deterministic": deterministic,
    }  # fmt: skip
    if test:
        info["summary"] = summary(test, wiring.outputs) + (f", {replicas} replicas" if replicas > 1 else "")
    if fitted.epochs_run < p["epochs"]:
        info["summary"] = f"{info.get('summary', 'trained')}, stopped after {fitted.epochs_run}/{p['epochs']} epochs"
    return info

