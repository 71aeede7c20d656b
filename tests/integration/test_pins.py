"""Pinned recipes, as a release manager uses them: pin a build, rebuild it from an empty cache
byte for byte, and have every tampering refused."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import yaml

from omegaconf import OmegaConf

from tests.conftest import TINY, run_tfbuild
from tfbuild.digests import sha256_file
from tfbuild.pins import section_digests, seal_of

pytestmark = pytest.mark.slow

PIN = "recipes/pinned/digits_all-1.0.yaml"


def runs(cwd: Path) -> list[Path]:
    """Run folders, oldest first (pinned recipes' runs sit one level deeper: runs/pinned/NAME/)."""
    return sorted((p.parent for p in (cwd / "outputs" / "runs").rglob("build.json")), key=lambda p: p.name)


def files_of(run: Path) -> dict[str, bytes]:
    return {
        p.relative_to(run).as_posix(): p.read_bytes()
        for p in run.rglob("*")
        if p.is_file() and p.relative_to(run).parts[0] in ("saved_model", "tflite", "tfjs")
    }


@pytest.fixture(scope="module")
def pinned(tmp_path_factory):
    """A project folder with recipes/pinned/digits_all-1.0.yaml, pinned from a real build."""
    cwd = tmp_path_factory.mktemp("release")
    first = run_tfbuild("recipe=digits_all", *TINY, "pin=1.0", cwd=cwd, check=True)
    assert f"pinned: {cwd / PIN}" in first.stdout
    return cwd


def test_pin_holds_the_resolved_config_and_a_lock(pinned):
    text = (pinned / PIN).read_text()
    assert text.startswith("# @package _global_\n")
    pin = yaml.safe_load(text)
    assert pin["train"]["epochs"] == 3 and pin["data"]["limit"] == 600, "every value explicit"
    assert pin["defaults"] == [{"override /model": "cnn"}, {"override /data": "digits"}, {"override /target": "cpu"},
                               {"override /optimize": "none"}]
    lock = pin["lock"]
    assert set(lock["tools"]) >= {"tensorflow", "tf-keras", "tensorflowjs", "tensorflow-model-optimization",
                                  "ai-edge-litert", "numpy", "python", "platform"}
    assert len(lock["artifacts"]) == 10 and all(len(a["sha256"]) == 64 and a["bytes"] > 0 for a in lock["artifacts"].values())
    assert "cache" not in pin and "pin" not in pin, "where and how a build runs is not pinned"
    assert lock["seal"] == seal_of(pin)
    assert set(lock["files"]["train"]) == {"builder"} and set(lock["files"]["verify[tfjs/uint8]"]) == {"npm_lock"}
    assert lock["data"]["material"]["tools"].keys() == {"numpy", "scikit-learn", "tensorflow"}


def test_rebuild_from_an_empty_cache_is_byte_identical(pinned):
    result = run_tfbuild("recipe=pinned/digits_all-1.0", "cache.dir=fresh_cache", cwd=pinned, check=True)
    assert "reproduced pinned/digits_all-1.0: 10 artifacts byte-identical to the lock" in result.stdout
    record = json.loads((runs(pinned)[-1] / "build.json").read_text())
    assert {s["status"] for s in record["steps"]} == {"built", "not needed"}, "nothing came from a cache"
    original, rebuilt = files_of(runs(pinned)[0]), files_of(runs(pinned)[-1])
    assert sorted(original) == sorted(rebuilt)
    assert any(p.startswith("saved_model/variables/") for p in original)
    assert any(p.endswith(".tflite") for p in original) and any(p.endswith("model.json") for p in original)
    different = [p for p in original if original[p] != rebuilt[p]]
    assert different == []


def test_an_existing_pin_is_not_replaced(pinned):
    result = run_tfbuild("recipe=digits_all", *TINY, "pin=1.0", cwd=pinned)
    assert result.returncode == 2
    assert f"pin: {pinned / PIN} exists; pins are not replaced unless you add pin_overwrite=true" in result.stderr


def edited(pinned: Path, tmp_path: Path, old: str = "", new: str = "") -> Path:
    """A copy of the project whose pin has `old` replaced by `new` (the shared one stays intact)."""
    copy = tmp_path / "project"
    (copy / "recipes" / "pinned").mkdir(parents=True)
    (copy / "outputs").symlink_to(pinned / "outputs")
    text = (pinned / PIN).read_text()
    assert old in text
    (copy / PIN).write_text(text.replace(old, new, 1))
    return copy


def resealed(pinned: Path, tmp_path: Path, change) -> Path:
    """A copy whose pin was changed and sealed again: what only a deliberate forger does, and
    how a test reaches the checks behind the seal."""
    project = edited(pinned, tmp_path)
    document = yaml.safe_load((project / PIN).read_text())
    change(document)
    document["lock"]["seal"] = seal_of(document)
    (project / PIN).write_text(OmegaConf.to_yaml(OmegaConf.create(document)))
    return project


def run_folders(project: Path) -> set[Path]:
    return {p for p in (project / "outputs" / "runs").rglob("*") if p.is_dir() and not p.is_symlink()}


def cache_entries(project: Path) -> set[str]:
    return {p.name for p in (project / "outputs" / "cache" / "entries").glob("*/*")}


def lock_of(pinned: Path) -> dict:
    return yaml.safe_load((pinned / PIN).read_text())["lock"]


def without_lock(text: str) -> str:
    return text[: text.index("\nlock:")] + "\n"


def without_artifact(text: str) -> str:
    return re.sub(r"\n    tflite/int8:\n      sha256: \w+\n      bytes: \d+", "", text, count=1)


def without_step(text: str) -> str:
    return re.sub(r"\n    verify\[tflite/int8\]: \w+", "", text, count=1)


def added(text: str) -> Callable[[str], str]:
    return lambda pin: pin.replace("\nlock:", f"\n{text}\nlock:", 1)


def value_and_digest(text: str) -> str:
    """train.epochs 3 -> 4 with train's section digest made to match: only the seal can tell."""
    document = yaml.safe_load(text)
    document["train"]["epochs"] = 4
    document["lock"]["sections"]["train"] = section_digests({"train": document["train"]})["train"]
    return OmegaConf.to_yaml(OmegaConf.create(document))


def other_seal(text: str) -> str:
    return re.sub(r"seal: (\w)", lambda m: "seal: " + ("a" if m.group(1) != "a" else "b"), text, count=1)


EDITED = "a pin is not edited: make a new one with pin=VERSION"


@pytest.mark.parametrize(
    "tamper, message",
    [
        (without_lock, "a pinned recipe needs its lock (it was removed or damaged); re-pin with pin=VERSION"),
        (without_artifact, "the lock does not match this build's plan (tflite/int8 would be built but is not in the "
                           "lock); re-pin with pin=VERSION"),
        (without_step, "the lock does not match this build's plan (step verify[tflite/int8] is not in lock.steps); "
                       "re-pin with pin=VERSION"),
        (added("cache: {dir: x}"), "'cache' is not part of a pin"),
        (added("force: true"), "'force' is not part of a pin"),
        (added("dry_run: true"), "'dry_run' is not part of a pin"),
        (added("hydra:\n  run:\n    dir: x"), "'hydra' is not part of a pin"),
        (other_seal, f"the lock was edited (lock.seal does not match the pin); {EDITED}"),
        (value_and_digest, f"the lock was edited (lock.seal does not match the pin); {EDITED}"),
        (lambda text: text.replace("  epochs: 3\n", "  epochs: 4\n", 1),
         f"train changed since it was pinned (its lock digest differs); {EDITED}"),
        (lambda text: text.replace("\n  enabled: true\n  samples:", "\n  enabled: false\n  samples:", 1),
         f"verify changed since it was pinned (its lock digest differs); {EDITED}"),
    ],
    ids=["lock removed", "artifact removed", "step key removed", "cache added", "force added", "dry_run added",
         "hydra added", "seal edited", "value and digest edited", "value edited", "verify edited"],
)
def test_every_tampering_is_refused_before_any_work(pinned, tmp_path, tamper, message):
    project = edited(pinned, tmp_path)
    text = (project / PIN).read_text()
    (project / PIN).write_text(tamper(text))
    assert (project / PIN).read_text() != text
    entries, folders = cache_entries(pinned), run_folders(pinned)
    result = run_tfbuild("recipe=pinned/digits_all-1.0", cwd=project)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"tfbuild: error: {PIN}: {message}")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stdout
    assert run_folders(pinned) == folders, "no run folder"
    assert cache_entries(pinned) == entries, "nothing new in the cache"


