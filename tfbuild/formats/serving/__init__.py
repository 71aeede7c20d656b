"""The `serving` format: a folder TF Serving serves as it is, checked without a server binary.

    serving/models.config              one model, base_path MODELS_DIR/MODEL, the version pinned
    serving/batching_parameters.txt    only with export.serving.batching
    serving/request.json               a REST :predict body of the first test samples
    serving/expected_response.json     the server's answer to it
    serving/MODEL/VERSION/             the served SavedModel (not its portable twin), byte for
                                       byte, with assets.extra/tf_serving_warmup_requests

base_path: TF Serving refuses relative base paths in a config file (server_core.cc, unless a
root dir is set in code: no flag sets it), so models.config names the folder where the server
sees this one: `export.serving.models_dir`, by default `/models`, which is where
tensorflow/serving's Docker image looks. Run in the folder:

    docker run -p 8501:8501 -v "$PWD:/models" tensorflow/serving --model_config_file=/models/models.config

A server installed locally gets the same folder with `export.serving.models_dir=/abs/path/to/serving`,
or ignores the config file: `tensorflow_model_server --rest_api_port=8501 --model_name=MODEL
--model_base_path=$PWD/MODEL`.

Verification (verify.py) reads the config files with TF Serving's protos, loads the
version with the serve tag in a TF1 session, checks the Predict signature, replays every
warmup record and request.json; the warmup and request rows are the first test samples, so
they are compared with the reference's first rows (partial_verify). No benchmark: the
SavedModel row already times TensorFlow the way the server runs it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Mapping, Optional

from ...errors import ConfigError, did_you_mean
from ...plan import OutputSpec, StepSpec
from ..base import DATA, SAVED_MODEL, Format, PlanContext
from .bundle import MAX_WARMUP_RECORDS, BundleInvalid, safe_name

if TYPE_CHECKING:  # types only: planning passes a DictConfig; the no-op shortcut imports no OmegaConf
    from omegaconf import DictConfig

__all__ = ["SERVING", "BundleInvalid", "ServingBatching", "ServingExport", "ServingStep"]
ARTIFACT = "serving"
NAMES = "letters, digits, '_', '.', '-' (not '.' or '..')"


@dataclass
class ServingBatching:
    """TF Serving's request batching (served with --enable_batching); every field left null
    keeps the server's default."""

    # Largest batch the server forms from queued requests.
    max_batch_size: Optional[int] = None
    # Microseconds a request may wait for others to fill its batch (0: no wait).
    batch_timeout_micros: Optional[int] = None
    # Threads that run batches (the server's default: one per core).
    num_batch_threads: Optional[int] = None
    # Batches that may wait in the queue before requests are refused.
    max_enqueued_batches: Optional[int] = None
    # Sizes batches are padded up to (increasing, the last equal to max_batch_size): fewer
    # shapes to compile and warm up.
    allowed_batch_sizes: Optional[List[int]] = None
    # Pad inputs of different lengths to one length when they share a batch.
    pad_variable_length_inputs: Optional[bool] = None


@dataclass
class ServingExport:
    # The model's name in the server's URL (/v1/models/NAME) and its folder; null: the
    # recipe's name. Letters, digits, '_', '.', '-'.
    model_name: Optional[str] = None
    # The version folder the server serves (MODEL/VERSION/): an integer >= 1.
    version: int = 1
    # Test samples written as warmup requests, replayed by the server when it loads the
    # model so the first real request is not slow. 0: none; at most 1000; capped by the test split.
    warmup_samples: int = 10
    # Test samples in request.json (and answers in expected_response.json); capped by the test split.
    samples: int = 3
    # Where the server sees the serving/ folder (base_path is MODELS_DIR/MODEL): /models is
    # where tensorflow/serving's Docker image looks. An absolute path or a URI.
    models_dir: str = "/models"
    # null: no batching. A mapping (even {}) writes batching_parameters.txt.
    batching: Optional[ServingBatching] = None


def export_settings(cfg: DictConfig) -> ServingExport:
    """export.serving as the dataclass (defaults where the config says nothing)."""
    from omegaconf import OmegaConf

    node = OmegaConf.select(cfg, "export.serving")
    raw: dict[str, Any] = {} if node is None else dict(OmegaConf.to_container(node, resolve=True))  # type: ignore[arg-type]
    _refuse_unknown(raw, ServingExport, "export.serving")
    batching = raw.pop("batching", None)
    if batching is not None:
        if not isinstance(batching, Mapping):
            raise ConfigError(f"export.serving.batching must be null or a mapping of batching settings, got {batching!r}")
        _refuse_unknown(batching, ServingBatching, "export.serving.batching")
        batching = ServingBatching(**batching)
    return ServingExport(**raw, batching=batching)


