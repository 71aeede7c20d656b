"""The TFLite format: `tflite[variant]` converts the SavedModel to .tflite, one step per
quantization; LiteRT (the runtime edge users run) verifies and times it.

float    no optimization
dynamic  dynamic-range: int8 weights, float activations
fp16     float16 weights
int8     full integer: int8 weights, activations, inputs and outputs; calibrated. Chosen ops
         can stay in float (export.tflite.int8.float_layers), or a search picks them
         (export.tflite.int8.max_metric_drop); tflite/int8/layers.csv says, op by op, where
         int8 loses (convert.py, layers.py, repair.py)
int16x8  int16 activations, int8 weights (float input and output); calibrated

The `serving_default` signature is converted with its names, so LiteRT's signature runner
takes and gives the tensors the SavedModel names. The converted model is loaded in LiteRT
(the runtime edge users run) before it is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional

from ...errors import ConfigError
from ...plan import OutputSpec, StepSpec
from ..base import DATA, Arrays, Format, PlanContext, Runs, Scorer
from .convert import CALIBRATED
from .patterns import compile_pattern
from .steps import TfliteLayersStep, TfliteRepairStep, TfliteStep

if TYPE_CHECKING:  # types only: planning passes a DictConfig; the no-op shortcut imports no OmegaConf
    from omegaconf import DictConfig

VARIANTS = ("float", "dynamic", "fp16", "int8", "int16x8")
LAYERS = "tflite/int8/layers"  # the per-layer report (plan-wide artifact names)
REPAIR = "tflite/int8/repair"  # the float ops the repair chose
# How far each variant may be from the SavedModel on the test inputs (verify.tolerances.tflite).
# Float must match numerically; quantized variants are held to top-1 agreement.
TOLERANCES = {
    "float": {"max_abs_diff": 0.0001, "min_top1_agreement": 0.99},
    "dynamic": {"min_top1_agreement": 0.97},
    "fp16": {"max_abs_diff": 0.01, "min_top1_agreement": 0.98},
    "int8": {"min_top1_agreement": 0.95},
    "int16x8": {"min_top1_agreement": 0.97},
}
@dataclass
class Int8Settings:
    # Per-layer quantization report (tflite/int8/layers.csv): true always, false never,
    # null when verify[tflite/int8] fails (so a failing build already says where to look).
    debug: Optional[bool] = None
    # Ops kept in float: names, layer names, op types (CONV_2D) or regular expressions over them
    # (RE2 syntax, matched in full: linear time, no backreferences or lookaround).
    float_layers: List[str] = field(default_factory=list)
    # Largest task-metric drop from the SavedModel allowed on the validation split (0.01 is
    # one accuracy point; MAE in target units): the worst ops are kept in float until it holds.
    max_metric_drop: Optional[float] = None


@dataclass
class TfliteExport:
    # One value or a list of float, dynamic, fp16, int8, int16x8: one build step per value.
    # null: the target's (target.tflite_quantization). Set while tflite is not built: an error.
    quantization: Any = None
    # The int8 variant's debugging and repair (inert while int8 is not built, so a sweep over
    # quantizations may set them for every job).
    int8: Int8Settings = field(default_factory=Int8Settings)


def plan(ctx: PlanContext, quantization: str | None) -> list[StepSpec]:
    assert quantization is not None
    params: dict[str, Any] = {"quantization": quantization}
    inputs = {"saved_model": ctx.source}
    if quantization in CALIBRATED:
        from ...plan_model import numerics_params  # not at import: plan_model's imports reach the formats

        # Calibration runs the float model on this machine's kernels: keyed like training.
        params.update(calibration_samples=ctx.cfg.data.calibration_samples, **numerics_params(ctx.cfg))
        inputs["data"] = DATA
    steps = int8_steps(ctx, params) if quantization == "int8" else []
    if any(s.kind == "tflite_repair" for s in steps) and ctx.cfg.export.tflite.int8.max_metric_drop is not None:
        inputs["repair"] = REPAIR
    elif quantization == "int8" and ctx.cfg.export.tflite.int8.float_layers:
        params["float_layers"] = list(ctx.cfg.export.tflite.int8.float_layers)
    filename = f"model_{quantization}.tflite"
    output = OutputSpec(role="model", artifact=TFLITE.artifact(quantization), path=filename,
                        publish=f"tflite/{filename}", format="tflite", variant=quantization)
    return [*steps, StepSpec(name=f"tflite[{quantization}]", kind="tflite", params=params, inputs=inputs, outputs=(output,))]


def int8_steps(ctx: PlanContext, calibration: dict[str, Any]) -> list[StepSpec]:
    """The per-layer report and the repair, as the int8 settings ask."""
    settings = ctx.cfg.export.tflite.int8
    repair = settings.max_metric_drop is not None or bool(settings.float_layers)
    if settings.debug is False or not (settings.debug or repair or ctx.cfg.verify.enabled):
        return []
    inputs = {"saved_model": ctx.source, "data": DATA}
    params = {key: calibration[key] for key in ("calibration_samples", "threads", "onednn")}
    layers = StepSpec(
        name="tflite_layers[int8]", kind="tflite_layers", params=params, inputs=inputs,
        outputs=(OutputSpec(role="layers", artifact=LAYERS, path="layers.csv", publish="tflite/int8/layers.csv"),),
        # Nobody asked: off the critical path, unless verification fails.
        runs_if_failed=None if settings.debug or repair else f"verify[{TFLITE.artifact('int8')}]",
    )
    if not repair:
        return [layers]
    return [layers, StepSpec(
        name="tflite_repair[int8]", kind="tflite_repair",
        params={**params, "float_layers": list(settings.float_layers), "max_metric_drop": settings.max_metric_drop,
                # The search also holds int8's verification tolerance, on the validation split.
                "tolerance": _tolerance(ctx.cfg) if ctx.cfg.verify.enabled else {}},
        inputs={**inputs, "layers": LAYERS}, outputs=(OutputSpec(role="repair", artifact=REPAIR, path="repair.json"),),
    )]  # fmt: skip


def verify(path: Path, inputs: Arrays, params: Any) -> Runs:
    from ...runtimes.litert import LiteRtModel, litert_version

    return {litert_version(): LiteRtModel(path, None).predict(inputs)}


def benchmark(path: Path, inputs: Arrays, score: Scorer, params: Any, protocol: Any) -> dict[str, Any]:
    from ...runtimes.feeds import first_sample, tiled
    from ...runtimes.litert import LiteRtModel, litert_version
    from ...runtimes.timing import figures, time_rounds

    model = LiteRtModel(path, params["threads"])
    outputs = model.predict(inputs)
    # Timed: set input, invoke, read output, on an input already quantized (as on a device).
    one = model.prepare(first_sample(inputs))
    batch = model.prepare(tiled(inputs, params["batch_size"]))
    latency, batches = time_rounds(lambda: model.invoke(one), lambda: model.invoke(batch), protocol)
    runtime = litert_version()
    samples = len(next(iter(outputs.values())))
    return {runtime: figures(runtime, params["threads"], latency, batches, params["batch_size"], score(outputs), samples)}


def runtime_params(cfg: DictConfig, purpose: str) -> tuple[dict[str, Any], dict[str, str]]:
    return ({"threads": cfg.benchmark.threads} if purpose == "benchmark" else {}), {}


def check(cfg: DictConfig, variants: tuple[str, ...], formats: tuple[str, ...]) -> None:
    calibrated = [q for q in variants if q in CALIBRATED]
    if calibrated and cfg.data.source.value == "none":
        raise ConfigError(
            f"export.tflite.quantization={calibrated[0]} calibrates on real samples, and data=none gives none: "
            "choose data=... (the samples your model sees), or a variant without calibration (float, dynamic, fp16)"
        )
    if calibrated and cfg.data.calibration_samples < 1:
        raise ConfigError(
            f"export.tflite.quantization={calibrated[0]} needs calibration data: set "
            "data.calibration_samples to 1 or more (100 is typical)"
        )
    _check_int8(cfg.export.tflite.int8)
    if cfg.optimize.method.value == "qat" and "int16x8" in variants:
        raise ConfigError(
            "optimize=qat trains for int8 and cannot be converted to int16x8: remove int16x8 "
            "from export.tflite.quantization, or use optimize=none|prune|cluster"
        )


def _tolerance(cfg: DictConfig) -> dict[str, Any]:
    from omegaconf import OmegaConf

    value = OmegaConf.to_container(cfg.verify.tolerances.tflite.int8, resolve=True)
    assert isinstance(value, dict)
    return value


def _check_int8(settings: DictConfig) -> None:
    key = "export.tflite.int8"
    drop = settings.max_metric_drop
    if drop is not None and not (0 <= drop < float("inf")):
        raise ConfigError(f"{key}.max_metric_drop must be a number of 0 or more (0.01: one accuracy point), got {drop}")
    if settings.debug is False and drop is not None:
        raise ConfigError(f"{key}.max_metric_drop ranks the ops by the per-layer report, which {key}.debug=false "
                          "turns off: drop one of them")  # fmt: skip
    for pattern in settings.float_layers:
        if not pattern:
            raise ConfigError(f"{key}.float_layers: an empty name picks nothing; give op or layer names, or patterns")
        compile_pattern(pattern)  # RE2: a pattern that would backtrack forever is refused here, not run


TFLITE = Format(
    name="tflite",
    title="TFLite",
    summary="a .tflite flatbuffer per quantization, verified and timed on LiteRT (phones, edge devices)",
    steps=(TfliteStep(), TfliteLayersStep(), TfliteRepairStep()),
    plan=plan,
    variants=VARIANTS,
    default_variants=("float", "int8"),
    export_config=TfliteExport,
    tolerances=TOLERANCES,
    verify=verify,
    benchmark=benchmark,
    runtime_params=runtime_params,
    check=check,
    tools=("ai-edge-litert",),
)
