"""The format registry is what the engine reads: a format registered by a test (no file of
the engine names it) gets its config keys, its checks, its steps, verification, benchmarks,
gates and its run-folder name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tfbuild.artifacts import DATA
from tfbuild.errors import ConfigError
from tfbuild.formats import FORMATS, registered
from tfbuild.formats.base import Format, PlanContext
from tfbuild.plan import OutputSpec, StepSpec
from tfbuild.resolver import resolve
from tfbuild.run_folder import owned_paths
from tfbuild.schema import register_configs
from tfbuild.schema_checks import Origin
from tfbuild.steps import REGISTRY


@dataclass
class OnnxishExport:
    # One value or a list of fp32, int4.
    quantization: Any = None
    opset: int = 17


class OnnxishStep:
    kind = "onnxish"
    version = 1
    tools = ()

    def run(self, ctx: Any) -> dict[str, Any]:
        ctx.outputs["model"].write_bytes(b"onnxish " + ctx.params["quantization"].encode())
        return {"summary": "converted"}


def _plan(ctx: PlanContext, variant: str | None) -> list[StepSpec]:
    out = OutputSpec(role="model", artifact=ONNXISH.artifact(variant), path="model.onnx",
                     publish=f"onnxish/{variant}.onnx", format="onnxish", variant=variant)
    params = {"quantization": variant, "opset": ctx.cfg.export.onnxish.opset, "name": ctx.name}
    return [StepSpec(name=f"onnxish[{variant}]", kind="onnxish", params=params,
                     inputs={"saved_model": ctx.source, "data": DATA}, outputs=(out,))]


def _check(cfg: Any, variants: tuple[str, ...], formats: tuple[str, ...]) -> None:
    if "int4" in variants and cfg.export.onnxish.opset < 21:
        raise ConfigError("export.onnxish.quantization=int4 needs export.onnxish.opset 21 or more")


ONNXISH = Format(
    name="onnxish",
    title="ONNX-ish",
    summary="a fake format registered by a test",
    steps=(OnnxishStep(),),
    plan=_plan,
    variants=("fp32", "int4"),
    default_variants=("fp32",),
    export_config=OnnxishExport,
    tolerances={"fp32": {"max_abs_diff": 0.001}, "int4": {"min_top1_agreement": 0.9}},
    verify=lambda path, inputs, params: {},
    benchmark=lambda path, inputs, score, params, protocol: {},
    runtime_params=lambda cfg, purpose: ({"opset": cfg.export.onnxish.opset}, {}),
    check=_check,
    settings=("benchmark.threads",),
)


@pytest.fixture()
def onnxish():
    with registered(ONNXISH):
        register_configs()  # the schema is built from the registry
        yield ONNXISH
    register_configs()


def test_a_registered_format_is_planned_verified_and_benchmarked(compose_cfg, onnxish):
    cfg = compose_cfg("recipe=digits", "export.formats=[onnxish]", "export.onnxish.quantization=[fp32,int4]",
                      "export.onnxish.opset=21", "gates.onnxish.int4.max_bytes=100")
    plan = resolve(cfg, Origin(recipe_file=Path("recipes/digits.yaml"))).plan
    steps = {s.name: s for s in plan.steps}
    assert steps["onnxish[int4]"].params == {"quantization": "int4", "opset": 21, "name": "digits"}
    assert steps["verify[onnxish/int4]"].params["tolerance"]["min_top1_agreement"] == 0.9
    assert steps["verify[onnxish/fp32]"].params["tolerance"]["max_abs_diff"] == 0.001
    assert steps["benchmark[onnxish/fp32]"].params["opset"] == 21
    assert REGISTRY["onnxish"] is ONNXISH.steps[0]
    assert "onnxish" in owned_paths(plan)
    assert cfg.target.onnxish_quantization == ["fp32"]  # the target's default variants


def test_a_registered_format_has_its_checks_and_unbuilt_settings_refused(compose_cfg, onnxish):
    cfg = compose_cfg("recipe=digits", "export.formats=[onnxish]", "export.onnxish.quantization=int4")
    with pytest.raises(ConfigError, match="needs export.onnxish.opset 21"):
        resolve(cfg)
    cfg = compose_cfg("recipe=digits", "export.onnxish.quantization=int4")
    with pytest.raises(ConfigError, match="onnxish is not built"):
        resolve(cfg, Origin(command_line=("export.onnxish.quantization=int4",)))
    cfg = compose_cfg("recipe=digits", "export.formats=[onnxish]", "export.onnxish.quantization=int9")
    with pytest.raises(ConfigError, match="'int9' is not one of fp32, int4"):
        resolve(cfg)


def test_the_registry_is_left_as_it_was():
    assert "onnxish" not in FORMATS
    assert "onnxish" not in REGISTRY
