"""What a format plug-in declares: everything tfbuild knows about one kind of artifact.

The engine (resolver, verify and benchmark steps, report, gates, config schema, CLI help)
never names a format: it reads `formats.FORMATS`. A format module builds one `Format`:

- its config: `variants` (chosen by `export.NAME.quantization`, else the target's
  `target.NAME_quantization`, else `default_variants`), the dataclass of `export.NAME`,
  the default tolerances under `verify.tolerances.NAME` (gates.NAME comes for free);
- its steps: the step kinds it adds to the step registry, and `plan`, which returns the steps
  that build one variant (the last one's output, with `format` and `variant` set, is the
  artifact users get);
- its runtimes: `verify` runs the artifact and returns outputs per runtime label, for the
  verify step to hold to the reference; `benchmark` times it (optional);
- `runtime_params` (what those two read from the config, as step params and keyed files),
  `check` (cross-field rules, raising ConfigError), `settings` (more keys that only mean
  something while the format is built, refused otherwise).

Format modules import TensorFlow, NumPy and runtimes inside functions only: importing the
registry must stay cheap enough for a fully cached build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:  # only for types: the no-op shortcut must not import OmegaConf
    from omegaconf import DictConfig


from ..artifacts import DATA, PORTABLE, REFERENCE, SAVED_MODEL
from ..plan import StepSpec

Arrays = dict[str, Any]  # input or output name -> array [N, ...]
Runs = dict[str, Arrays]  # runtime label (e.g. "TF.js 4.22.0 wasm") -> outputs
Scorer = Callable[[Arrays], dict[str, Any]]  # outputs -> task metrics on the test targets

__all__ = ["DATA", "PORTABLE", "REFERENCE", "SAVED_MODEL", "Format", "PlanContext"]


@dataclass(frozen=True)
class PlanContext:
    cfg: DictConfig
    # The SavedModel artifact exports convert from: SAVED_MODEL, or PORTABLE (a float32,
    # XLA-free twin) when the served one uses mixed precision or XLA.
    source: str
    variants: Mapping[str, tuple[str, ...]]  # every built format -> its variants ( () if none)
    name: str  # the recipe's name (else the model's): a default for names users see


def no_runtime_params(cfg: DictConfig, purpose: str) -> tuple[dict[str, Any], dict[str, str]]:
    return {}, {}


def no_checks(cfg: DictConfig, variants: tuple[str, ...], formats: tuple[str, ...]) -> None:
    pass


@dataclass(frozen=True)
class Format:
    name: str  # config key (export.NAME, verify.tolerances.NAME, gates.NAME) and run folder
    title: str  # how people name it: "TFLite", "TF.js"
    summary: str  # one line for --help and the README's table
    steps: tuple[Any, ...]  # StepKind instances this format adds to the step registry
    # (context, variant or None) -> the steps that build it, the artifact's producer last.
    # None for saved_model, which the resolver always plans (everything converts from it).
    plan: Callable[[PlanContext, str | None], list[StepSpec]] | None = None
    variants: tuple[str, ...] = ()  # () : one artifact, no variant
    default_variants: tuple[str, ...] = ()
    export_config: type | None = None  # dataclass of export.NAME; with variants it has `quantization: Any = None`
    # variant -> Tolerance bounds (max_abs_diff, mean_abs_diff, max_rel_diff, min_cosine,
    # min_top1_agreement); a format without variants uses the key "".
    tolerances: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # (artifact path, test inputs, verify step params) -> outputs per runtime label. None: not verified.
    verify: Callable[[Path, Arrays, Mapping[str, Any]], Runs] | None = None
    # True when runtimes answer for the first samples only (a page's bundled samples, warmup
    # records): they are compared with the reference's first rows.
    partial_verify: bool = False
    # (path, test inputs, scorer, benchmark step params, timing protocol) -> figures per
    # runtime label (runtimes/timing.py `figures`). None: no benchmark of its own.
    benchmark: Callable[[Path, Arrays, Scorer, Mapping[str, Any], Any], dict[str, Any]] | None = None
    # (cfg, "verify" | "benchmark") -> (params, files) the verify/benchmark step adds for it.
    runtime_params: Callable[[DictConfig, str], tuple[dict[str, Any], dict[str, str]]] = no_runtime_params
    # (cfg, this format's variants, every built format) -> None, or raise ConfigError.
    check: Callable[[DictConfig, tuple[str, ...], tuple[str, ...]], None] = no_checks
    settings: tuple[str, ...] = ()  # e.g. "verify.browser_backends"
    tools: tuple[str, ...] = ()  # distributions its verify/benchmark runtimes use (keyed)
    # (verify/benchmark step params) -> the name of a runtime the step keeps running in its
    # process for the next ones (TF.js's one Chromium a process), or None. With jobs > 1 the
    # steps that name the same one are built by the same worker process, so it starts once.
    shared_runtime: Callable[[Mapping[str, Any]], str | None] | None = None

    def artifact(self, variant: str | None) -> str:
        """The plan-wide artifact name, e.g. "tflite/int8"."""
        return self.name if variant is None else f"{self.name}/{variant}"
