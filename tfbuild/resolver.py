"""Composed config -> Plan. Reads the config (and asks whether Node.js is there when TF.js
exports will be verified); never imports TensorFlow, writes nothing.

Each step receives only the parameters it reads, so a change reaches exactly the steps that
depend on it: a new TFLite quantization adds one step and leaves training cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from .checks import CALIBRATED_TFLITE, Choices, check_config, check_force_names, effective_precision
from .errors import ConfigError
from .plan import OutputSpec, Plan, StepSpec, make_plan
from .plan_data import DATA, check_data_settings, data_step
from .plan_model import KERAS_MODEL, ModelSource, model_source
from .runtimes.tfjs_node import NPM_LOCKFILE, node_problem
from .schema_checks import Origin, keys_named, plain

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
    check_data_settings(cfg, {key for key, _ in keys_named(origin.command_line)})
    _check_model_and_data(cfg, choices)
    model_steps, source_model = model_source(cfg)
    generated = cfg.data.source.value == "none"
    steps = [] if generated else [data_step(cfg)]
    steps += model_steps
    model = source_model
    if cfg.optimize.method.value != "none":
        steps.append(optimize_step(cfg, source_model))
        model = ModelSource(OPTIMIZED_MODEL, source_model.files, source_model.params)
    saved_model = saved_model_step(cfg, choices, model)
    steps.append(saved_model)
    if generated:  # inputs made from the SavedModel's signature stand in for a test split
        steps.append(generated_data_step(cfg))
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


def _check_model_and_data(cfg: DictConfig, choices: Choices) -> None:
    """What the model's source and the data source must agree on, before any work."""
    from_file = cfg.model.source.value == "file"
    if cfg.data.source.value == "none":
        if not from_file:
            raise ConfigError(f"data=none works with model=file only: model={cfg.model.name} must be trained on data (choose data=...)")
        calibrated = [q for q in choices.tflite if q in CALIBRATED_TFLITE] if "tflite" in choices.formats else []
        if calibrated:
            raise ConfigError(
                f"export.tflite.quantization={calibrated[0]} calibrates on real samples, and data=none gives none: "
                "choose data=... (the samples your model sees), or a variant without calibration (float, dynamic, fp16)"
            )
    if from_file and cfg.optimize.method.value != "none":
        raise ConfigError(
            f"optimize={cfg.optimize.method.value} fine-tunes a model tfbuild trains; with model=file export "
            "your model as it is (optimize=none), or optimize it before saving it"
        )


def generated_data_step(cfg: DictConfig) -> StepSpec:
    """Seeded inputs shaped by the SavedModel's signature: exports are compared with the
    SavedModel on them (there are no labels, so no accuracy)."""
    return StepSpec(
        name="data[generated]",
        kind="generated_data",
        params={"samples": cfg.data.generated_samples, "seed": cfg.data.seed},
        inputs={"saved_model": SAVED_MODEL},
        outputs=(OutputSpec(role="split", artifact=DATA, path="split"),),
    )


def optimize_step(cfg: DictConfig, model: ModelSource) -> StepSpec:
    optimize = cfg.optimize
    method = optimize.method.value
    params: dict[str, Any] = {
        "method": method,
        "epochs": optimize.epochs,
        "learning_rate": optimize.learning_rate,
        "batch_size": cfg.train.batch_size,
        "seed": cfg.train.seed,
        **model.params,
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
        files=model.files,
        outputs=(OutputSpec(role="model", artifact=OPTIMIZED_MODEL, path="model.h5"),),
    )


def saved_model_step(cfg: DictConfig, choices: Choices, model: ModelSource) -> StepSpec:
    # Always planned (TFLite and TF.js convert from it); shown in the run folder when asked for.
    published = "saved_model" in choices.formats
    params = _model_loading(cfg, model)
    if cfg.target.jit_compile:
        params["jit_compile"] = True
    return StepSpec(
        name="saved_model",
        kind="saved_model",
        params=params,
        inputs=_model_input(model),
        files=model.files,
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
    # precision is how tfbuild trains; a model brought as a file is exported as it is.
    trained_mixed = effective_precision(cfg) != "float32" and cfg.model.source.value != "file"
    return trained_mixed or bool(cfg.target.jit_compile)


def portable_step(cfg: DictConfig, model: ModelSource) -> StepSpec:
    """The trained weights as a float32, XLA-free SavedModel: what TFLite and TF.js convert."""
    return StepSpec(
        name="saved_model[portable]",
        kind="saved_model",
        params={**_model_loading(cfg, model), "portable": True},
        inputs=_model_input(model),
        files=model.files,
        outputs=(OutputSpec(role="saved_model", artifact=PORTABLE, path="saved_model"),),
    )


def _model_loading(cfg: DictConfig, model: ModelSource) -> dict[str, Any]:
    # A quantization-aware model's layers load only inside tfmot's quantize scope.
    params = dict(model.params)
    if cfg.optimize.method.value == "qat":
        params["quantize_scope"] = True
    return params


def _model_input(model: ModelSource) -> dict[str, str]:
    return {"model": model.artifact} if model.artifact else {}


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
        outputs=(OutputSpec(role="outputs", artifact=REFERENCE, path="reference"),),
    )


def verify_step(cfg: DictConfig, choices: Choices, export: StepSpec) -> StepSpec:
    (artifact,) = export.outputs
    assert artifact.format is not None
    tolerances = cfg.verify.tolerances[artifact.format]
    params: dict[str, Any] = {
        "format": artifact.format,
        "variant": artifact.variant,
        "samples": cfg.verify.samples,
        "tolerance": plain(tolerances if artifact.variant is None else tolerances[artifact.variant]),
        **_generated_tasks(cfg),
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


def _generated_tasks(cfg: DictConfig) -> dict[str, Any]:
    """Outputs compared on generated inputs have no targets to take a task from: the config's."""
    if cfg.data.source.value != "none":
        return {}
    return {"task": cfg.task.name.value, "task_outputs": {k: v.value for k, v in cfg.task.outputs.items()}}


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
