"""Value checks on the composed config that a schema cannot express.

Hydra and the dataclass schema already reject unknown keys, wrong types and bad enum values
at compose time; schema_checks.py walks the whole config for what gets past them (keys added
with `+`, non-finite or out-of-range numbers, broken interpolations). What is left here:
"one value or a list" keys, which formats and variants are built, and cross-field rules.
Each check is a small function that raises ConfigError naming the key and what is allowed.

Which formats and variants are built (precedence: command line > recipe > target > defaults):
- formats: target.formats (what the target needs) plus export.formats (what the recipe or the
  command line asks for), so `recipe=digits target=browser` builds the recipe's TFLite and the
  browser's TF.js;
- variants: export.tflite.quantization when set (recipe or command line), else the target's
  target.tflite_quantization (the same for TF.js). A setting replaces rather than adds here,
  so that a sweep `-m export.tflite.quantization=float,int8` builds one variant per job on
  every target;
- a format's settings (export.FORMAT.*, verify.tolerances.FORMAT.*, gates.FORMAT.*, TF.js
  backends) given on the command line, or export.FORMAT.quantization written in the recipe
  file, while that format is not built are refused, saying how to add the format.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from .errors import ConfigError, did_you_mean
from .hardware import gpu_count, tpu_address
from .schema_checks import (
    Origin,
    check_known_keys,
    check_literal_types,
    check_no_missing,
    check_numbers,
    keys_named,
    recipe_value,
    resolved_values,
)
from .formats import FORMATS
from .schema import OptimizeMethod


@dataclass(frozen=True)
class Choices:
    """The "one value or a list" keys, normalized to ordered tuples without repeats."""

    formats: tuple[str, ...]
    variants: Mapping[str, tuple[str, ...]]  # every built format -> its variants (() without variants)
    force: bool | tuple[str, ...]


def check_config(cfg: DictConfig, origin: Origin = Origin()) -> Choices:
    """Every check that needs only the config; `origin` (the command line and the recipe file,
    from the CLI) lets errors name where a value was written."""
    values = resolved_values(cfg, origin)  # first: every later check reads resolved values
    check_no_missing(values)
    check_known_keys(values)
    check_literal_types(origin)
    check_numbers(values)
    _check_train(cfg)
    _check_data(cfg)
    _check_target(cfg)
    formats = _formats(cfg)
    choices = Choices(formats=formats, variants={f: _variants(cfg, f) for f in formats}, force=_force(cfg.force))
    _check_unbuilt_format_settings(cfg, choices, origin)
    _check_optimize(cfg)
    _check_verify(cfg)
    _check_benchmark(cfg)
    _check_gates(cfg)
    for fmt in formats:
        FORMATS[fmt].check(cfg, choices.variants[fmt], formats)
    return choices


def one_or_many(value: Any, allowed: Sequence[str] | type[Enum], key: str, may_be_empty: bool = False) -> tuple[str, ...]:
    values = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    names = [m.value for m in allowed] if isinstance(allowed, type) else list(allowed)
    if not values and not may_be_empty:
        raise ConfigError(f"{key} is empty; choose one or more of: {', '.join(names)}")
    out: list[str] = []
    for item in values:
        item = item.value if isinstance(item, Enum) else item
        if not isinstance(item, str) or item not in names:
            raise ConfigError(
                f"{key}: '{item}' is not one of {', '.join(names)}{did_you_mean(str(item), names)}"
            )
        if item not in out:
            out.append(item)
    return tuple(out)


def _formats(cfg: DictConfig) -> tuple[str, ...]:
    """The target's formats, then the ones export.formats adds."""
    target = one_or_many(cfg.target.formats, list(FORMATS), "target.formats", may_be_empty=True)
    asked = one_or_many(cfg.export.formats, list(FORMATS), "export.formats", may_be_empty=True)
    # In the registry's order, whatever order they were asked in: steps, run folders and
    # reports then list formats the same way in every build.
    formats = tuple(f for f in FORMATS if f in {*target, *asked})
    if not formats:
        raise ConfigError(
            f"nothing to build: export.formats and target.formats (target={cfg.target.name.value}) are both "
            f"empty; choose one or more of: {', '.join(FORMATS)}"
        )
    return formats


def _variants(cfg: DictConfig, fmt: str) -> tuple[str, ...]:
    """export.FORMAT.quantization when the recipe or command line sets it, else the target's."""
    allowed = FORMATS[fmt].variants
    if not allowed:
        return ()
    asked = cfg.export[fmt].quantization
    if asked is not None:
        return one_or_many(asked, allowed, f"export.{fmt}.quantization")
    return one_or_many(cfg.target[f"{fmt}_quantization"], allowed, f"target.{fmt}_quantization")


