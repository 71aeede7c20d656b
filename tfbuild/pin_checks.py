"""Checking a pinned recipe: before planning (the file), before building (values, plan,
seal, tools, input files, data split), after building (every artifact's digest).

`tfbuild recipe=pinned/NAME-VERSION` refuses, before any work: a pin without its lock, an
edited pin (keys added or removed, values, defaults, lock or seal changed), a command line
or conf/ that changes a pinned value, other tool versions (unless allow_tool_drift=true), a
plan that does not match the lock's steps and artifacts, and changed input files or a data
split that would differ. After building, every artifact must have its locked digest.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError
from .keys import explain_change, flatten
from .pins import (PINNED, SEAL, UNPINNED, digest, pinned_values, quoted, section_digests, seal_of, short,
                   tool_versions)
from .plan import Plan
from .recipes import RecipeIndex, load_recipe_file

# External files that stand for tool versions (the npm lockfile pins TF.js): with
# allow_tool_drift=true a change is reported like a tool's, not refused.
TOOL_FILES = ("npm_lock",)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ALLOW_DRIFT = "add allow_tool_drift=true to build anyway and report the differences"
_EDITED = "a pin is not edited: make a new one with pin=VERSION"


@dataclass(frozen=True)
class Pin:
    """A pinned recipe file whose lock was checked for damage and edited values (`read_pin`);
    its seal is checked by `check_pinned`, once the plan can name what was removed."""

    file: Path
    name: str  # how messages show the file
    document: dict[str, Any]  # the file as written: defaults, pinned values, lock
    lock: dict[str, Any]


# -- reading a pin: before planning ---------------------------------------------------------


def read_pin(cfg: DictConfig, recipe: str | None, recipes: RecipeIndex) -> Pin | None:
    """The checked pin of a pinned recipe; None for a recipe that is not one. Refuses a pin
    whose lock is missing, damaged or edited, and a lock set anywhere but in its pin file.
    The file's parse is shared with Hydra's (see recipes.load_recipe_file)."""
    file = recipes.files.get(recipe or "")
    node = load_recipe_file(file) if file is not None else None
    if not (recipe or "").startswith(f"{PINNED}/") and not (isinstance(node, DictConfig) and "lock" in node):
        if cfg.lock is not None:
            raise ConfigError("lock: written by pin= into recipes/pinned/ and read only from there; do not set it")
        return None
    assert recipe is not None and node is not None, "Hydra composed a recipe it found in the index"
    name = _shown(recipes.files[recipe])
    document = _plain(node)
    lock = document.get("lock") if isinstance(document, dict) else None
    if not isinstance(lock, dict) or not lock:
        raise ConfigError(f"{name}: a pinned recipe needs its lock (it was removed or damaged); re-pin with pin=VERSION")
    assert isinstance(document, dict)
    if SEAL not in lock:
        raise ConfigError(f"{name}: this pin has no seal (pins made before tfbuild sealed them cannot be checked); "
                          f"re-pin it: {_repin(lock)}")  # fmt: skip
    _check_keys(document, lock, {str(k) for k in cfg.keys()} - set(UNPINNED), name)
    _check_lock_shape(lock, name)
    _check_unedited(document, lock, name)
    if _plain(cfg.lock) != lock:
        raise ConfigError(f"{name}: the lock was overridden (command line or conf/); a pinned build uses its pin's lock")
    return Pin(recipes.files[recipe], name, document, lock)


def _check_keys(document: Mapping[Any, Any], lock: Mapping[str, Any], values: set[str], name: str) -> None:
    """Only defaults, the pinned sections and lock: anything else (cache, force, hydra, ...) would
    change a pinned build without touching a pinned value."""
    added = sorted(str(k) for k in document if k not in ("defaults", "lock") and k not in values)
    if added:
        raise ConfigError(
            f"{name}: {quoted(added[0])} is not part of a pin (a pin holds defaults, the pinned values and lock); "
            f"give build settings on the command line; {_EDITED}"
        )
    sections = lock.get("sections")
    removed = sorted(str(k) for k in (sections if isinstance(sections, dict) else values) if k not in document)
    if "defaults" not in document:
        removed.insert(0, "defaults")
    if removed:
        raise ConfigError(f"{name}: {', '.join(quoted(r) for r in removed[:3])} removed from the pin; {_EDITED}")


def _check_lock_shape(lock: Mapping[str, Any], name: str) -> None:
    """A lock damaged by hand is refused with what is wrong, not a traceback."""
    problems = []
    for key in ("tools", "sections", "artifacts", "steps", "data", "files"):
        if not isinstance(lock.get(key), dict):
            problems.append(f"lock.{key} is missing or not a mapping")
    for key in ("defaults", SEAL):
        if not _is_sha(lock.get(key)):
            problems.append(f"lock.{key} is not a 64-hex digest")
    if isinstance(lock.get("tools"), dict) and not all(isinstance(v, str) for v in lock["tools"].values()):
        problems.append("lock.tools holds a version that is not text")
    for field in ("sections", "steps"):
        for key, value in (lock.get(field) if isinstance(lock.get(field), dict) else {}).items():
            if not _is_sha(value):
                problems.append(f"lock.{field}.{quoted(key)} is not a 64-hex digest")
    for artifact, record in (lock.get("artifacts") if isinstance(lock.get("artifacts"), dict) else {}).items():
        if not isinstance(record, dict) or not _is_sha(record.get("sha256")) or type(record.get("bytes")) is not int:
            problems.append(f"lock.artifacts.{quoted(artifact)} needs a 64-hex sha256 and bytes")
    for step, files in (lock.get("files") if isinstance(lock.get("files"), dict) else {}).items():
        if not isinstance(files, dict) or not all(_is_sha(v) for v in files.values()):
            problems.append(f"lock.files.{quoted(step)} needs a 64-hex digest per file")
    data = lock.get("data")
    if isinstance(data, dict):
        if not _is_sha(data.get("step_key")):
            problems.append("lock.data.step_key is not a 64-hex key")
        material = data.get("material")
        if not isinstance(material, dict) or not all(isinstance(material.get(k), dict) for k in ("params", "files", "tools")):
            problems.append("lock.data.material needs params, files and tools")
    if problems:
        raise ConfigError(f"{name}: the lock is damaged ({'; '.join(problems[:3])}); re-pin with pin=VERSION")


def _check_unedited(document: Mapping[str, Any], lock: Mapping[str, Any], name: str) -> None:
    """Pinned values and defaults against their digests in the lock: names what was edited.
    (The seal, checked once the plan is known, covers the lock too.)"""
    values = {k: v for k, v in document.items() if k not in ("defaults", "lock")}
    try:
        edited = sorted(k for k, d in section_digests(values).items() if lock["sections"].get(k) != d)
        defaults_edited = digest(document["defaults"]) != lock["defaults"]
        seal_of(document)
    except (TypeError, ValueError):  # keys of mixed types, values JSON cannot hold
        raise ConfigError(f"{name}: the pin holds values a pin cannot (hand-edited?); {_EDITED}") from None
    if edited:
        raise ConfigError(f"{name}: {', '.join(edited)} changed since it was pinned (its lock digest differs); {_EDITED}")
    if defaults_edited:
        raise ConfigError(f"{name}: the defaults list changed since it was pinned; {_EDITED}")


def _check_seal(pin: Pin) -> None:
    if seal_of(pin.document) != pin.lock[SEAL]:
        raise ConfigError(f"{pin.name}: the lock was edited (lock.seal does not match the pin); {_EDITED}")


# -- a pinned build: before building ------------------------------------------------------


def check_pinned(cfg: DictConfig, pin: Pin, plan: Plan, file_digest: Callable[[Path], str]) -> list[str]:
    """Before building a pinned recipe: refuse a changed pinned value, a plan the lock does not
    describe, and changed inputs; return the tool differences from the lock (an error unless
    allow_tool_drift=true). `file_digest` should be the cache's stat-remembered one: cheap."""
    _check_values(cfg, pin)
    _check_plan(pin, plan)  # before the seal: it names an artifact or step removed from the lock
    _check_seal(pin)
    check_machine(cfg, pin, plan)
    drift = [f"{tool} {short(locked)} -> {now}" for tool, now in tool_versions().items()
             if (locked := pin.lock["tools"].get(tool)) != now]  # fmt: skip
    if drift and not cfg.allow_tool_drift:
        raise ConfigError(
            f"{pin.name}: installed tools differ from the lock ({', '.join(drift)}); install the locked versions, "
            f"or {_ALLOW_DRIFT}"
        )
    return drift + _check_inputs(pin, plan, file_digest, bool(cfg.allow_tool_drift))


