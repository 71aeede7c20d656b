"""Composed config -> Plan. Reads the config (and asks whether the runtimes that will verify
the exports are there: Node.js, Chromium); never imports TensorFlow, writes nothing.

Each step receives only the parameters it reads, so a change reaches exactly the steps that
depend on it: a new TFLite quantization adds one step and leaves training cached. The
formats' steps come from their modules (tfbuild/formats/); this module names none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from .artifacts import DATA, KERAS_MODEL, OPTIMIZED_MODEL, PORTABLE, REFERENCE, SAVED_MODEL
from .checks import Choices, check_config, check_force_names, needs_portable
from .errors import ConfigError, PlanError
from .formats import FORMATS
from .formats.base import PlanContext
from .plan import OutputSpec, Plan, StepSpec, make_plan
from .plan_data import check_data_settings, data_step
from .plan_model import ModelSource, model_source, numerics_params
from .schema_checks import Origin, keys_named, plain


@dataclass(frozen=True)
class Resolved:
    plan: Plan
    choices: Choices  # the normalized "one value or a list" keys (formats, variants, force)


def resolve(cfg: DictConfig, origin: Origin = Origin()) -> Resolved:
    """`origin` (the command line and the recipe file) lets errors name where a value came from."""
    choices = check_config(cfg, origin)
    check_data_settings(cfg, {key for key, _ in keys_named(origin.command_line)})
    _check_model_and_data(cfg)
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
    # Names people see (a served model's) default to the recipe's name, else the model's.
    name = origin.recipe_file.stem if origin.recipe_file else str(cfg.model.name)
    context = PlanContext(cfg, source, choices.variants, name)
    exports = _merged(export_steps(context))
    steps += exports
    # With a portable twin, the served SavedModel is itself checked against it.
    artifacts = [*_artifacts(exports), *(saved_model.outputs if source == PORTABLE else ())]
    verified = [a for a in artifacts if FORMATS[a.format].verify is not None]
    if cfg.verify.enabled and verified:
        steps.append(reference_step(cfg, source))
        steps += [verify_step(cfg, artifact) for artifact in verified]
    if cfg.benchmark.enabled:
        timed = [*saved_model.outputs, *_artifacts(exports)]
        steps += [benchmark_step(cfg, a) for a in timed if FORMATS[a.format].benchmark is not None]
    plan = make_plan(steps)
    check_force_names(choices.force, [s.name for s in plan.steps], [s.kind for s in plan.steps])
    return Resolved(plan, choices)


def _check_model_and_data(cfg: DictConfig) -> None:
    """What the model's source and the data source must agree on, before any work."""
    from_file = cfg.model.source.value == "file"
    if cfg.data.source.value == "none" and not from_file:
        raise ConfigError(f"data=none works with model=file only: model={cfg.model.name} must be trained on data (choose data=...)")
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
        **numerics_params(cfg),
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


def reference_step(cfg: DictConfig, source: str = SAVED_MODEL) -> StepSpec:
    """The SavedModel reloaded from disk and run on the test inputs: what every export must match."""
    return StepSpec(
        name="reference",
        kind="reference",
        params={"samples": cfg.verify.samples},
        inputs={"saved_model": source, "data": DATA},
        outputs=(OutputSpec(role="outputs", artifact=REFERENCE, path="reference"),),
    )


def export_steps(context: PlanContext) -> list[StepSpec]:
    """Every built format's steps, variant by variant, in the registry's order."""
    steps: list[StepSpec] = []
    for name, variants in context.variants.items():
        plan = FORMATS[name].plan
        if plan is not None:  # saved_model: planned above, whatever the formats
            steps += [step for variant in (variants or (None,)) for step in plan(context, variant)]
    return steps


def _merged(steps: list[StepSpec]) -> list[StepSpec]:
    """One step per name: a format may plan a step another format plans too (the web bundle
    needs its TF.js variant whether or not tfjs is built); the first, which publishes when its
    own format asked for it, is kept. Two different steps under one name are a plug-in bug."""
    kept: dict[str, StepSpec] = {}
    for step in steps:
        first = kept.setdefault(step.name, step)
        if first is not step and (first.kind, first.params, first.inputs) != (step.kind, step.params, step.inputs):
            raise PlanError(f"two different steps are both named {step.name!r}: formats must name their steps apart")
    return list(kept.values())


def verify_step(cfg: DictConfig, artifact: OutputSpec) -> StepSpec:
    assert artifact.format is not None
    fmt = FORMATS[artifact.format]
    tolerances = cfg.verify.tolerances[artifact.format]
    extra, files = fmt.runtime_params(cfg, "verify")
    params: dict[str, Any] = {
        "format": artifact.format,
        "variant": artifact.variant,
        "samples": cfg.verify.samples,
        "tolerance": plain(tolerances if artifact.variant is None else tolerances[artifact.variant]),
        **_generated_tasks(cfg),
        **extra,
    }
    return StepSpec(
        name=f"verify[{artifact.artifact}]",
        kind="verify",
        params=params,
        inputs={"artifact": artifact.artifact, "reference": REFERENCE, "data": DATA},
        files=files,
    )


def benchmark_step(cfg: DictConfig, artifact: OutputSpec) -> StepSpec:
    assert artifact.format is not None
    bench = cfg.benchmark
    extra, files = FORMATS[artifact.format].runtime_params(cfg, "benchmark")
    params: dict[str, Any] = {
        "format": artifact.format,
        "variant": artifact.variant,
        "warmup": bench.warmup,
        "min_runs": bench.min_runs,
        "min_seconds": bench.min_seconds,
        "rounds": bench.rounds,
        "batch_size": bench.batch_size,
        **extra,
    }
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


def _artifacts(steps: list[StepSpec]) -> list[OutputSpec]:
    """The artifacts users get from these steps (the ones a format produced)."""
    return [out for step in steps for out in step.outputs if out.format is not None]
