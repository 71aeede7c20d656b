"""Where the plan's model comes from: a builder trained by the `train` step (tfbuild's
registry, a user's function, a tf_keras.applications network), or a trained model file the
user brings (no training). Checked before any work, reading files only: no TensorFlow.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from .checks import effective_precision
from .digests import check_tree
from .errors import ConfigError, did_you_mean
from .models import BUILDERS
from .artifacts import KERAS_MODEL
from .plan import OutputSpec, StepSpec
from .plan_data import DATA, planned_input_shape
from .schema_checks import plain

# What the builder is called with, which model.params cannot set.
BUILDER_ARGUMENTS = ("input_shape", "num_classes", "task")


@dataclass(frozen=True)
class ModelSource:
    """How later steps get the model: an artifact of the plan (a trained model.h5), or the
    user's file (a `files` input, so its bytes are in their keys)."""

    artifact: str | None
    files: dict[str, str] = field(default_factory=dict)  # the model file and model.modules' sources
    params: dict[str, Any] = field(default_factory=dict)  # what loading it needs (modules, kind)


def model_source(cfg: DictConfig) -> tuple[list[StepSpec], ModelSource]:
    """The steps that make the model (none for model=file) and how to load what they make."""
    modules, module_files, loading = _modules(cfg.model)
    module_files = {**module_files, **_declared_files(cfg.model)}
    if cfg.model.source.value == "file":
        path, kind = _model_file(cfg.model, modules)
        # Trusting the file's code is in the key of every step that loads it (only when on:
        # an untrusted file's keys stay as they were).
        trust = {"trust_code": True} if cfg.model.trust_code else {}
        return [], ModelSource(None, {"model": path, **module_files}, {**loading, "model_file": kind, **trust})
    return [train_step(cfg, module_files, loading)], ModelSource(KERAS_MODEL, dict(module_files), loading)


def train_step(cfg: DictConfig, module_files: dict[str, str], loading: dict[str, Any]) -> StepSpec:
    builder, builder_files, builder_params = _builder(cfg)
    train = cfg.train
    params: dict[str, Any] = {
        "builder": builder,
        **builder_params,
        "model_params": plain(cfg.model.params),
        "epochs": train.epochs,
        "batch_size": train.batch_size,
        "learning_rate": train.learning_rate,
        "seed": train.seed,
        "optimizer": train.optimizer.value,
        "schedule": train.schedule.value,
        "early_stopping_patience": train.early_stopping_patience,
        "class_weight": None if train.class_weight is None else train.class_weight.value,
        "loss": _loss(train.loss),
        **numerics_params(cfg),
        **_training_target(cfg),
    }
    if train.optimizer.value == "adamw":
        params["weight_decay"] = train.weight_decay
    params.update(loading)
    return StepSpec(
        name="train",
        kind="train",
        params=params,
        inputs={"data": DATA},
        # The builder's source, and the user's modules it imports, are inputs: editing the
        # network re-trains it.
        files={**builder_files, **module_files},
        outputs=(OutputSpec(role="model", artifact=KERAS_MODEL, path="model.h5"),),
    )


def numerics_params(cfg: DictConfig) -> dict[str, Any]:
    """The threads and oneDNN setting of a step whose numbers depend on them (train, optimize,
    TFLite calibration): tfbuild sets them for the process that runs it (tfenv), and they are
    in its key; what cannot be set (the CPU family, the GPU) is keyed too (machine.py)."""
    return {"threads": cfg.train.threads, "onednn": cfg.train.onednn}


def _training_target(cfg: DictConfig) -> dict[str, Any]:
    """What of the target changes training. Targets that train alike (cpu, edge, browser:
    the default strategy in float32) share one trained model."""
    target = cfg.target
    params: dict[str, Any] = {
        "strategy": target.strategy.value,
        "precision": effective_precision(cfg),
        "jit_compile": target.jit_compile,
    }
    strategy = target.strategy.value
    if strategy == "mirrored" and target.cpu_devices:
        params["cpu_devices"] = target.cpu_devices
    elif strategy in ("mirrored", "one_device"):
        params["gpus"] = target.gpus
    elif strategy == "multi_worker":
        params["workers"] = target.workers
    elif strategy == "tpu":
        params["tpu"] = target.tpu
    return params


