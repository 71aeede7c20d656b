"""`web`: a static folder to deploy as it is: the TF.js model, TF.js itself (copied from the
pinned npm packages, no CDN), a page that runs the model on bundled test samples on each
backend (webgl, wasm, cpu), and shows each prediction, the expected label and the latency.

One bundle per TF.js quantization (`export.web.quantization`), built from that TF.js
variant's converted model. Verification serves the folder as it is from 127.0.0.1, opens the
page in Chromium and holds what the page computed on each backend to the SavedModel's
outputs on the same samples: the bundled samples are the first of the test split, so they are
compared with the reference's first rows (`partial_verify`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

from ...errors import ConfigError
from ...plan import OutputSpec, StepSpec
from ..base import DATA, Arrays, Format, PlanContext, Runs
from ..tfjs import TFJS, refuse_qat

if TYPE_CHECKING:  # types only: planning passes a DictConfig; the no-op shortcut imports no OmegaConf
    from omegaconf import DictConfig

if TYPE_CHECKING:
    from ...steps.base import StepContext

NAME = "web"
BACKENDS = ("webgl", "wasm", "cpu")  # what the page tries, in this order


@dataclass
class WebExport:
    # One value or a list of none, float16, uint8, uint16: the TF.js quantization of the
    # bundled model, one bundle per value. null: the target's, else uint8.
    quantization: Any = None
    # Test samples bundled with the page (the first of the test split), each run on every backend.
    samples: int = 8
    # One value or a list of webgl, wasm, cpu: the backends that must run when the page is
    # verified. The page tries all three; the others are compared too when the browser has them.
    backends: Any = field(default_factory=lambda: ["webgl", "wasm"])
    # The page's heading. null: the recipe's name.
    title: Optional[str] = None


def plan(ctx: PlanContext, variant: str | None) -> list[StepSpec]:
    from ...runtimes.tfjs_node import NPM_LOCKFILE
    from ...schema_checks import plain
    from .bundle import PAGE_DIR, PAGE_FILES

    assert variant is not None
    web = ctx.cfg.export.web
    params: dict[str, Any] = {"quantization": variant, "samples": web.samples, "title": web.title or ctx.name}
    if plain(ctx.cfg.data.source) == "none":  # no targets to take the outputs' tasks from
        params["task"] = plain(ctx.cfg.task.name)
        params["task_outputs"] = plain(ctx.cfg.task.outputs)
    # The page's files are keyed like any input: editing app.js rebuilds the bundle.
    files = {"npm_lock": str(NPM_LOCKFILE), **{f"page/{n}": str(PAGE_DIR / n) for n in PAGE_FILES}}
    web_step = StepSpec(
        name=f"web[{variant}]",
        kind="web",
        params=params,
        inputs={"model": f"tfjs/{variant}", "data": DATA},
        files=files,
        outputs=(OutputSpec(role="bundle", artifact=f"web/{variant}", path=f"web_{variant}",
                            publish=f"web/{variant}", format=NAME, variant=variant),),  # fmt: skip
    )
    # The bundle's TF.js model, kept in the cache only: when tfjs is built too, its published
    # step of the same name is the one the resolver keeps.
    tfjs = [replace(s, outputs=tuple(replace(o, publish=None, format=None) for o in s.outputs))
            for s in TFJS.plan(ctx, variant)]  # fmt: skip
    return [*tfjs, web_step]


def runtime_params(cfg: DictConfig, purpose: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Verification reads the required backends, Node.js and Chromium; the bundle (and so
    TF.js) is an input already. No benchmark of its own: the tfjs rows time TF.js."""
    if purpose != "verify":
        return {}, {}
    backends = _backends(cfg.export.web.backends)
    return {"backends": list(backends), "node": cfg.verify.node, "chromium": cfg.verify.chromium}, {}


def _backends(value: Any) -> tuple[str, ...]:
    from ...checks import one_or_many

    return one_or_many(value, BACKENDS, "export.web.backends")


def check(cfg: DictConfig, variants: tuple[str, ...], formats: tuple[str, ...]) -> None:
    from ...runtimes.chromium import chromium_problem
    from ...runtimes.tfjs_node import node_problem

    web = cfg.export.web
    _backends(web.backends)
    if not 1 <= web.samples <= 10_000:
        raise ConfigError(f"export.web.samples must be a number of test samples from 1 to 10000, got {web.samples!r}")
    refuse_qat(cfg, NAME)
    if not cfg.verify.enabled:
        return
    if cfg.verify.samples is not None and cfg.verify.samples < web.samples:
        raise ConfigError(
            f"export.web.samples={web.samples} is more than verify.samples={cfg.verify.samples}: the page's samples "
            "are held to the reference's first rows; bundle fewer samples or verify more"
        )
    # Checked while planning, so a missing browser costs a second, not a training run.
    without = "or build web without verification (verify.enabled=false)"
    problem = node_problem(cfg.verify.node) or chromium_problem(cfg.verify.chromium, without=without)
    if problem:
        raise ConfigError(f"export.formats has web, verified in Chromium: {problem}")


def verify(path: Path, inputs: Arrays, params: Mapping[str, Any]) -> Runs:
    from .check import check_page

    return check_page(path, inputs, list(params["backends"]), node=params.get("node", "node"),
                      chromium=params.get("chromium"))  # fmt: skip


class WebStep:
    kind = "web"
    version = 1
    tools: tuple[str, ...] = ()  # TF.js (the npm lockfile) and the page's files are keyed as files

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from ...datasets.split import Split
        from .bundle import write_bundle

        p = ctx.params
        page = {role.split("/", 1)[1]: Path(path) for role, path in ctx.files.items() if role.startswith("page/")}
        info = write_bundle(
            ctx.outputs["bundle"], Path(ctx.inputs["model"]), Split(ctx.inputs["data"]), page,
            samples=p["samples"], title=p["title"], variant=p["quantization"],
            task=p.get("task", "classification"), task_outputs=p.get("task_outputs"),
        )  # fmt: skip
        return {"quantization": p["quantization"], **info}


WEB = Format(
    name=NAME,
    title="web page",
    summary="a static folder to deploy as it is: the TF.js model, TF.js, and a page that runs bundled test samples",
    steps=(WebStep(),),
    plan=plan,
    variants=TFJS.variants,
    default_variants=("uint8",),
    export_config=WebExport,
    # The same bounds as the TF.js model the page runs: TF.js's own kernels, as in Node.
    tolerances=TFJS.tolerances,
    verify=verify,
    partial_verify=True,
    benchmark=None,
    runtime_params=runtime_params,
    check=check,
)
