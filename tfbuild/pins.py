"""Pinned recipes: a release's exact config and what it built, so it can be rebuilt and
checked byte for byte months later.

`tfbuild recipe=NAME pin=VERSION` writes recipes/pinned/NAME-VERSION.yaml after a good build:
every value explicit, the same group options re-selected (so no group's keys can leak in),
and a `lock`: tool versions, per-section digests of the pinned values, the data's digest,
every artifact's sha256 and size, and every step's cache key (which `tfbuild-cache gc`
keeps). `tfbuild recipe=pinned/NAME-VERSION` checks before building that the pin was not
edited, that nothing (command line, conf/) changes a pinned value, and that the tools are the
locked ones; after building, that every artifact has its locked digest.
"""

from __future__ import annotations

import json
import platform
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from . import __version__
from .cache import canonical_json
from .errors import ConfigError
from .keys import tool_version

PINNED = "pinned"
# The distributions whose versions decide the artifacts' bytes.
LOCKED_TOOLS = ("tensorflow", "tf-keras", "tensorflowjs", "tensorflow-model-optimization", "ai-edge-litert", "numpy")
# Sections whose values make the artifacts: a pinned build must use exactly these.
STRICT = ("model", "data", "target", "precision", "train", "optimize", "export")
# Never pinned: where and how this one build runs.
UNPINNED = ("cache", "dry_run", "force", "pin", "pin_overwrite", "allow_tool_drift", "lock")
# Config groups a pin re-selects, so their files cannot add keys to the pinned values.
GROUPS = ("model", "data", "target", "precision", "optimize")
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def tool_versions() -> dict[str, str]:
    versions = {name: tool_version(name) for name in LOCKED_TOOLS}
    versions["python"] = platform.python_version()
    versions["platform"] = f"{platform.system()}-{platform.machine()}"
    return versions


def pinned_values(cfg: DictConfig) -> dict[str, Any]:
    values = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(values, dict)
    return {key: value for key, value in values.items() if key not in UNPINNED}


def section_digests(values: Mapping[str, Any]) -> dict[str, str]:
    import hashlib

    return {key: hashlib.sha256(canonical_json(value).encode()).hexdigest() for key, value in sorted(values.items())}


def pin_path(recipes_dir: Path, recipe: str, version: str) -> Path:
    return recipes_dir / PINNED / f"{recipe.replace('/', '_')}-{version}.yaml"


def check_new_pin(cfg: DictConfig, recipe: str | None, recipes_dir: Path) -> Path:
    """Where `pin=` will write, refused (exit 2, before any work) when it cannot or must not."""
    version = str(cfg.pin)
    if recipe is None:
        raise ConfigError("pin: a pin is made from a recipe; add recipe=NAME")
    if recipe.startswith(f"{PINNED}/"):
        raise ConfigError(f"pin: recipe={recipe} is a pin already; pin the recipe it came from")
    if not VERSION_PATTERN.match(version):
        raise ConfigError(f"pin: '{version}' is not a version (letters, digits, and . _ + - after the first)")
    if cfg.dry_run:
        raise ConfigError("pin: a pin records what a build made; drop dry_run=true")
    path = pin_path(recipes_dir, recipe, version)
    if path.exists() and not cfg.pin_overwrite:
        raise ConfigError(f"pin: {path} exists; pins are not replaced unless you add pin_overwrite=true")
    return path


