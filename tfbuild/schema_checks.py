"""Checks that walk the whole composed config against the dataclass schema.

The schema types every key, but three things get past Hydra's composition: keys added with
`+`/`++` (Hydra opens the struct flag to add them), numbers that type-check yet make no sense
(NaN, infinity, 10**20 epochs), and interpolations, which are only resolved when read (in the
middle of a build). Each check here covers every key at once, so a new key in the schema is
covered without new code.
"""

from __future__ import annotations

import dataclasses
import enum
import fnmatch
import functools
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError, did_you_mean
from .schema import current_schema


@dataclass(frozen=True)
class Origin:
    """Where the values came from, to name the file or the command line in an error."""

    command_line: tuple[str, ...] = ()  # the task overrides, as typed (`key=value`)
    recipe_file: Path | None = None
    recipe: DictConfig | None = None  # the recipe file's own content, unresolved


FREE_FORM = object()  # a Dict[str, Any] or Any field: any keys, any values

# The widest integer any consumer takes: NumPy and TensorFlow hold them as int64.
INT64 = (-(2**63), 2**63 - 1)
# [min, max] of integer keys (fnmatch patterns). The upper bounds catch values that can only be
# typos (an extra digit or ten), while staying far above any real use on the hardware tfbuild
# targets.
INT_BOUNDS: dict[str, tuple[int, int]] = {
    # A small model on digits takes ~0.1 s an epoch; 100,000 epochs is days of training.
    "train.epochs": (1, 100_000),
    "optimize.epochs": (1, 100_000),
    # 2**20 samples a step is beyond any accelerator's memory for the models tfbuild builds.
    "train.batch_size": (1, 2**20),
    "benchmark.batch_size": (1, 2**20),
    # NumPy's RandomState and tf.keras.utils.set_random_seed take seeds in [0, 2**32).
    "train.seed": (0, 2**32 - 1),
    "data.seed": (0, 2**32 - 1),
    # Calibration runs the float model once per sample; 100-1,000 is typical, 1e6 is hours.
    "data.calibration_samples": (0, 1_000_000),
    # Fewer than 10 samples cannot fill three splits; above 2**31 NumPy indexing is int64 anyway.
    "data.limit": (10, 2**31 - 1),
    "verify.samples": (1, 2**31 - 1),
    # TFLite's weight clustering keeps at most 2**16 centroids a kernel (and 2 is the least).
    "optimize.clusters": (2, 2**16),
    # Devices and processes started on one machine: 1,024 GPUs, 256 logical CPUs and 64
    # worker processes are beyond any single host.
    "target.gpus": (0, 1024),
    "target.cpu_devices": (1, 256),
    "target.workers": (1, 64),
    # Calls timed per artifact and runtime: a million calls is minutes even at 0.1 ms a call.
    "benchmark.warmup": (0, 1_000_000),
    "benchmark.min_runs": (1, 1_000_000),
    # Rounds split min_runs and min_seconds; each is at least one call of each kind.
    "benchmark.rounds": (1, 1000),
    "benchmark.threads": (1, 1024),
    "train.threads": (1, 1024),
    # Steps built at once: a worker process each, about 0.5 GB with TensorFlow loaded.
    "jobs": (1, 1024),
    # 1 PiB: no model file is near it.
    "gates*.max_bytes": (1, 2**50),
    # A day: a remote that has not answered in one is down. 1 PiB: no entry is near it.
    "cache.remote_timeout_s": (1, 86_400),
    "cache.remote_max_entry_bytes": (1, 2**50),
}
# Upper bounds of float keys that have one (all floats must be finite).
FLOAT_MAX: dict[str, float] = {
    # The timed phase runs at least this long per artifact and backend: an hour is a mistake.
    "benchmark.min_seconds": 3600.0,
}


def plain(node: Any) -> Any:
    """A config value as plain JSON-able data: containers resolved, enums as their values
    (what step params and checks read)."""
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return node.value if isinstance(node, enum.Enum) else node


def resolved_values(cfg: DictConfig, origin: Origin = Origin()) -> dict[str, Any]:
    """Every interpolation resolved once, on a copy, so that a broken one fails here (naming
    the key and where it came from) instead of in the middle of a build."""
    try:
        values = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or ""
        raw = _raw_value(key, origin)
        message = " ".join(str(getattr(exc, "msg", None) or exc).split())
        message = message.split(" full_key:")[0]
        written = f"'{raw}' " if raw is not None else ""
        raise ConfigError(f"{_where(key, origin)}{key}: cannot resolve {written}({message})") from None
    assert isinstance(values, dict)
    return values


def _raw_value(key: str, origin: Origin) -> str | None:
    for override in origin.command_line:
        name, _, value = override.partition("=")
        if name.lstrip("+~") == key:
            return value
    written = recipe_value(origin.recipe, key)
    return None if written is None else str(written)


def recipe_value(recipe: DictConfig | None, key: str) -> Any:
    """What the recipe file itself wrote at a dotted key (unresolved), or None."""
    if recipe is None:
        return None
    node: Any = OmegaConf.to_container(recipe, resolve=False)
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _where(key: str, origin: Origin) -> str:
    """'FILE: ' when the recipe file wrote the key (and the command line did not)."""
    on_command_line = any(o.partition("=")[0].lstrip("+~") == key for o in origin.command_line)
    if origin.recipe_file is not None and not on_command_line and recipe_value(origin.recipe, key) is not None:
        return f"{origin.recipe_file}: "
    return ""