def _check_values(cfg: DictConfig, pin: Pin) -> None:
    _check_every_pinned_value(cfg, pin)


# Pinned values a pinned build may still set: where this machine keeps the programs that run
# the artifacts to verify them (never make them; the pinned tolerances still apply). Besides
# these, only what a pin leaves out may change (pins.UNPINNED: cache.*, jobs, force, dry_run,
# allow_tool_drift) and Hydra's own settings (hydra.run.dir): none changes an artifact, a
# check or a limit.
MACHINE_LOCAL = ("verify.node", "verify.chromium")
ALLOWED_OVERRIDES = "hydra.run.dir, cache.*, jobs, force, dry_run, allow_tool_drift, verify.node, verify.chromium"


def _check_every_pinned_value(cfg: DictConfig, pin: Pin) -> None:
    """Every pinned value, not only those that make the artifacts' bytes: a pinned build that
    verified less (verify), timed otherwise (benchmark), passed other limits (gates) or read
    the outputs as another task would still say "reproduced", and mean less by it."""
    written = _machine_independent({k: v for k, v in pin.document.items() if k not in ("defaults", "lock")})
    current = _machine_independent(pinned_values(cfg))
    changed = sorted(k for k in set(written) | set(current) if k not in written or k not in current
                     or digest(written[k]) != digest(current[k]))  # fmt: skip
    if changed:
        differences = _differences(written, current, changed)
        raise ConfigError(
            f"{pin.name}: this build would not use the pinned values ({'; '.join(differences[:3])}): a command-line "
            f"override or a change in conf/ (a pinned build uses exactly its pin; it may set only {ALLOWED_OVERRIDES})"
        )


