"""The TF.js format: `tfjs[variant]` converts the SavedModel to a TF.js graph model, one step
per quantization; real TF.js runs it (in Node.js, and in headless Chromium).

none     float32 weights
float16  float16 weights
uint8    weights quantized to 8 bits (affine, per tensor), dequantized when the model loads
uint16   weights quantized to 16 bits

tensorflowjs writes `model.json` with node attributes in a different key order on every
conversion; it is rewritten with sorted keys so that equal models give equal bytes (and the
verify step runs the rewritten file, so the rewrite is checked on real TF.js).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..conversion import tfjs_unsupported_ops
from ..errors import ConfigError
from ..plan import OutputSpec, StepSpec
from ..signature import SIGNATURE
from ..steps.base import StepContext
from ..steps.compressed import gzip_bytes
from .base import Arrays, Format, PlanContext, Runs, Scorer

if TYPE_CHECKING:  # types only: planning passes a DictConfig; the no-op shortcut imports no OmegaConf
    from omegaconf import DictConfig

# Float weights must match numerically; 8-bit weights are held to top-1 agreement.
TOLERANCES = {
    "none": {"max_abs_diff": 0.0001, "min_top1_agreement": 0.99},
    "float16": {"max_abs_diff": 0.01, "min_top1_agreement": 0.98},
    "uint8": {"min_top1_agreement": 0.97},
    "uint16": {"max_abs_diff": 0.01, "min_top1_agreement": 0.98},
}
QUANTIZATION_MAPS: dict[str, dict[str, str] | None] = {
    "none": None,
    "float16": {"float16": "*"},
    "uint8": {"uint8": "*"},
    "uint16": {"uint16": "*"},
}


def canonicalize_model_json(path: Path) -> None:
    model = json.loads(path.read_text())
    path.write_text(json.dumps(model, sort_keys=True, separators=(",", ":")))


class TfjsStep:
    kind = "tfjs"
    version = 2  # 2: signature names in info; unsupported ops named
    tools = ("tensorflowjs", "tensorflow")

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from ..tfenv import import_tensorflow

        import_tensorflow()
        from tensorflowjs.converters.tf_saved_model_conversion_v2 import convert_tf_saved_model

        quantization = ctx.params["quantization"]
        out = ctx.outputs["model"]
        try:
            # With signature_def, model.json carries the signature's input and output names.
            convert_tf_saved_model(
                str(ctx.inputs["saved_model"]),
                str(out),
                signature_def=SIGNATURE,
                saved_model_tags="serve",
                quantization_dtype_map=QUANTIZATION_MAPS[quantization],
            )
        except ValueError as error:
            unsupported = tfjs_unsupported_ops(error)
            if unsupported is None:
                raise
            raise unsupported from None
        canonicalize_model_json(out / "model.json")
        shards = sorted(p for p in out.iterdir() if p.name != "model.json")
        model = json.loads((out / "model.json").read_text())
        weights, signature = model["weightsManifest"], model.get("signature") or {}
        compressed = gzip_bytes(out)
        return {
            "quantization": quantization,
            "weights": sum(len(group["weights"]) for group in weights),
            "shards": [p.name for p in shards],
            "signature": SIGNATURE,
            "inputs": sorted(signature.get("inputs") or {}),
            "outputs": sorted(signature.get("outputs") or {}),
            "gzip_bytes": compressed,
            "summary": f"gzip {compressed / 1024:.1f} KB",
        }


@dataclass
class TfjsExport:
    # One value or a list of none, float16, uint8, uint16: one build step per value.
    # null: the target's (target.tfjs_quantization). Set while tfjs is not built: an error.
    quantization: Any = None


def plan(ctx: PlanContext, quantization: str | None) -> list[StepSpec]:
    assert quantization is not None
    output = OutputSpec(role="model", artifact=TFJS.artifact(quantization), path=f"tfjs_{quantization}",
                        publish=f"tfjs/{quantization}", format="tfjs", variant=quantization)
    return [StepSpec(name=f"tfjs[{quantization}]", kind="tfjs", params={"quantization": quantization},
                     inputs={"saved_model": ctx.source}, outputs=(output,))]


def verify(path: Path, inputs: Arrays, params: Any) -> Runs:
    return {label: outputs for label, (outputs, _, _) in _runs(path, inputs, params).items()}


def benchmark(path: Path, inputs: Arrays, score: Scorer, params: Any, protocol: Any) -> dict[str, Any]:
    from ..runtimes.timing import figures

    rows = {}
    for label, (outputs, latency, batches) in _runs(path, inputs, params, bench=(protocol, params["batch_size"])).items():
        # TF.js runs on one thread (wasm threads are off under Node and on a page that is
        # not cross-origin isolated).
        rows[label] = figures(label, 1, latency, batches, params["batch_size"], score(outputs),
                              len(next(iter(outputs.values()))))  # fmt: skip
    return rows


def _runs(path: Path, inputs: Arrays, params: Any, bench: Any = None) -> dict[str, tuple[Arrays, list, list]]:
    """runtime label -> (outputs, latency ms per round, batch ms per round): in Node.js on
    params["backends"], then in Chromium on params["browser_backends"] (one Chromium for the
    whole build)."""
    runs: dict[str, tuple[Arrays, list, list]] = {}
    if params["backends"]:
        from ..runtimes.tfjs_node import run_tfjs

        run = run_tfjs(path, inputs, params["backends"], node=params["node"], bench=bench)
        for backend in params["backends"]:
            runs[f"TF.js {run.version} {backend}"] = (
                run.outputs[backend], run.latency_rounds.get(backend, []), run.batch_rounds.get(backend, []))
    if params.get("browser_backends"):
        from ..runtimes.tfjs_browser import browser_version, shared_session

        session = shared_session(params["chromium"], params["node"])
        run = session.run(path, inputs, params["browser_backends"], bench=bench)
        # "Chromium 150": the major version keeps the label short in tables and plots.
        browser = browser_version(params["chromium"]).split(".")[0]
        for backend in params["browser_backends"]:
            runs[f"TF.js {run.version} {backend} in {browser}"] = (
                run.outputs[backend], run.latency_rounds.get(backend, []), run.batch_rounds.get(backend, []))
    return runs


def shared_runtime(params: Mapping[str, Any]) -> str | None:
    """Runs in Chromium share the process's one browser session (shared_session)."""
    return f"chromium {params['chromium']} {params['node']}" if params.get("browser_backends") else None


