"""The web format's plan, config checks and runtime params: pure, no TensorFlow, no browser."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tfbuild.errors import ConfigError
from tfbuild.formats.base import PlanContext
from tfbuild.formats.tfjs import TFJS
from tfbuild.formats.web import WEB, WebExport
from tfbuild.plan import OutputSpec, StepSpec, make_plan
from tfbuild.runtimes.tfjs_node import NPM_LOCKFILE


def config(**web):
    """The whole config with the schema's defaults (conf/ not composed: no recipe, no target)."""
    from tfbuild.schema import current_schema

    cfg = OmegaConf.structured(current_schema())
    cfg.export.web.merge_with(web)
    return cfg


def test_the_format_declares_tfjs_variants_partial_verification_and_no_benchmark():
    assert WEB.name == "web" and WEB.variants == ("none", "float16", "uint8", "uint16")
    assert WEB.default_variants == ("uint8",) and set(WEB.tolerances) == set(WEB.variants)
    assert WEB.partial_verify is True and WEB.benchmark is None and WEB.verify is not None
    assert [s.kind for s in WEB.steps] == ["web"] and WEB.export_config is WebExport
    assert WEB.artifact("uint8") == "web/uint8"


def test_plan_builds_the_tfjs_variant_then_the_bundle_from_it():
    tfjs, web = WEB.plan(PlanContext(config(), "saved_model/portable", {}, "digits"), "uint8")
    assert (tfjs.name, tfjs.kind, dict(tfjs.inputs)) == ("tfjs[uint8]", "tfjs", {"saved_model": "saved_model/portable"})
    (model,) = tfjs.outputs
    assert model.artifact == "tfjs/uint8" and model.publish is None  # a published tfjs[uint8] wins
    assert (web.name, web.kind) == ("web[uint8]", "web")
    assert dict(web.inputs) == {"model": "tfjs/uint8", "data": "data/split"}
    assert dict(web.params) == {"quantization": "uint8", "samples": 8, "title": "digits"}
    (bundle,) = web.outputs
    assert (bundle.artifact, bundle.publish, bundle.format, bundle.variant) == ("web/uint8", "web/uint8", "web", "uint8")
    # A new TF.js (the lockfile) or an edited page rebuilds the bundle.
    assert web.files["npm_lock"] == str(NPM_LOCKFILE)
    pages = {role: Path(path) for role, path in web.files.items() if role.startswith("page/")}
    assert set(pages) == {"page/index.html", "page/app.js", "page/style.css"}
    assert all(path.is_file() for path in pages.values())


def test_plan_takes_the_title_and_samples_from_export_web_and_tasks_from_the_config_without_data():
    cfg = config(samples=3, title="My model")
    cfg.data.source = "none"
    cfg.task.outputs = {"size": "regression"}
    _, web = WEB.plan(PlanContext(cfg, "saved_model", {}, "digits"), "none")
    assert dict(web.params) == {"quantization": "none", "samples": 3, "title": "My model",
                                "task": "classification", "task_outputs": {"size": "regression"}}  # fmt: skip


def test_two_variants_plan_as_a_graph():
    ctx = PlanContext(config(), "saved_model", {}, "digits")
    steps = [s for v in ("none", "uint8") for s in WEB.plan(ctx, v)]
    producers = [StepSpec("data", "data", outputs=(OutputSpec("split", "data/split", "split"),)),
                 StepSpec("saved_model", "saved_model", outputs=(OutputSpec("saved_model", "saved_model", "sm"),))]  # fmt: skip
    plan = make_plan([*producers, *steps])
    order = [s.name for s in plan.steps]
    assert sorted(order[2:]) == ["tfjs[none]", "tfjs[uint8]", "web[none]", "web[uint8]"]
    assert all(order.index(f"tfjs[{v}]") < order.index(f"web[{v}]") for v in ("none", "uint8"))


def test_settings_default():
    assert WebExport().samples == 8 and WebExport().backends == ["webgl", "wasm"]


def test_runtime_params_for_verify_name_backends_node_and_chromium():
    cfg = config(backends="wasm")
    cfg.verify.chromium = "/opt/chromium"
    assert WEB.runtime_params(cfg, "verify") == ({"backends": ["wasm"], "node": "node", "chromium": "/opt/chromium"}, {})
    assert WEB.runtime_params(config(), "verify")[0]["backends"] == ["webgl", "wasm"]
    assert WEB.runtime_params(config(), "benchmark") == ({}, {})


@pytest.mark.parametrize(
    "web, verify, message",
    [
        ({"backends": ["webgpu"]}, {}, "export.web.backends: 'webgpu' is not one of webgl, wasm, cpu (did you mean 'webgl'?)"),
        ({"backends": []}, {}, "export.web.backends is empty; choose one or more of: webgl, wasm, cpu"),
        ({"samples": 0}, {}, "export.web.samples must be a number of test samples from 1 to 10000, got 0"),
        ({"samples": 20}, {"samples": 10}, "export.web.samples=20 is more than verify.samples=10: the page's samples"),
    ],
)
def test_bad_settings_are_one_line_naming_the_key(web, verify, message):
    cfg = config(**web)
    cfg.verify.update(verify)
    cfg.verify.enabled = bool(verify)  # the browser itself is checked below
    with pytest.raises(ConfigError) as caught:
        WEB.check(cfg, ("uint8",), ("web",))
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_qat_is_refused_like_tfjs():
    cfg = config()
    cfg.optimize.method = "qat"
    with pytest.raises(ConfigError, match="optimize=qat cannot be exported to TF.js .* remove web from"):
        WEB.check(cfg, ("uint8",), ("web",))


def test_a_missing_chromium_is_found_while_planning_and_says_how_to_go_without():
    cfg = config()
    cfg.verify.chromium = "/nonexistent/chromium"
    with pytest.raises(ConfigError) as caught:
        WEB.check(cfg, ("uint8",), ("web",))
    message = str(caught.value)
    assert message.startswith("export.formats has web, verified in Chromium: ") and "\n" not in message
    assert "/nonexistent/chromium" in message and "verify.enabled=false" in message
    cfg.verify.enabled = False
    WEB.check(cfg, ("uint8",), ("web",))


def test_tolerances_are_tfjs_ones():
    assert WEB.tolerances is TFJS.tolerances
