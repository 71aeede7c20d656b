"""Pinned recipes: a release's exact config and what it built, so it can be rebuilt and
checked byte for byte months later. This module makes pins; `pin_checks` checks them.

`tfbuild recipe=NAME pin=VERSION` writes recipes/pinned/NAME-VERSION.yaml after a good build:
every value explicit, the same group options re-selected (so no group's keys can leak in),
and a `lock`: tool versions, per-section digests of the pinned values, a digest of the
defaults list, the data step's key and key material, the digests of every step's external
files (builder source, data file, npm lockfile), every artifact's sha256 and size, every
step's cache key (which `tfbuild-cache gc` keeps), and `lock.seal`: the sha256 of the
canonical JSON of the whole pin (defaults, values, lock) without the seal itself.

Writing a pin is exclusive: `check_new_pin` takes the pin's lock (recipes/pinned/.NAME-
VERSION.yaml.lock, an flock that goes with its process) before the build and `write_pin`
lets go of it once the pin is in place, so of two builds making the same pin the second is
refused before it builds; and the pin appears by an exclusive link (or, with pin_overwrite,
a rename), so not even a writer that skipped the lock replaces a pin unasked.

The seal makes hand edits evident; it is a checksum, not a signature: whoever recomputes it
on purpose can forge a pin, as with any lockfile.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from . import __version__
from .cache import cache_key
from .errors import ConfigError
from .exclusive import Busy, HeldLock, take
from .keys import tool_version

PINNED = "pinned"
# The distributions whose versions decide the artifacts' bytes (the data step reads scikit-learn's).
LOCKED_TOOLS = ("tensorflow", "tf-keras", "tensorflowjs", "tensorflow-model-optimization", "ai-edge-litert", "numpy",
                "scikit-learn")  # fmt: skip
# Sections whose values make the artifacts' bytes (a pinned build uses every pinned value: pin_checks).
STRICT = ("model", "data", "target", "precision", "train", "optimize", "export")
# Never pinned: where and how this one build runs.
UNPINNED = ("cache", "dry_run", "force", "jobs", "pin", "pin_overwrite", "allow_tool_drift", "lock", "sweep",
            "pin_reproduce", "pin_tolerance")  # fmt: skip
# Config groups a pin re-selects, so their files cannot add keys to the pinned values.
GROUPS = ("model", "data", "target", "precision", "optimize")
VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")  # used with fullmatch: no trailing newline
# Longer than any real scheme (semver with pre-release and build metadata fits), and short
# enough that NAME-VERSION.yaml and its run folder stay within a file name's 255 bytes.
MAX_VERSION = 64
MAX_FILE_NAME = 255
SEAL = "seal"
SHOWN = 60  # the longest value quoted in a message: a hand-edited pin may hold anything


@dataclass(frozen=True)
class NewPin:
    path: Path
    version: str  # as the user typed it
    # The pin's write lock, held from check_new_pin until write_pin (or this object goes).
    lock: PinLock | None = field(default=None, compare=False, repr=False)


@dataclass
class PinLock:
    """A pin's write lock, and the folders made to hold its file (removed again while empty)."""

    held: HeldLock
    made: tuple[Path, ...] = ()

    def release(self) -> None:
        if self.held.fd is None:
            return
        self.held.release(remove=True)
        for folder in reversed(self.made):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only ever removes an empty folder


def tool_versions() -> dict[str, str]:
    versions = {name: tool_version(name) for name in LOCKED_TOOLS}
    versions["python"] = platform.python_version()
    versions["platform"] = f"{platform.system()}-{platform.machine()}"
    return versions


def pinned_values(cfg: DictConfig) -> dict[str, Any]:
    values = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(values, dict)
    return {key: value for key, value in values.items() if key not in UNPINNED}


def digest(value: Any) -> str:
    """sha256 of a value's canonical JSON: the same function as a cache key."""
    return cache_key(value)


def section_digests(values: Mapping[str, Any]) -> dict[str, str]:
    return {key: digest(value) for key, value in sorted(values.items())}