def format_settings(fmt: str) -> tuple[str, ...]:
    """The keys that only mean something while `fmt` is built."""
    variants = (f"target.{fmt}_quantization",) if FORMATS[fmt].variants else ()
    return (f"export.{fmt}", *variants, f"verify.tolerances.{fmt}", f"gates.{fmt}", *FORMATS[fmt].settings)


def _check_unbuilt_format_settings(cfg: DictConfig, choices: Choices, origin: Origin) -> None:
    """A format's settings that would be ignored because the format is not built are refused,
    saying how to build it: any typed on the command line, and a recipe file's own
    export.FORMAT.quantization (unless the command line chose the formats or the target,
    dropping the format on purpose). conf/ and pinned recipes set every variant's tolerances
    by design, so those are not checked in files."""
    # The SavedModel is always built (everything converts from it): its settings always apply.
    unbuilt = [fmt for fmt in FORMATS if fmt not in choices.formats and fmt != "saved_model"]
    for key, typed in keys_named(origin.command_line):
        for fmt in unbuilt:
            if any(key == p or key.startswith(f"{p}.") for p in format_settings(fmt)):
                raise ConfigError(_not_built(cfg, typed, fmt, choices.formats))
    typed_keys = {key for key, _ in keys_named(origin.command_line)}
    if origin.recipe is None or typed_keys & {"export.formats", "target.formats", "target"}:
        return
    for fmt in (f for f in unbuilt if FORMATS[f].variants):
        written = recipe_value(origin.recipe, f"export.{fmt}.quantization")
        if written is not None:
            setting = f"{origin.recipe_file}: export.{fmt}.quantization={_listed(written)}"
            raise ConfigError(_not_built(cfg, setting, fmt, choices.formats))


def _not_built(cfg: DictConfig, setting: str, fmt: str, formats: tuple[str, ...]) -> str:
    return (
        f"{setting} is set, but {fmt} is not built (formats: {', '.join(formats)}, from "
        f"target={cfg.target.name.value} and export.formats): add export.formats=[{','.join([*formats, fmt])}]"
    )


def _listed(value: Any) -> str:
    if isinstance(value, (list, ListConfig)):
        return "[" + ",".join(str(v.value if isinstance(v, Enum) else v) for v in value) + "]"
    return str(value)


def _at_least(cfg: DictConfig, key: str, minimum: float) -> None:
    value = OmegaConf.select(cfg, key)
    if value is not None and value < minimum:
        raise ConfigError(f"{key} must be at least {minimum}, got {value}")


# Integer ranges (epochs, seeds, sample counts...) are in schema_checks.INT_BOUNDS.
def _check_train(cfg: DictConfig) -> None:
    if cfg.train.learning_rate <= 0:
        raise ConfigError(f"train.learning_rate must be greater than 0, got {cfg.train.learning_rate}")


def _check_data(cfg: DictConfig) -> None:
    data = cfg.data
    for key in ("validation_fraction", "test_fraction"):
        if not 0 < data[key] < 1:
            raise ConfigError(f"data.{key} must be between 0 and 1 (exclusive), got {data[key]}")
    if data.validation_fraction + data.test_fraction >= 0.9:
        raise ConfigError(
            "data.validation_fraction + data.test_fraction must leave at least 10% for "
            f"training, got {data.validation_fraction} + {data.test_fraction}"
        )


def effective_precision(cfg: DictConfig) -> str:
    """precision=... when the recipe chose one, else the target profile's."""
    policy = cfg.precision.policy if cfg.precision.policy is not None else cfg.target.precision
    return policy.value


def needs_portable(cfg: DictConfig) -> bool:
    """True when the served SavedModel (mixed precision, XLA) is not what exports convert:
    they (and the reference) then come from a float32, XLA-free twin. precision is how
    tfbuild trains; a model brought as a file is exported as it is."""
    trained_mixed = effective_precision(cfg) != "float32" and cfg.model.source.value != "file"
    return trained_mixed or bool(cfg.target.jit_compile)