def test_a_pin_made_before_seals_is_refused_with_how_to_re_pin(pinned, tmp_path):
    project = edited(pinned, tmp_path)
    text = (project / PIN).read_text()
    (project / PIN).write_text(re.sub(r"\n  seal: \w+", "", text))
    result = run_tfbuild("recipe=pinned/digits_all-1.0", cwd=project)
    assert result.returncode == 2
    assert result.stderr == (
        f"tfbuild: error: {PIN}: this pin has no seal (pins made before tfbuild sealed them cannot be checked); "
        "re-pin it: tfbuild recipe=digits_all pin='1.0' pin_overwrite=true\n"
    )


@pytest.mark.parametrize(
    "override, key",
    [
        ("export.tflite.quantization=[float]", "export.tflite.quantization"),  # one that changes artifacts
        ("verify.enabled=false", "verify.enabled"),  # ... and ones that do not, yet change what "reproduced" means
        ("benchmark.min_runs=1", "benchmark.min_runs"),
        ("gates.max_bytes=100000000", "gates.max_bytes"),
        ("task.outputs.label=classification", "task.outputs.label"),
    ],
)
def test_an_override_of_a_pinned_value_is_refused(pinned, override, key):
    result = run_tfbuild("recipe=pinned/digits_all-1.0", override, cwd=pinned)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert f"this build would not use the pinned values ({key}: pinned " in line
    assert line.endswith("it may set only hydra.run.dir, cache.*, jobs, force, dry_run, allow_tool_drift, verify.node, "
                         "verify.chromium)")  # fmt: skip