def seal_of(document: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces, ASCII) of the whole pin as YAML
    reads it back, unresolved, without `lock.seal` itself: defaults, pinned values and lock."""
    lock = {k: v for k, v in document["lock"].items() if k != SEAL}
    return digest({**document, "lock": lock})


def pin_path(recipes_dir: Path, recipe: str, version: str) -> Path:
    return recipes_dir / PINNED / f"{recipe.replace('/', '_')}-{version}.yaml"


# -- making a pin ---------------------------------------------------------------------------


def typed_version(hydra_cfg: Any) -> str:
    """`pin=` as the user typed it. Hydra reads pin=1.10 as the float 1.1 (and pin=1e3 as
    1000.0), so a number's text is taken from the command line; a sweep's jobs get overrides
    rewritten from the parsed values, so there a number is refused, and so is a pin set in a
    file (YAML reads 1.10 as a number too)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    overrides = OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task))
    given = [o for o in overrides if o.key_or_group == "pin"]
    if not given:
        raise ConfigError("pin: give the version on the command line (pin=VERSION), not in a recipe or conf/")
    override = given[-1]
    value = override.value()
    if isinstance(value, str):
        return value
    text = override.input_line.split("=", 1)[1].strip()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"pin: {quoted(text)} is not a version (letters, digits, and . _ + - after the first)")
    if hydra_cfg.mode == RunMode.MULTIRUN:
        raise ConfigError(f"pin: in a sweep (-m) an unquoted version reads as a number (here {value}) and loses "
                          "its text (1.10 becomes 1.1); quote it: pin='VERSION'")  # fmt: skip
    return text


def check_new_pin(cfg: DictConfig, version: str, recipe: str | None, recipes_dir: Path) -> NewPin:
    """Where `pin=` will write, refused (exit 2, before any work) when it cannot or must not."""
    if recipe is None:
        raise ConfigError("pin: a pin is made from a recipe; add recipe=NAME")
    if recipe.startswith(f"{PINNED}/"):
        raise ConfigError(f"pin: recipe={recipe} is a pin already; pin the recipe it came from")
    if len(version) > MAX_VERSION:
        raise ConfigError(f"pin: a version has at most {MAX_VERSION} characters (this one has {len(version)})")
    if not VERSION_PATTERN.fullmatch(version):
        raise ConfigError(f"pin: {quoted(version)} is not a version (letters, digits, and . _ + - after the first)")
    if cfg.dry_run:
        raise ConfigError("pin: a pin records what a build made; drop dry_run=true")
    path = pin_path(recipes_dir, recipe, version)
    if len(path.name.encode()) > MAX_FILE_NAME:
        raise ConfigError(f"pin: the pin's file name {path.name[:40]}... would have {len(path.name.encode())} bytes "
                          f"(file systems allow {MAX_FILE_NAME}); choose a shorter version")  # fmt: skip
    lock = _take_pin_lock(path)  # before looking: a pin another build is writing is refused, not raced
    if path.exists() and not cfg.pin_overwrite:
        lock.release()
        raise ConfigError(f"pin: {path} exists; pins are not replaced unless you add pin_overwrite=true")
    new_pin = NewPin(path, version, lock)
    weakref.finalize(new_pin, lock.release)  # a build that fails (or is refused later) lets go too
    return new_pin


def _take_pin_lock(path: Path) -> PinLock:
    """Hold the lock of the pin at `path`; ConfigError (exit 2) when another build holds it."""
    lock_path = path.with_name(f".{path.name}.lock")
    made = tuple(folder for folder in (path.parent.parent, path.parent) if not folder.exists())
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        return PinLock(take(lock_path), made)
    except Busy as busy:
        holder = f" (pid {busy.pid})" if busy.pid else ""
        raise ConfigError(f"pin: another tfbuild{holder} is writing {path}; a pin has one writer: wait for it "
                          "(then pin_overwrite=true replaces it), or choose another version") from None  # fmt: skip
    except OSError as exc:
        raise ConfigError(f"pin: cannot lock {lock_path} ({exc.strerror or exc}); pins are written under "
                          "./recipes/pinned/, which must be writable") from None  # fmt: skip