def _check_target(cfg: DictConfig) -> None:
    """The target's strategy against its settings and this machine; no TensorFlow needed."""
    target = cfg.target
    strategy = target.strategy.value
    asked = f"target={target.name.value} (strategy {strategy})"
    if target.cpu_devices is not None and strategy != "mirrored":
        raise ConfigError(f"target.cpu_devices applies to strategy mirrored, not {strategy} ({asked})")
    if strategy == "multi_worker" and "TF_CONFIG" not in os.environ:
        if target.workers is None or target.workers < 2:
            raise ConfigError(
                f"{asked} needs target.workers=N (2 or more) to start N workers on this machine, "
                "or TF_CONFIG describing the cluster this process belongs to"
            )
    elif target.workers is not None:
        raise ConfigError(f"target.workers applies to strategy multi_worker, not {strategy} ({asked})")
    needs_gpus = strategy in ("one_device", "mirrored") and target.cpu_devices is None
    if needs_gpus:
        _at_least(cfg, "target.gpus", 1)
        found, how = gpu_count()
        if found < target.gpus:
            simulate = (
                "target=multi_gpu target.cpu_devices=2 to run MirroredStrategy over logical CPU devices"
                if strategy == "mirrored" else "target=cpu"
            )
            raise ConfigError(
                f"{asked} needs {target.gpus} GPU{'s' if target.gpus > 1 else ''}, found {found} ({how}): "
                f"run it on a machine with them, or use {simulate}"
            )
    if strategy == "tpu":
        address, how = tpu_address(target.tpu)
        if address is None:
            raise ConfigError(
                f"{asked} needs a reachable TPU, found none ({how}): set target.tpu=NAME_OR_GRPC_ADDRESS "
                "or TPU_NAME, or use target=cpu (or target=multi_gpu target.cpu_devices=2)"
            )


def _check_optimize(cfg: DictConfig) -> None:
    """The method's own settings; what a format cannot take from it is the format's check."""
    optimize = cfg.optimize
    if optimize.method == OptimizeMethod.none:
        return
    if optimize.learning_rate <= 0:
        raise ConfigError(f"optimize.learning_rate must be greater than 0, got {optimize.learning_rate}")
    if optimize.method == OptimizeMethod.prune and not 0 < optimize.sparsity < 1:
        raise ConfigError(f"optimize.sparsity must be between 0 and 1 (exclusive), got {optimize.sparsity}")
    if optimize.method == OptimizeMethod.qat:
        if effective_precision(cfg) != "float32" or cfg.target.jit_compile:
            raise ConfigError(
                "optimize=qat fine-tunes in float32 without XLA: use precision=float32 "
                "target.jit_compile=false, or optimize=none|prune|cluster"
            )


def _check_verify(cfg: DictConfig) -> None:
    tolerances = cfg.verify.tolerances
    nodes = []
    for name, node in tolerances.items():
        variants = FORMATS[name].variants if name in FORMATS else ()
        nodes += [(f"verify.tolerances.{name}.{v}", node[v]) for v in variants] or [(f"verify.tolerances.{name}", node)]
    for key, tolerance in nodes:
        for bound in ("max_abs_diff", "mean_abs_diff", "max_rel_diff"):
            if tolerance[bound] is not None and tolerance[bound] < 0:
                raise ConfigError(f"{key}.{bound} must be 0 or more (or null), got {tolerance[bound]}")
        top1 = tolerance.min_top1_agreement
        if top1 is not None and not 0 <= top1 <= 1:
            raise ConfigError(f"{key}.min_top1_agreement must be between 0 and 1 (or null), got {top1}")
        cosine = tolerance.min_cosine
        if cosine is not None and not -1 <= cosine <= 1:
            raise ConfigError(f"{key}.min_cosine must be between -1 and 1 (or null), got {cosine}")


def _check_benchmark(cfg: DictConfig) -> None:
    _at_least(cfg, "benchmark.min_seconds", 0)


# Gate limits that need a benchmark's figures (size is known without one).
MEASURED_LIMITS = ("min_accuracy", "max_accuracy_drop", "max_mae", "max_mae_increase", "max_p95_ms")


def _check_gates(cfg: DictConfig) -> None:
    for path, gate in _gate_nodes(cfg.gates):
        for limit in ("min_accuracy", "max_accuracy_drop"):
            if gate[limit] is not None and not 0 <= gate[limit] <= 1:
                raise ConfigError(f"{path}.{limit} must be between 0 and 1 (or null), got {gate[limit]}")
        for limit in ("max_mae", "max_mae_increase"):
            if gate[limit] is not None and gate[limit] < 0:
                raise ConfigError(f"{path}.{limit} must be 0 or more (or null), got {gate[limit]}")
        if gate.max_p95_ms is not None and gate.max_p95_ms <= 0:  # max_bytes: schema_checks.INT_BOUNDS
            raise ConfigError(f"{path}.max_p95_ms must be greater than 0 (or null), got {gate.max_p95_ms}")
        measured = [limit for limit in MEASURED_LIMITS if gate[limit] is not None]
        if measured and not cfg.benchmark.enabled:
            raise ConfigError(f"{path}.{measured[0]} needs the benchmark's figures: set benchmark.enabled=true")
    from .gates import gates_not_applicable

    tasks = {"task": cfg.task.name.value, **{name: task.value for name, task in cfg.task.outputs.items()}}
    gates = OmegaConf.to_container(cfg.gates, resolve=True, enum_to_str=True)
    problems = gates_not_applicable(gates, tasks, labelled=cfg.data.source.value != "none")
    if problems:
        raise ConfigError(problems[0])