def test_a_pinned_build_may_say_where_and_how_it_runs(pinned, tmp_path):
    node = shutil.which("node") or "node"
    result = run_tfbuild("recipe=pinned/digits_all-1.0", "jobs=1", f"verify.node={node}", f"hydra.run.dir={tmp_path / 'run'}",
                         cwd=pinned, check=True)  # fmt: skip
    assert "reproduced pinned/digits_all-1.0" in result.stdout


def test_an_artifact_that_differs_from_the_lock_fails_after_building(pinned, tmp_path):
    real = lock_of(pinned)["artifacts"]["tflite/int8"]["sha256"]
    project = resealed(pinned, tmp_path, lambda d: d["lock"]["artifacts"]["tflite/int8"].update(sha256="ab" * 32))
    result = run_tfbuild("recipe=pinned/digits_all-1.0", cwd=project)
    assert result.returncode == 1
    assert result.stderr.strip() == f"tfbuild: error: pin: tflite/int8 differs (sha256 {real[:12]}, locked abababababab)"


def test_a_damaged_lock_is_refused_with_what_is_wrong(pinned, tmp_path):
    real = lock_of(pinned)["artifacts"]["tflite/int8"]["sha256"]
    damaged = edited(pinned, tmp_path, real, "0" * 64)  # YAML reads it as a number
    result = run_tfbuild("recipe=pinned/digits_all-1.0", cwd=damaged)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"tfbuild: error: {PIN}: the lock is damaged (lock.artifacts.'tflite/int8' needs a 64-hex sha256 and bytes); "
        "re-pin with pin=VERSION"
    )


def test_a_tool_version_change_is_reported_before_building(pinned, tmp_path):
    numpy = lock_of(pinned)["tools"]["numpy"]
    project = resealed(pinned, tmp_path, lambda d: d["lock"]["tools"].update(numpy="1.0.0"))
    refused = run_tfbuild("recipe=pinned/digits_all-1.0", cwd=project)
    assert refused.returncode == 2
    assert f"installed tools differ from the lock (numpy 1.0.0 -> {numpy}); install the locked versions, or add " \
           "allow_tool_drift=true" in refused.stderr
    allowed = run_tfbuild("recipe=pinned/digits_all-1.0", "allow_tool_drift=true", cwd=project, check=True)
    assert "reproduced pinned/digits_all-1.0" in allowed.stdout


