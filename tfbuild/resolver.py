"""Composed config -> Plan. Reads the config (and asks whether Node.js is there when TF.js
exports will be verified); never imports TensorFlow, writes nothing.

Each step receives only the parameters it reads, so a change reaches exactly the steps that
depend on it: a new TFLite quantization adds one step and leaves training cached.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .checks import CALIBRATED_TFLITE, Choices, check_config, check_force_names, effective_precision
from .errors import ConfigError, did_you_mean
from .models import BUILDERS
from .plan import OutputSpec, Plan, StepSpec, make_plan
from .runtimes.tfjs_node import NPM_LOCKFILE, node_problem
from .schema_checks import Origin

DATA = "data/split"
KERAS_MODEL = "model/keras"
OPTIMIZED_MODEL = "model/optimized"
SAVED_MODEL = "saved_model"
PORTABLE = "saved_model/portable"
REFERENCE = "reference/outputs"


@dataclass(frozen=True)
class Resolved:
    plan: Plan
    choices: Choices  # the normalized "one value or a list" keys (formats, variants, force)


def resolve(cfg: DictConfig, origin: Origin = Origin()) -> Resolved:
    """`origin` (the command line and the recipe file) lets errors name where a value came from."""
    choices = check_config(cfg, origin)
    steps = [data_step(cfg), train_step(cfg)]
    model = KERAS_MODEL
    if cfg.optimize.method.value != "none":
        steps.append(optimize_step(cfg))
        model = OPTIMIZED_MODEL
    saved_model = saved_model_step(cfg, choices, model)
    steps.append(saved_model)
    # Mixed precision and XLA serve well from TF but do not convert: exports (and the
    # reference they are held to) then come from a float32, XLA-free twin.
    source = SAVED_MODEL
    if needs_portable(cfg):
        steps.append(portable_step(cfg, model))
        source = PORTABLE
    exports: list[StepSpec] = []
    if "tflite" in choices.formats:
        exports += [tflite_step(cfg, q, source) for q in choices.tflite]
    if "tfjs" in choices.formats:
        exports += [tfjs_step(q, source) for q in choices.tfjs]
    steps += exports
    if "tfjs" in choices.formats and (cfg.verify.enabled or cfg.benchmark.enabled):
        _check_node(cfg.verify.node)
    # With a portable twin, the served SavedModel is itself checked against it.
    verified = [*exports, *([saved_model] if source == PORTABLE else [])]
    if cfg.verify.enabled and verified:
        steps.append(reference_step(cfg, source))
        steps += [verify_step(cfg, choices, step) for step in verified]
    if cfg.benchmark.enabled:
        steps += [benchmark_step(cfg, choices, artifact) for artifact in _artifacts(steps)]
    plan = make_plan(steps)
    check_force_names(choices.force, [s.name for s in plan.steps], [s.kind for s in plan.steps])
    return Resolved(plan, choices)


def data_step(cfg: DictConfig) -> StepSpec:
    data = cfg.data
    params: dict[str, Any] = {
        "source": data.source.value,
        "seed": data.seed,
        "validation_fraction": data.validation_fraction,
        "test_fraction": data.test_fraction,
        "limit": data.limit,
    }
    files: dict[str, str] = {}
    if data.source.value == "sklearn":
        params["name"] = _sklearn_dataset(data.name)
    else:
        files["source"] = _existing_file(data.path, "data.path")
    return StepSpec(
        name="data",
        kind="data",
        params=params,
        files=files,
        outputs=(OutputSpec(role="split", artifact=DATA, path="split"),),
    )


def train_step(cfg: DictConfig) -> StepSpec:
    builder, builder_files, builder_params = _model_builder(cfg.model)
    train = cfg.train
    return StepSpec(
        name="train",
        kind="train",
        params={
            "builder": builder,
            **builder_params,
            "model_params": _plain(cfg.model.params),
            "epochs": train.epochs,
            "batch_size": train.batch_size,
            "learning_rate": train.learning_rate,
            "seed": train.seed,
            **_training_target(cfg),
        },
        inputs={"data": DATA},
        # The builder's source, and the user's modules it imports, are inputs: editing the
        # network re-trains it.
        files=builder_files,
        outputs=(OutputSpec(role="model", artifact=KERAS_MODEL, path="model.h5"),),
    )


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


def optimize_step(cfg: DictConfig) -> StepSpec:
    optimize = cfg.optimize
    method = optimize.method.value
    params: dict[str, Any] = {
        "method": method,
        "epochs": optimize.epochs,
        "learning_rate": optimize.learning_rate,
        "batch_size": cfg.train.batch_size,
        "seed": cfg.train.seed,
    }
    if method == "prune":
        params["sparsity"] = optimize.sparsity
    elif method == "cluster":
        params["clusters"] = optimize.clusters
    return StepSpec(
        name="optimize",
        kind="optimize",
        params=params,
        inputs={"model": KERAS_MODEL, "data": DATA},
        outputs=(OutputSpec(role="model", artifact=OPTIMIZED_MODEL, path="model.h5"),),
    )


def saved_model_step(cfg: DictConfig, choices: Choices, model: str) -> StepSpec:
    # Always planned (TFLite and TF.js convert from it); shown in the run folder when asked for.
    published = "saved_model" in choices.formats
    params = _model_loading(cfg)
    if cfg.target.jit_compile:
        params["jit_compile"] = True
    return StepSpec(
        name="saved_model",
        kind="saved_model",
        params=params,
        inputs={"model": model},
        outputs=(
            OutputSpec(
                role="saved_model",
                artifact=SAVED_MODEL,
                path="saved_model",
                publish="saved_model" if published else None,
                format="saved_model",
            ),
        ),
    )


def needs_portable(cfg: DictConfig) -> bool:
    return effective_precision(cfg) != "float32" or bool(cfg.target.jit_compile)


def portable_step(cfg: DictConfig, model: str) -> StepSpec:
    """The trained weights as a float32, XLA-free SavedModel: what TFLite and TF.js convert."""
    return StepSpec(
        name="saved_model[portable]",
        kind="saved_model",
        params={**_model_loading(cfg), "portable": True},
        inputs={"model": model},
        outputs=(OutputSpec(role="saved_model", artifact=PORTABLE, path="saved_model"),),
    )


def _model_loading(cfg: DictConfig) -> dict[str, Any]:
    # A quantization-aware model's layers load only inside tfmot's quantize scope.
    return {"quantize_scope": True} if cfg.optimize.method.value == "qat" else {}


def tflite_step(cfg: DictConfig, quantization: str, source: str = SAVED_MODEL) -> StepSpec:
    params: dict[str, Any] = {"quantization": quantization}
    inputs = {"saved_model": source}
    if quantization in CALIBRATED_TFLITE:
        params["calibration_samples"] = cfg.data.calibration_samples
        inputs["data"] = DATA
    filename = f"model_{quantization}.tflite"
    return StepSpec(
        name=f"tflite[{quantization}]",
        kind="tflite",
        params=params,
        inputs=inputs,
        outputs=(
            OutputSpec(
                role="model",
                artifact=f"tflite/{quantization}",
                path=filename,
                publish=f"tflite/{filename}",
                format="tflite",
                variant=quantization,
            ),
        ),
    )


def tfjs_step(quantization: str, source: str = SAVED_MODEL) -> StepSpec:
    return StepSpec(
        name=f"tfjs[{quantization}]",
        kind="tfjs",
        params={"quantization": quantization},
        inputs={"saved_model": source},
        outputs=(
            OutputSpec(
                role="model",
                artifact=f"tfjs/{quantization}",
                path=f"tfjs_{quantization}",
                publish=f"tfjs/{quantization}",
                format="tfjs",
                variant=quantization,
            ),
        ),
    )


def reference_step(cfg: DictConfig, source: str = SAVED_MODEL) -> StepSpec:
    """The SavedModel reloaded from disk and run on the test inputs: what every export must match."""
    return StepSpec(
        name="reference",
        kind="reference",
        params={"samples": cfg.verify.samples},
        inputs={"saved_model": source, "data": DATA},
        outputs=(OutputSpec(role="outputs", artifact=REFERENCE, path="reference.npy"),),
    )


def verify_step(cfg: DictConfig, choices: Choices, export: StepSpec) -> StepSpec:
    (artifact,) = export.outputs
    assert artifact.format is not None
    tolerances = cfg.verify.tolerances[artifact.format]
    params: dict[str, Any] = {
        "format": artifact.format,
        "variant": artifact.variant,
        "samples": cfg.verify.samples,
        "tolerance": _plain(tolerances if artifact.variant is None else tolerances[artifact.variant]),
    }
    files = _tfjs_runtime(cfg, params, choices.tfjs_backends) if artifact.format == "tfjs" else {}
    return StepSpec(
        name=f"verify[{artifact.artifact}]",
        kind="verify",
        params=params,
        inputs={"artifact": artifact.artifact, "reference": REFERENCE, "data": DATA},
        files=files,
    )


def benchmark_step(cfg: DictConfig, choices: Choices, artifact: OutputSpec) -> StepSpec:
    bench = cfg.benchmark
    params: dict[str, Any] = {
        "format": artifact.format,
        "variant": artifact.variant,
        "warmup": bench.warmup,
        "min_runs": bench.min_runs,
        "min_seconds": bench.min_seconds,
        "batch_size": bench.batch_size,
    }
    if artifact.format == "saved_model" and cfg.target.jit_compile:
        params["xla"] = True  # timed with and without XLA
    files: dict[str, str] = {}
    if artifact.format == "tfjs":
        files = _tfjs_runtime(cfg, params, choices.bench_backends)
    else:  # TF.js in Node has one thread, whatever is asked
        params["threads"] = bench.threads
    return StepSpec(
        name=f"benchmark[{artifact.artifact}]",
        kind="benchmark",
        params=params,
        inputs={"artifact": artifact.artifact, "data": DATA},
        files=files,
    )


def _tfjs_runtime(cfg: DictConfig, params: dict[str, Any], backends: tuple[str, ...]) -> dict[str, str]:
    """What running an artifact in TF.js under Node reads: the backends, the Node.js binary,
    and (as a file input) the npm lockfile that pins TF.js, so a new TF.js re-runs the step."""
    params["backends"] = list(backends)
    params["node"] = cfg.verify.node
    return {"npm_lock": str(NPM_LOCKFILE)}


def _artifacts(steps: list[StepSpec]) -> list[OutputSpec]:
    """Every model artifact users get: the SavedModel (published or not, it is the reference
    row of the report) and each export."""
    return [out for s in steps for out in s.outputs if out.artifact == SAVED_MODEL or out.format in ("tflite", "tfjs")]


def _check_node(node: str) -> None:
    # Checked while planning, so a missing Node.js costs seconds, not a training run.
    problem = node_problem(node)
    if problem:
        raise ConfigError(f"verify.node: {problem}")


SKLEARN_DATASETS = ("digits", "iris", "wine", "breast_cancer")
CUSTOM_MODEL = "custom"


def _sklearn_dataset(name: str) -> str:
    if name not in SKLEARN_DATASETS:
        raise ConfigError(
            f"data.name: '{name}' is not one of {', '.join(SKLEARN_DATASETS)}"
            f"{did_you_mean(name, SKLEARN_DATASETS)}"
        )
    return name


def _existing_file(path: str | None, key: str) -> str:
    if not path:
        raise ConfigError(f"{key} must be set (data=npz needs data.path=FILE.npz)")
    if not os.path.isfile(path):
        raise ConfigError(f"{key}: no such file '{path}'")
    return os.path.abspath(path)


def _model_builder(model: DictConfig) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The builder's identity for the cache key, the source files it reads (key role -> path),
    and extra key params; checks the params. Reads files only: nothing of the user's runs."""
    if model.name == CUSTOM_MODEL or model._target_:
        if model.name != CUSTOM_MODEL:
            raise ConfigError(
                f"model._target_ is set but model={model.name}: choose model=custom for your own "
                f"builder, so that {model.name}'s params do not apply to it"
            )
        if not model._target_:
            raise ConfigError("model=custom needs model._target_=package.module.function")
        return _user_builder(model._target_, list(_plain(model.params)))
    if model.name not in BUILDERS:
        names = [*sorted(BUILDERS), CUSTOM_MODEL]
        raise ConfigError(
            f"model.name: '{model.name}' is not one of {', '.join(names)}{did_you_mean(model.name, names)}"
        )
    builder = BUILDERS[model.name]
    _check_params(builder, _plain(model.params), f"model '{model.name}'")
    return model.name, {"builder": inspect.getfile(builder)}, {}


def _user_builder(target: str, params: list[str]) -> tuple[str, dict[str, str], dict[str, Any]]:
    from .builder_source import user_builder  # only custom builders pay for reading sources

    source = user_builder(target, params)
    # An installed package's builder is keyed by its distribution's version too.
    extra = {"builder_distribution": source.distribution} if source.distribution else {}
    return source.target, source.files, extra


def _check_params(builder: Any, params: dict[str, Any], what: str) -> None:
    signature = inspect.signature(builder)
    allowed = [p for p in signature.parameters if p not in ("input_shape", "num_classes")]
    for key in params:
        if key not in allowed:
            raise ConfigError(
                f"model.params.{key}: not a parameter of {what} (allowed: {', '.join(allowed)})"
                f"{did_you_mean(key, allowed)}"
            )


def _plain(node: Any) -> Any:
    """A JSON-able copy: containers resolved, enums as their values."""
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return node