def _gate_nodes(gates: DictConfig) -> list[tuple[str, DictConfig]]:
    """(key path, node) for the top-level gate, each format's and each variant's."""
    nodes = [("gates", gates)]
    for fmt in FORMATS:
        nodes.append((f"gates.{fmt}", gates[fmt]))
        nodes += [(f"gates.{fmt}.{v}", node) for v, node in gates[fmt].items() if isinstance(node, DictConfig)]
    return nodes


def check_force_names(force: bool | tuple[str, ...], names: list[str], kinds: list[str]) -> None:
    """Each name in force=[...] must be a step or a kind of step of this plan: a typo would
    otherwise force nothing, silently."""
    if isinstance(force, bool):
        return
    kinds = list(dict.fromkeys(kinds))
    for name in force:
        if name not in names and name not in kinds:
            raise ConfigError(
                f"force: '{name}' is not a step or kind of this plan (steps: {', '.join(names)}; "
                f"kinds: {', '.join(kinds)}){did_you_mean(name, [*kinds, *names])}"
            )


def _force(value: Any) -> bool | tuple[str, ...]:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, ListConfig)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"force must be true, false or a list of step names or kinds, got {value!r}")


# SQLite's unix VFS refuses database paths over 512 bytes (MAX_PATHNAME), and the cache keeps
# state.db (and its -journal) at its root: 400 leaves room for those names and for the entry
# layout below the root (entries/ab/<64 hex>/out/..., about 110 more) within Linux's 4,096.
CACHE_DIR_MAX_BYTES = 400
# The longest name one folder may have on Linux file systems (ext4, xfs, btrfs, tmpfs).
NAME_MAX_BYTES = 255


def check_cache_remote(url: str | None) -> None:
    """cache.remote: a URL an installed fsspec back-end opens, with no credentials in it."""
    if url is None:
        return
    from .remote_cache import check_remote_url

    try:
        check_remote_url(url)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def check_cache_location(path: str, run_dir: Path, protected: Sequence[Path]) -> Path:
    """cache.dir as an absolute folder, refused where a cache must not be: the current folder
    (an empty value), a path the OS or SQLite cannot open, a run folder (it would be deleted or
    published with the run), or the project's recipes/ and conf/ (a recipe or config file would
    sit among cache entries). Reads no file; creates nothing."""
    if not path.strip():
        raise ConfigError("cache.dir is empty: that would make the current folder the cache; give a folder (default: outputs/cache)")
    folder = Path(os.path.normpath(Path(path).expanduser().absolute()))
    if len(str(folder).encode()) > CACHE_DIR_MAX_BYTES:
        raise ConfigError(
            f"cache.dir: the path is {len(str(folder).encode())} bytes long (absolute); the cache's "
            f"database cannot open paths that long: use one of at most {CACHE_DIR_MAX_BYTES} bytes"
        )
    for part in folder.parts:
        if len(part.encode()) > NAME_MAX_BYTES:
            raise ConfigError(
                f"cache.dir: the folder name '{part[:40]}...' is {len(part.encode())} bytes long; "
                f"file systems allow {NAME_MAX_BYTES}"
            )
    run_dir = Path(os.path.normpath(run_dir.absolute()))
    inside_run = folder == run_dir or run_dir in folder.parents
    run_folder = next((p for p in [folder, *folder.parents] if (p / ".hydra").is_dir()), None)
    if inside_run or run_folder is not None:
        raise ConfigError(
            f"cache.dir: '{path}' is inside the run folder {run_folder or run_dir}; the cache must outlive "
            "runs: use a folder of its own (default: outputs/cache)"
        )
    for place in protected:
        place = Path(os.path.normpath(place.absolute()))
        if folder == place or place in folder.parents:
            raise ConfigError(f"cache.dir: '{path}' is inside {place}, the project's own files; use a folder of its own (default: outputs/cache)")
    return folder