def write_pin(path: Path, cfg: DictConfig, choices: Mapping[str, Any], record: Mapping[str, Any], recipe: str) -> None:
    values = pinned_values(cfg)
    steps = {s["name"]: s["key"] for s in record["steps"]}
    data = next(s for s in record["steps"] if s["name"] == "data")
    lock = {
        "tfbuild": __version__,
        "recipe": recipe,
        "version": str(cfg.pin),
        "pinned": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tools": tool_versions(),
        "sections": section_digests(values),
        "data": {"step_key": data["key"]},
        "artifacts": {a["name"]: {"sha256": a["sha256"], "bytes": a["bytes"]} for a in record["artifacts"]},
        "steps": steps,
    }
    defaults = [{f"override /{group}": choices[group]} for group in GROUPS if choices.get(group)]
    document = OmegaConf.create({"defaults": defaults, **values, "lock": lock})
    header = (
        "# @package _global_\n"
        f"# Pinned by tfbuild {__version__} from recipe={recipe} (version {cfg.pin}). Do not edit: a pinned build\n"
        "# refuses changed values. Rebuild and check it with: tfbuild recipe=" + f"{PINNED}/{path.stem}\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(header + OmegaConf.to_yaml(document))
    tmp.replace(path)


def check_pinned(cfg: DictConfig, pin_file: Path | None) -> list[str]:
    """Before building a pinned recipe: refuse an edited pin or a changed pinned value; return
    the tool versions that differ from the lock (an error unless allow_tool_drift=true)."""
    lock = OmegaConf.to_container(cfg.lock, resolve=True) if OmegaConf.is_config(cfg.lock) else cfg.lock
    name = _shown(pin_file) if pin_file else "the pinned recipe"
    _check_lock_shape(lock, name)
    if pin_file is not None:
        written = OmegaConf.to_container(OmegaConf.load(pin_file), resolve=True)
        assert isinstance(written, dict)
        written = {k: v for k, v in written.items() if k not in ("defaults", *UNPINNED)}
        edited = sorted(k for k, digest in section_digests(written).items() if lock["sections"].get(k) != digest)
        if edited:
            raise ConfigError(
                f"{name}: {', '.join(edited)} changed since it was pinned (its lock digest differs); "
                "a pin is not edited: make a new one with pin=VERSION"
            )
    current = pinned_values(cfg)
    digests = section_digests(current)
    changed = [s for s in STRICT if digests.get(s) != lock["sections"].get(s)]
    if changed and pin_file is not None:
        written_values = OmegaConf.to_container(OmegaConf.load(pin_file), resolve=True, enum_to_str=True)
        differences = _differences(written_values, current, changed)  # type: ignore[arg-type]
        raise ConfigError(
            f"{name}: this build would not use the pinned values ({'; '.join(differences[:3])}): a command-line "
            "override or a change in conf/ (a pinned build uses exactly its pin)"
        )
    drift = [f"{tool} {locked} -> {now}" for tool, now in tool_versions().items()
             if (locked := lock["tools"].get(tool)) != now]  # fmt: skip
    if drift and not cfg.allow_tool_drift:
        raise ConfigError(
            f"{name}: installed tools differ from the lock ({', '.join(drift)}); install the locked versions, "
            "or add allow_tool_drift=true to build anyway and report the differences"
        )
    return drift


def _check_lock_shape(lock: Any, name: str) -> None:
    """A lock damaged by hand is refused with what is wrong, not a traceback."""
    sha = re.compile(r"^[0-9a-f]{64}$")
    problems = []
    if not isinstance(lock, dict):
        problems.append("lock is not a mapping")
    else:
        for key in ("tools", "sections", "artifacts", "steps", "data"):
            if not isinstance(lock.get(key), dict):
                problems.append(f"lock.{key} is missing")
        for artifact, record in (lock.get("artifacts") or {}).items():
            if not isinstance(record, dict) or not sha.match(str(record.get("sha256"))) or not isinstance(record.get("bytes"), int):
                problems.append(f"lock.artifacts.{artifact} needs a 64-hex sha256 and bytes")
        if isinstance(lock.get("data"), dict) and not sha.match(str(lock["data"].get("step_key"))):
            problems.append("lock.data.step_key is not a 64-hex key")
    if problems:
        raise ConfigError(f"{name}: the lock is damaged ({'; '.join(problems[:3])}); re-pin with pin=VERSION")


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _differences(written: Mapping[str, Any], current: Mapping[str, Any], sections: list[str]) -> list[str]:
    flat_written = dict(_flatten({s: written.get(s) for s in sections}))
    flat_current = dict(_flatten({s: current.get(s) for s in sections}))
    keys = sorted(set(flat_written) | set(flat_current))
    return [
        f"{k}: pinned {json.dumps(flat_written.get(k, '(absent)'))}, now {json.dumps(flat_current.get(k, '(absent)'))}"
        for k in keys
        if flat_written.get(k, "(absent)") != flat_current.get(k, "(absent)")
    ] or [f"{', '.join(sections)} changed"]


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, Mapping):
        return [item for k, v in value.items() for item in _flatten(v, f"{prefix}{k}.")]
    return [(prefix.rstrip("."), value)]


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