def _refuse_unknown(raw: Mapping[str, Any], schema: type, key: str) -> None:
    known = [f.name for f in fields(schema)]
    for name in raw:
        if name not in known:
            raise ConfigError(f"{key}.{name} is not a setting (settings: {', '.join(known)}){did_you_mean(name, known)}")


def check(cfg: DictConfig, variants: tuple[str, ...], formats: tuple[str, ...]) -> None:
    """export.serving's values, each refused with its key and what is allowed."""
    settings = export_settings(cfg)
    if settings.model_name is not None and not (isinstance(settings.model_name, str) and safe_name(settings.model_name)):
        raise ConfigError(f"export.serving.model_name: {settings.model_name!r} is not a folder name TF Serving can serve: use {NAMES}")
    _check_int("export.serving.version", settings.version, 1, 2**63 - 1, "TF Serving's version folders are positive integers")
    _check_int("export.serving.warmup_samples", settings.warmup_samples, 0, MAX_WARMUP_RECORDS,
               f"0 writes none; the server reads at most {MAX_WARMUP_RECORDS} records")  # fmt: skip
    _check_int("export.serving.samples", settings.samples, 1, 10_000, "request.json holds at least one test sample")
    root = settings.models_dir
    if not isinstance(root, str) or not (root.startswith("/") or "://" in root) or root.rstrip("/") == "":
        raise ConfigError(f"export.serving.models_dir must be an absolute path or a URI other than '/' (where the server sees serving/), got {root!r}")
    if settings.batching is not None:
        _check_batching(settings.batching)


def _check_int(key: str, value: Any, low: int, high: int, why: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{key} must be an integer from {low} to {high} ({why}), got {value!r}")


def _check_batching(batching: ServingBatching) -> None:
    from .batching import batching_message, batching_problem

    for name, value in asdict(batching).items():
        if name == "allowed_batch_sizes":
            ok = value is None or (isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
        elif name == "pad_variable_length_inputs":
            ok = value is None or isinstance(value, bool)
        else:
            ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            raise ConfigError(f"export.serving.batching.{name} has the wrong type: {value!r}")
    problem = batching_problem(batching_message(asdict(batching)))
    if problem:
        raise ConfigError(f"export.serving.batching.{problem}")


def step_params(settings: ServingExport, model_name: str) -> dict[str, Any]:
    batching = None
    if settings.batching is not None:  # unset fields are not written: the server's defaults
        batching = {k: v for k, v in asdict(settings.batching).items() if v is not None}
    return {
        "model_name": model_name, "version": settings.version, "warmup_samples": settings.warmup_samples,
        "samples": settings.samples, "models_dir": settings.models_dir, "batching": batching,
    }  # fmt: skip


def plan(context: PlanContext, variant: str | None) -> list[StepSpec]:
    settings = export_settings(context.cfg)
    name = settings.model_name if settings.model_name is not None else context.name
    if not safe_name(name):
        raise ConfigError(
            f"export.serving.model_name: its default, the recipe's name {name!r}, is not a folder name "
            f"TF Serving can serve: set export.serving.model_name ({NAMES})"
        )
    # The served SavedModel, mixed precision or XLA included: what the server would load.
    return [
        StepSpec(
            name=ARTIFACT,
            kind="serving",
            params=step_params(settings, name),
            inputs={"saved_model": SAVED_MODEL, "data": DATA},
            outputs=(OutputSpec(role="serving", artifact=ARTIFACT, path="serving", publish="serving", format="serving"),),
        )
    ]


class ServingStep:
    kind = "serving"
    version = 1
    tools = ("tensorflow", "tensorflow-serving-api")

    def run(self, ctx: Any) -> dict[str, Any]:
        from .bundle import build_bundle

        return build_bundle(ctx.inputs["saved_model"], ctx.inputs["data"], ctx.outputs["serving"], ctx.params)


def verify(path: Path, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    from .verify import verify_bundle

    return verify_bundle(path, inputs, params)


def runtime_params(cfg: DictConfig, purpose: str) -> tuple[dict[str, Any], dict[str, str]]:
    from ...checks import needs_portable
    from ...schema_checks import plain

    if purpose == "verify" and needs_portable(cfg):
        # The bundle serves the mixed-precision or XLA model and the reference comes from its
        # float32, XLA-free twin: the bundle is held to what the served SavedModel is held to.
        return {"tolerance": plain(cfg.verify.tolerances.saved_model)}, {}
    return {}, {}


SERVING = Format(
    name="serving",
    title="TF Serving",
    summary="a TF Serving model folder: the SavedModel with warmup requests, models.config, a REST request and its answer",
    steps=(ServingStep(),),
    plan=plan,
    export_config=ServingExport,
    # The same SavedModel, run the same way: anything but rounding is a broken bundle.
    tolerances={"": {"max_abs_diff": 1e-5, "min_top1_agreement": 0.99}},
    verify=verify,
    partial_verify=True,
    runtime_params=runtime_params,
    check=check,
    tools=("tensorflow", "tensorflow-serving-api"),
)