def write_pin(
    new_pin: NewPin,
    cfg: DictConfig,
    choices: Mapping[str, Any],
    record: Mapping[str, Any],
    materials: Mapping[str, Mapping[str, Any]],
    recipe: str,
) -> None:
    """Write the pin. `materials` maps each step to the key material it was built or reused
    with, so the lock holds the very file digests and data key the steps were keyed with."""
    values = pinned_values(cfg)
    decided = decided_values(record)
    for dotted, value in decided.items():  # what the build chose, in place of the search for it
        node = values
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    defaults = [{f"override /{group}": choices[group]} for group in GROUPS if choices.get(group)]
    lock = {
        "tfbuild": __version__,
        "recipe": recipe,
        "version": new_pin.version,
        "pinned": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tools": tool_versions(),
        "defaults": digest(defaults),
        "sections": section_digests(values),
        "data": {"step_key": _step_key(record, "data"), "material": dict(materials["data"])},
        "files": {step: dict(material["files"]) for step, material in materials.items() if material["files"]},
        "artifacts": {a["name"]: {"sha256": a["sha256"], "bytes": a["bytes"]} for a in record["artifacts"]},
        # A step that was not needed (a diagnosis of a failure that did not happen) has no key.
        "steps": {s["name"]: s["key"] for s in record["steps"] if s["key"]},
        # Each calibrated step's calibration: sample count, split, sha256 of the samples.
        "calibration": {s["name"]: s["info"]["calibration"] for s in record["steps"] if (s.get("info") or {}).get("calibration")},
    }
    if decided:
        lock["decided"] = decided
    lock.update(machine_lock(materials, record))
    header = (
        "# @package _global_\n"
        f"# Pinned by tfbuild {__version__} from recipe={recipe} (version {new_pin.version}). Do not edit: a pinned\n"
        "# build refuses any change (lock.seal). Rebuild and check it with: tfbuild recipe="
        f"{PINNED}/{new_pin.path.stem}\n"
    )
    unsealed = OmegaConf.to_yaml(OmegaConf.create({"defaults": defaults, **values, "lock": lock}))
    # Sealed as a pinned build will read it: YAML's round trip decides each value's type.
    document = _as_read(unsealed)
    document["lock"][SEAL] = seal_of(document)
    text = header + OmegaConf.to_yaml(OmegaConf.create(document))
    read_back = _as_read(text)
    assert seal_of(read_back) == document["lock"][SEAL], "a pin must read back as it was sealed"
    assert section_digests({k: read_back[k] for k in values}) == lock["sections"], "and its values as they were built"
    new_pin.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_pin.path.with_name(f".{new_pin.path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text)
        if cfg.pin_overwrite:
            os.replace(tmp, new_pin.path)
        else:
            _place_new(tmp, new_pin.path)
    finally:
        tmp.unlink(missing_ok=True)
        if new_pin.lock is not None:
            new_pin.lock.release()


def _place_new(tmp: Path, path: Path) -> None:
    """`tmp` at `path`, whole, and only if no pin is there: a pin written meanwhile by a writer
    that skipped the lock (an older tfbuild, a copy by hand) is never replaced unasked."""
    taken = ConfigError(f"pin: {path} was written by someone else during this build; it is kept (pins are not "
                        "replaced unless you add pin_overwrite=true)")  # fmt: skip
    try:
        os.link(tmp, path)  # atomic, and fails where anything is
    except FileExistsError:
        raise taken from None
    except OSError:  # a filesystem without hard links: the lock keeps other tfbuilds out; look once more
        if os.path.lexists(path):
            raise taken from None
        os.replace(tmp, path)


def machine_lock(materials: Mapping[str, Mapping[str, Any]], record: Mapping[str, Any]) -> dict[str, Any]:
    """What a pin records of the machine it was built on, for a rebuild elsewhere: `machine`,
    the CPU family and GPU the machine-dependent steps were keyed with (none: the pin's bytes
    are the same on every machine), and `metrics`, the test metrics a rebuild with
    pin_reproduce=metrics must meet."""
    machine: dict[str, str] = {}
    for material in materials.values():
        machine.update(material.get("machine") or {})
    lock: dict[str, Any] = {"metrics": artifact_metrics(record)}
    if machine:
        lock["machine"] = machine
    return lock


def artifact_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """Every test metric a build measured, by "WHERE OUTPUT METRIC": the trained (and
    optimized) model's, the SavedModel's, and each artifact's on each runtime that verified it."""
    found: dict[str, float] = {}

    def add(where: str, metrics: Any) -> None:
        for output, figures in (metrics or {}).items():
            for metric, value in (figures or {}).items():
                if metric != "task" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    found[f"{where} {output} {metric}"] = float(value)

    for step in record["steps"]:
        info, kind = step.get("info") or {}, step.get("kind") or step["name"].split("[")[0]
        if kind in ("train", "optimize"):
            add(step["name"], info.get("test_metrics"))
        elif kind == "verify":
            add("saved_model", info.get("reference_metrics"))
            artifact = step["name"].removeprefix("verify[").removesuffix("]")
            for runtime, figures in (info.get("runtimes") or {}).items():
                add(f"{artifact} ({runtime})", figures.get("metrics"))
    return dict(sorted(found.items()))


def decided_values(record: Mapping[str, Any]) -> dict[str, Any]:
    """Config values a build decided (a step's info "pin": {"dotted.key": value}), such as the
    float ops an int8 repair chose: a pin records them, so its rebuild does not decide again."""
    decided: dict[str, Any] = {}
    for step in record["steps"]:
        decided.update((step.get("info") or {}).get("pin") or {})
    return decided


def _as_read(text: str) -> dict[str, Any]:
    document = OmegaConf.to_container(OmegaConf.create(text), resolve=False)
    assert isinstance(document, dict)
    return document  # type: ignore[return-value]


def _step_key(record: Mapping[str, Any], name: str) -> str:
    return next(s["key"] for s in record["steps"] if s["name"] == name)


def short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def quoted(value: Any) -> str:
    return repr(short(str(value)))