def test_gc_keeps_what_a_pin_needs(pinned):
    cache_tool = [str(Path(sys.executable).parent / "tfbuild-cache")]
    # Unpinned extras: a calibration the pin does not use makes new int8 steps.
    run_tfbuild("recipe=digits", *TINY, "export.tflite.quantization=int8", "data.calibration_samples=8", cwd=pinned,
                check=True)
    gc = subprocess.run([*cache_tool, "gc", "--max-size", "0"], cwd=pinned, capture_output=True, text=True, check=True)
    assert "deleted" in gc.stdout and "tflite[int8]" in gc.stdout
    assert gc.stdout.strip().endswith("32 kept for pinned recipes")
    result = run_tfbuild("recipe=pinned/digits_all-1.0", cwd=pinned, check=True)
    statuses = {s["status"] for s in json.loads((runs(pinned)[-1] / "build.json").read_text())["steps"]}
    assert statuses - {"not needed"} == {"cached"}, "every step the pin needs survived gc"
    assert "reproduced" in result.stdout


# -- a user's own builder, pinned once: its source is part of the release -------------------

BUILDER = """import tf_keras as keras


def tiny(input_shape, num_classes):
    inputs = keras.Input(input_shape)
    x = keras.layers.Dense(8, activation="relu")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x), name="tiny")
"""
RECIPE = """# @package _global_
defaults:
  - override /model: custom
model:
  _target_: my_models.tiny
train:
  epochs: 1
data:
  limit: 300
export:
  formats: [saved_model, tflite]
  tflite:
    quantization: [float]
benchmark:
  enabled: false
"""
CUSTOM_PIN = "recipes/pinned/tiny-1.10.yaml"


@pytest.fixture(scope="module")
def custom_pinned(tmp_path_factory):
    """A project with its own builder (my_models.py) and recipe, pinned as 1.10 (Hydra reads
    the unquoted 1.10 as the number 1.1: the pin must keep the text)."""
    cwd = tmp_path_factory.mktemp("custom")
    (cwd / "my_models.py").write_text(BUILDER)
    (cwd / "recipes").mkdir()
    (cwd / "recipes" / "tiny.yaml").write_text(RECIPE)
    run_tfbuild("recipe=tiny", "pin=1.10", cwd=cwd, check=True)
    return cwd


def test_a_version_keeps_its_text_and_the_pin_locks_the_builders_source(custom_pinned):
    lock = yaml.safe_load((custom_pinned / CUSTOM_PIN).read_text())["lock"]
    assert lock["version"] == "1.10"
    assert lock["files"] == {"train": {"builder": sha256_file(custom_pinned / "my_models.py")}}
    again = run_tfbuild("recipe=pinned/tiny-1.10", cwd=custom_pinned, check=True)
    assert "reproduced pinned/tiny-1.10: 2 artifacts byte-identical to the lock" in again.stdout


def test_a_changed_builder_is_named_before_training(custom_pinned, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(custom_pinned / "recipes", project / "recipes")
    (project / "outputs").symlink_to(custom_pinned / "outputs")
    (project / "my_models.py").write_text(BUILDER.replace("Dense(8", "Dense(9"))
    locked = sha256_file(custom_pinned / "my_models.py")
    now = sha256_file(project / "my_models.py")
    entries, folders = cache_entries(project), run_folders(project)
    result = run_tfbuild("recipe=pinned/tiny-1.10", cwd=project)
    assert result.returncode == 2
    assert result.stderr == (
        f"tfbuild: error: {CUSTOM_PIN}: train's input builder (my_models.py) changed since the pin (sha256 "
        f"{now[:12]}..., locked {locked[:12]}...): the release cannot be reproduced from it\n"
    )
    assert cache_entries(project) == entries, "no step ran: training would have added entries"
    assert run_folders(project) == folders