def _machine_independent(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` without the MACHINE_LOCAL keys."""
    kept = {k: dict(v) if isinstance(v, Mapping) else v for k, v in values.items()}
    for dotted in MACHINE_LOCAL:
        section, key = dotted.split(".", 1)
        if isinstance(kept.get(section), dict):
            kept[section].pop(key, None)
    return kept


def _check_plan(pin: Pin, plan: Plan) -> None:
    """The lock must describe this plan: what it will publish, and every step it will run."""
    # A step that runs only if another fails publishes nothing in a good build (and pins are made of good builds).
    planned = [o.artifact for s in plan.steps for o in s.outputs if o.publish is not None and s.runs_if_failed is None]
    locked = pin.lock["artifacts"]
    problems = [f"{a} would be built but is not in the lock" for a in planned if a not in locked]
    problems += [f"{a} is in the lock but would not be built" for a in locked if a not in planned]
    problems += [f"step {s.name} is not in lock.steps" for s in plan.steps
                 if s.name not in pin.lock["steps"] and s.runs_if_failed is None]
    if problems:
        raise ConfigError(f"{pin.name}: the lock does not match this build's plan ({'; '.join(problems[:3])}); "
                          f"re-pin with pin=VERSION")  # fmt: skip


def _check_inputs(pin: Pin, plan: Plan, file_digest: Callable[[Path], str], allow_drift: bool) -> list[str]:
    """Changed external files and a data split that would differ, named before any work (a
    retrain that cannot match the lock costs minutes). Returns the differences allowed as drift."""
    from .cache import cache_key
    from .runner import step_material
    from .steps import REGISTRY

    digest_of = functools.cache(lambda path: _readable_digest(file_digest, path, pin.name))
    drift: list[str] = []
    drifted: set[str] = set()
    for spec in plan.steps:
        locked = pin.lock["files"].get(spec.name, {})
        for role, path in spec.files.items():
            now, was = digest_of(Path(path)), locked.get(role)
            what = f"{spec.name}'s input {role} ({_shown(Path(path))})"
            if was is None:
                raise ConfigError(f"{pin.name}: {what} is not in lock.files; re-pin with pin=VERSION")
            if now == was:
                continue
            if role in TOOL_FILES and allow_drift:
                if path not in drifted:  # one line per file, not per step that reads it
                    drifted.add(path)
                    drift.append(f"{what} {was[:12]} -> {now[:12]}")
                continue
            hint = f"; or {_ALLOW_DRIFT}" if role in TOOL_FILES else ""
            raise ConfigError(f"{pin.name}: {what} changed since the pin (sha256 {now[:12]}..., locked {was[:12]}...): "
                              f"the release cannot be reproduced from it{hint}")  # fmt: skip
    data = plan.step("data")
    material = step_material(data, REGISTRY[data.kind], {}, digest_of)
    if cache_key(material) != pin.lock["data"]["step_key"]:
        why = explain_change(pin.lock["data"]["material"], material)
        if not (allow_drift and why.startswith("tool version changed")):
            raise ConfigError(f"{pin.name}: the data step would not make the locked split ({why}): "
                              "the release cannot be reproduced from it")  # fmt: skip
        drift.append(f"data: {why}")
    return drift


def _readable_digest(file_digest: Callable[[Path], str], path: Path, name: str) -> str:
    try:
        return file_digest(path)
    except OSError as exc:
        raise ConfigError(f"{name}: {_shown(path)} cannot be read ({exc.strerror}); the release needs it") from None


def check_machine(cfg: DictConfig, pin: Pin, plan: Plan) -> None:
    """Before any work: a pin built on another machine family (CPU instruction set, GPU) cannot
    be reproduced byte for byte here. pin_reproduce=bytes (the default) refuses on one line;
    pin_reproduce=metrics rebuilds and holds the test metrics to the pin's instead (a pin
    without recorded metrics cannot be checked that way)."""
    from .machine import described

    if cfg.pin_tolerance < 0:
        raise ConfigError(f"pin_tolerance must be 0 or more (0.01: one accuracy point), got {cfg.pin_tolerance}")
    if _reproduce(cfg) == "metrics":
        if not isinstance(pin.lock.get("metrics"), dict) or not pin.lock["metrics"]:
            raise ConfigError(f"{pin.name}: this pin records no test metrics (pinned without them, or before tfbuild "
                              "recorded them): it can only be reproduced byte for byte (pin_reproduce=bytes)")  # fmt: skip
        return
    locked, now = pin.lock.get("machine"), machine_now(plan)
    if not isinstance(locked, dict) or not now or locked == now:
        return  # nothing machine-dependent (or a pin from before machines were recorded: its keys say)
    raise ConfigError(
        f"{pin.name}: pinned on {described(locked)}, this machine is {described(now)}: its artifacts are "
        "reproducible byte for byte only on the same machine family; rebuild there, or add pin_reproduce=metrics "
        "to rebuild here and hold each test metric to the pin's (within pin_tolerance)"
    )


def machine_now(plan: Plan) -> dict[str, str]:
    """This machine, as the plan's machine-dependent steps would key it (StepKind.machine)."""
    from .steps import REGISTRY

    now: dict[str, str] = {}
    for spec in plan.steps:
        machine = getattr(REGISTRY[spec.kind], "machine", None) if spec.kind in REGISTRY else None
        now.update((machine(spec) if machine else None) or {})
    return now


def _reproduce(cfg: Any) -> str:
    value = cfg.get("pin_reproduce", "bytes") if isinstance(cfg, Mapping) else cfg.pin_reproduce
    return getattr(value, "value", value)


# -- a pinned build: after building ---------------------------------------------------------


def compare_metrics(lock: Mapping[str, Any], record: Mapping[str, Any], tolerance: float) -> tuple[int, list[str]]:
    """pin_reproduce=metrics: (metrics within `tolerance` of the lock's, problems). A metric
    may differ by `tolerance` where the pinned value is at most 1 (accuracy: 0.01 is one
    point), by that share of the pinned value above (MAE in its target's units)."""
    from .pins import artifact_metrics

    built = artifact_metrics(record)
    held, problems = 0, []
    for name, locked in (lock.get("metrics") or {}).items():
        value = built.get(name)
        if value is None:
            problems.append(f"{name} was not measured (pinned {locked:.6g})")
        elif abs(value - locked) > tolerance * max(1.0, abs(locked)):
            problems.append(f"{name} is {value:.6g}, pinned {locked:.6g} (pin_tolerance {tolerance:g})")
        else:
            held += 1
    return held, problems



def compare_with_lock(lock: Mapping[str, Any], record: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(artifacts with their locked bytes, problems: artifacts or data that differ)."""
    built = {a["name"]: a for a in record["artifacts"]}
    same, problems = [], []
    for name, locked in lock["artifacts"].items():
        artifact = built.get(name)
        if artifact is None:
            problems.append(f"{name} was not built")
        elif artifact["sha256"] != locked["sha256"]:
            problems.append(f"{name} differs (sha256 {artifact['sha256'][:12]}, locked {locked['sha256'][:12]})")
        else:
            same.append(name)
    data = next((s for s in record["steps"] if s["name"] == "data"), None)
    if data is not None and data["key"] != lock["data"]["step_key"]:
        problems.append("the data split differs from the locked one")
    return same, problems


# -- words ----------------------------------------------------------------------------------


def _repin(lock: Mapping[str, Any]) -> str:
    recipe, version = lock.get("recipe"), lock.get("version")
    if isinstance(recipe, str) and isinstance(version, str) and len(recipe) + len(version) < 200:
        return f"tfbuild recipe={recipe} pin='{version}' pin_overwrite=true"
    return "tfbuild recipe=NAME pin=VERSION pin_overwrite=true"


def _is_sha(value: Any) -> bool:
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def _plain(node: Any) -> Any:
    try:
        return OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node
    except OmegaConfBaseException:
        return None


def _json(value: Any) -> str:
    return short(json.dumps(value, default=str))


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _differences(written: Mapping[str, Any], current: Mapping[str, Any], sections: list[str]) -> list[str]:
    flat_written = flatten({s: written.get(s) for s in sections})
    flat_current = flatten({s: current.get(s) for s in sections})
    keys = sorted(set(flat_written) | set(flat_current))
    return [
        f"{k}: pinned {_json(flat_written.get(k, '(absent)'))}, now {_json(flat_current.get(k, '(absent)'))}"
        for k in keys
        if flat_written.get(k, "(absent)") != flat_current.get(k, "(absent)")
    ] or [f"{', '.join(sections)} changed"]