def runtime_params(cfg: DictConfig, purpose: str) -> tuple[dict[str, Any], dict[str, str]]:
    """What running an artifact in TF.js reads: the backends (in Node.js and in Chromium),
    the Node.js and Chromium executables, and (as a file input) the npm lockfile that pins
    TF.js and puppeteer-core, so a new TF.js re-runs the step."""
    from ..runtimes.tfjs_node import NPM_LOCKFILE

    node_backends, browser_backends = backends_of(cfg, purpose)
    params: dict[str, Any] = {"backends": list(node_backends), "node": cfg.verify.node}
    if browser_backends:
        params.update(browser_backends=list(browser_backends), chromium=cfg.verify.chromium)
    return params, {"npm_lock": str(NPM_LOCKFILE)}


def backends_of(cfg: DictConfig, purpose: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(Node.js backends, Chromium backends) of verify.* or benchmark.*; one of them may be []."""
    from ..checks import one_or_many
    from ..runtimes.tfjs_browser import BROWSER_BACKENDS

    section = cfg.verify if purpose == "verify" else cfg.benchmark
    node = one_or_many(section.tfjs_backends, NODE_BACKENDS, f"{purpose}.tfjs_backends", may_be_empty=True)
    browser = one_or_many(section.browser_backends, BROWSER_BACKENDS, f"{purpose}.browser_backends", may_be_empty=True)
    if not node and not browser:
        raise ConfigError(
            f"{purpose}.tfjs_backends and {purpose}.browser_backends are both empty: TF.js would run nowhere; "
            f"choose Node.js backends ({', '.join(NODE_BACKENDS)}) or browser ones ({', '.join(BROWSER_BACKENDS)})"
        )
    return node, browser


def check(cfg: DictConfig, variants: tuple[str, ...], formats: tuple[str, ...]) -> None:
    from ..runtimes.chromium import chromium_problem
    from ..runtimes.tfjs_node import node_problem

    refuse_qat(cfg, "tfjs")
    backends = {purpose: backends_of(cfg, purpose) for purpose in ("verify", "benchmark")}
    used = [purpose for purpose in backends if cfg[purpose].enabled]
    in_browser = any(backends[purpose][1] for purpose in used)
    # Checked while planning, so a missing Node.js or Chromium costs seconds, not a training
    # run. Node.js also drives Chromium.
    if used:
        problem = node_problem(cfg.verify.node)
        if problem:
            raise ConfigError(f"verify.node: {problem}")
    if in_browser:
        problem = chromium_problem(cfg.verify.chromium)
        if problem:
            raise ConfigError(f"verify.chromium: {problem}")


def refuse_qat(cfg: DictConfig, fmt: str) -> None:
    """Every format made of a TF.js model (tfjs, web) cannot take a quantization-aware one."""
    if cfg.optimize.method.value == "qat":
        raise ConfigError(
            "optimize=qat cannot be exported to TF.js (the converter has no FakeQuant ops): "
            f"remove {fmt} from export.formats, or use optimize=none|prune|cluster"
        )


NODE_BACKENDS = ("cpu", "wasm")
TFJS = Format(
    name="tfjs",
    title="TF.js",
    summary="a TF.js graph model per weight quantization, verified and timed in real TF.js (Node.js, Chromium)",
    steps=(TfjsStep(),),
    plan=plan,
    variants=tuple(QUANTIZATION_MAPS),
    default_variants=("none",),
    export_config=TfjsExport,
    tolerances=TOLERANCES,
    verify=verify,
    benchmark=benchmark,
    runtime_params=runtime_params,
    shared_runtime=shared_runtime,
    check=check,
    settings=("verify.tfjs_backends", "benchmark.tfjs_backends", "verify.browser_backends", "benchmark.browser_backends"),
)
