"""Pinned recipes, as a release manager uses them: pin a build, rebuild it from an empty cache
byte for byte, and have every tampering refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY, run_tfbuild

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
    import yaml

    pin = yaml.safe_load(text)
    assert pin["train"]["epochs"] == 3 and pin["data"]["limit"] == 600, "every value explicit"
    assert pin["defaults"] == [{"override /model": "cnn"}, {"override /data": "digits"}, {"override /target": "cpu"},
                               {"override /optimize": "none"}]
    lock = pin["lock"]
    assert set(lock["tools"]) >= {"tensorflow", "tf-keras", "tensorflowjs", "tensorflow-model-optimization",
                                  "ai-edge-litert", "numpy", "python", "platform"}
    assert len(lock["artifacts"]) == 10 and all(len(a["sha256"]) == 64 and a["bytes"] > 0 for a in lock["artifacts"].values())
    assert "cache" not in pin and "pin" not in pin, "where and how a build runs is not pinned"


def test_rebuild_from_an_empty_cache_is_byte_identical(pinned):
    result = run_tfbuild("recipe=pinned/digits_all-1.0", "cache.dir=fresh_cache", cwd=pinned, check=True)
    assert "reproduced pinned/digits_all-1.0: 10 artifacts byte-identical to the lock" in result.stdout
    record = json.loads((runs(pinned)[-1] / "build.json").read_text())
    assert {s["status"] for s in record["steps"]} == {"built"}, "nothing came from a cache"
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


def edited(pinned: Path, tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the project whose pin has `old` replaced by `new` (the shared one stays intact)."""
    copy = tmp_path / "project"
    (copy / "recipes" / "pinned").mkdir(parents=True)
    (copy / "outputs").symlink_to(pinned / "outputs")
    text = (pinned / PIN).read_text()
    assert old in text
    (copy / PIN).write_text(text.replace(old, new, 1))
    return copy


def test_a_changed_value_in_the_pin_is_refused(pinned, tmp_path):
    project = edited(pinned, tmp_path, "  epochs: 3\n", "  epochs: 4\n")
    result = run_tfbuild("recipe=pinned/digits_all-1.0", cwd=project)
    assert result.returncode == 2
    assert result.stderr.startswith(
        "tfbuild: error: recipes/pinned/digits_all-1.0.yaml: train changed since it was pinned (its lock digest "
        "differs); a pin is not edited"
    )


def test_an_override_of_a_pinned_value_is_refused(pinned):
    result = run_tfbuild("recipe=pinned/digits_all-1.0", "export.tflite.quantization=[float]", cwd=pinned)
    assert result.returncode == 2
    assert "this build would not use the pinned values (export.tflite.quantization" in result.stderr


def test_a_tampered_artifact_digest_fails_naming_the_artifact(pinned, tmp_path):
    import yaml

    lock = yaml.safe_load((pinned / PIN).read_text())["lock"]
    real = lock["artifacts"]["tflite/int8"]["sha256"]
    project = edited(pinned, tmp_path, real, "ab" * 32)
    result = run_tfbuild("recipe=pinned/digits_all-1.0", cwd=project)
    assert result.returncode == 1
    assert result.stderr.strip() == f"tfbuild: error: pin: tflite/int8 differs (sha256 {real[:12]}, locked abababababab)"
    damaged = edited(pinned, tmp_path / "damaged", real, "0" * 64)  # YAML reads it as a number
    result = run_tfbuild("recipe=pinned/digits_all-1.0", cwd=damaged)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "tfbuild: error: recipes/pinned/digits_all-1.0.yaml: the lock is damaged (lock.artifacts.tflite/int8 needs "
        "a 64-hex sha256 and bytes); re-pin with pin=VERSION"
    )


def test_a_tool_version_change_is_reported_before_building(pinned, tmp_path):
    import yaml

    numpy = yaml.safe_load((pinned / PIN).read_text())["lock"]["tools"]["numpy"]
    project = edited(pinned, tmp_path, f"    numpy: {numpy}\n", "    numpy: 1.0.0\n")
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
    assert statuses == {"cached"}, "every step the pin needs survived gc"
    assert "reproduced" in result.stdout