def _builder(cfg: DictConfig) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The builder's identity for the cache key, the source files it reads (key role -> path),
    and extra key params; checks the params. Reads files only: nothing of the user's runs."""
    model = cfg.model
    source = model.source.value
    params = list(plain(model.params))
    if model._target_ and source != "custom":
        raise ConfigError(
            f"model._target_ is set but model={model.name}: choose model=custom for your own "
            f"builder, so that {model.name}'s params do not apply to it"
        )
    if source == "custom":
        if not model._target_:
            raise ConfigError("model=custom needs model._target_=package.module.function")
        from .builder_source import user_builder  # only custom builders pay for reading sources

        found = user_builder(model._target_, params)
        # An installed package's builder is keyed by its distribution's version too.
        extra = {"builder_distribution": found.distribution} if found.distribution else {}
        return found.target, found.files, extra
    if source == "keras_app":
        from .models import keras_app
        from .models.keras_app import check_input_shape, check_keras_app

        app = check_keras_app(model.name, params)
        shape = planned_input_shape(cfg)
        if shape is not None:
            check_input_shape(model.name, shape)
        # tf_keras's constructor, and how tfbuild puts a head on it.
        return f"keras_app:{model.name}", {"builder": str(app.file), "builder:adapter": inspect.getfile(keras_app)}, {}
    if model.name not in BUILDERS:
        names = [*sorted(BUILDERS), "custom", "keras_app", "file"]
        raise ConfigError(f"model.name: '{model.name}' is not one of {', '.join(names)}{did_you_mean(model.name, names)}")
    builder = BUILDERS[model.name]
    _check_params(builder, params, f"model '{model.name}'")
    return model.name, {"builder": inspect.getfile(builder)}, {}


def _check_params(builder: Any, params: list[str], what: str) -> None:
    allowed = [p for p in inspect.signature(builder).parameters if p not in BUILDER_ARGUMENTS]
    for key in params:
        if key not in allowed:
            raise ConfigError(
                f"model.params.{key}: not a parameter of {what} (allowed: {', '.join(allowed)})"
                f"{did_you_mean(key, allowed)}"
            )


def _model_file(model: DictConfig, modules: list[str]) -> tuple[str, str]:
    if not model.path:
        raise ConfigError("model=file needs model.path=FILE (.keras, .h5, or a SavedModel folder)")
    if model.params:
        raise ConfigError(f"model.params.{next(iter(model.params))}: model=file loads a trained model; it has no builder parameters")
    from .models.model_file import check_custom_objects, check_trusted, inspect_model_file

    if os.path.lexists(os.path.expanduser(model.path)):
        # Links are read through (a SavedModel's variables/ may be one), under their own
        # names; a dangling one, a cycle or a folder reached twice is refused now, naming the key.
        check_tree(os.path.expanduser(model.path), "model.path")
    info = inspect_model_file(os.path.expanduser(model.path))
    check_trusted(info, model.trust_code)
    check_custom_objects(info, modules)
    return os.path.abspath(os.path.expanduser(model.path)), info.kind


def _modules(model: DictConfig) -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """model.modules, the files that key them, and the params of every step that loads the model."""
    modules = list(model.modules)
    if not modules:
        return [], {}, {}
    from .models.modules import module_sources

    found = module_sources(modules)
    loading: dict[str, Any] = {"modules": modules}
    if found.distributions:  # an installed package's modules are keyed by its version
        loading["module_distributions"] = found.distributions
    return modules, found.files, loading


def _declared_files(model: DictConfig) -> dict[str, str]:
    """model.files: what the builder or the model's modules read besides Python source, keyed
    like their source (role "file:<as given>")."""
    files = {}
    for given in plain(model.get("files")) or []:
        path = os.path.expanduser(str(given))
        if not os.path.exists(path):
            raise ConfigError(f"model.files: no such file or folder '{given}'")
        files[f"file:{given}"] = os.path.abspath(path)
    return files


def _loss(value: Any) -> Any:
    value = plain(value)
    if value is None:
        return None
    if not (isinstance(value, str) or (isinstance(value, dict) and all(isinstance(v, str) for v in value.values()))):
        raise ConfigError(f"train.loss must be a tf_keras loss name or {{output: loss name}}, got {value!r}")
    from .training.tasks import check_loss  # a table of names: no TensorFlow

    check_loss(value, None, ConfigError)
    return value