def check_known_keys(values: dict[str, Any]) -> None:
    """Every key must be one the schema declares, except inside free-form maps (model.params):
    a key added with +key=... or ++key=... is otherwise silently ignored."""
    for path, schema_type, _ in _walk(values, current_schema(), ""):
        if schema_type is None:
            raise ConfigError(unknown_key(path))


def unknown_key(path: str) -> str:
    """'KEY: no such key in SECTION (keys: ...) (did you mean ...?)'."""
    where, _, bad = path.rpartition(".")
    allowed = field_names(schema_type_at(where))
    hint = did_you_mean(bad, allowed)
    if not where and not hint and bad in field_names(schema_type_at("export")):  # a format's settings are under export.
        hint = f" (did you mean export.{path}?)"
    return f"{path}: no such key in {where or 'the config'} (keys: {', '.join(allowed)}){hint}"


def check_no_missing(values: dict[str, Any]) -> None:
    """Keys left '???' (mandatory in the schema, set by nobody)."""
    missing = [path for path, value in _leaves(values, "") if value == "???"]
    if missing:
        raise ConfigError(f"{', '.join(sorted(missing))} must be set")


def check_numbers(values: dict[str, Any]) -> None:
    """Every float finite (a NaN bound disables its check: every comparison with NaN is
    false), every integer in the range its consumer takes."""
    for path, value in _leaves(values, ""):
        if isinstance(value, bool):
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ConfigError(f"{path} must be a finite number, got {value}")
            maximum = _bound(FLOAT_MAX, path)
            if maximum is not None and value > maximum:
                raise ConfigError(f"{path} must be at most {maximum:g}, got {value:g}")
        elif isinstance(value, int):
            low, high = _bound(INT_BOUNDS, path) or INT64
            if value < low:
                raise ConfigError(f"{path} must be at least {low}, got {value}")
            if value > high:
                raise ConfigError(f"{path} must be at most {high}, got {value}")


def check_literal_types(origin: Origin) -> None:
    """OmegaConf turns `1`, `yes` or `on` into true for a boolean key; a user who wrote
    `dry_run=1` or `verify.enabled: yes` may mean something else, so only true and false are
    taken (on the command line and in the recipe file)."""
    written: list[tuple[str, Any, str]] = []
    for override in _override_parser().parse_overrides(list(origin.command_line)):
        if not override.is_delete() and not override.is_sweep_override():
            written.append((override.key_or_group, override.value(), f"{override.key_or_group}={override.get_value_element_as_str()}"))
    if origin.recipe is not None:
        raw = OmegaConf.to_container(origin.recipe, resolve=False)
        assert isinstance(raw, dict)
        prefix = f"{origin.recipe_file}: " if origin.recipe_file else ""
        written += [(path, value, f"{prefix}{path}={value}") for path, value in _leaves(raw, "") if path != "defaults"]
    for key, value, as_written in written:
        # null passes here: OmegaConf refuses it for a key that is not Optional, with the key's name.
        if schema_type_at(key) is bool and not isinstance(value, (bool, type(None))) and not _is_interpolation(value):
            raise ConfigError(f"{as_written}: {key} takes true or false, got {value!r}")


@functools.lru_cache(maxsize=1)
def _override_parser() -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()  # builds Hydra's grammar: made once


def _is_interpolation(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def _bound(table: dict[str, Any], path: str) -> Any:
    return next((bound for pattern, bound in table.items() if fnmatch.fnmatchcase(path, pattern)), None)


def _walk(values: dict[str, Any], schema: Any, prefix: str) -> Iterator[tuple[str, Any, Any]]:
    """(path, schema type or None when undeclared, value) for each key, not entering free-form maps."""
    hints = _hints(schema)
    for key, value in values.items():
        path = f"{prefix}{key}"
        declared = _unwrap(hints[key]) if key in hints else None
        yield path, declared, value
        if dataclasses.is_dataclass(declared) and isinstance(value, dict):
            yield from _walk(value, declared, f"{path}.")


def _leaves(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, f"{path}[{i}]")
    else:
        yield path, node


@functools.lru_cache(maxsize=None)
def _hints(schema: type) -> dict[str, Any]:
    # typing.get_type_hints evaluates the string annotations each call: too slow for a walk of
    # every key on every build (the no-op build's budget is tens of milliseconds).
    return typing.get_type_hints(schema)


def _unwrap(hint: Any) -> Any:
    """Optional[X] -> X; Any, Dict[...] and lists -> FREE_FORM."""
    if hint is Any:
        return FREE_FORM
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else FREE_FORM
    if origin in (dict, list, tuple):
        return FREE_FORM
    return hint


def schema_type_at(path: str) -> Any:
    """The schema's type at a dotted path (a dataclass, int, an Enum, FREE_FORM), or None."""
    node: Any = current_schema()
    for part in [p for p in path.split(".") if p]:
        if node is FREE_FORM:
            return FREE_FORM
        if not dataclasses.is_dataclass(node):
            return None
        hints = _hints(node)
        if part not in hints:
            return None
        node = _unwrap(hints[part])
    return node


def field_names(schema: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else []


def keys_named(command_line: Sequence[str]) -> list[tuple[str, str]]:
    """(key, override as typed) for each command-line override that sets a key."""
    out = []
    for override in command_line:
        key, equals, _ = override.partition("=")
        if equals and not key.startswith("~"):
            out.append((key.lstrip("+"), override))
    return out
