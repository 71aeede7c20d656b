"""Discovered inputs through the installed `tfbuild`: a builder that reaches a helper past its
key (importlib.import_module, sys.path.insert, an optional import whose module appears later)
retrains when that helper changes, through the no-op shortcut too, and never serves the stale
model; a builder that opens a project file its key does not cover is refused."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from tests.conftest import run_tfbuild
from tests.integration.test_noop_shortcut import make_project, tfbuild

BUILDER = """\
import importlib
import sys

import tf_keras as keras


def build(input_shape, num_classes, width="4"):
    width = importlib.import_module("helpers.width").WIDTH
    if "lib" not in sys.path:
        sys.path.insert(0, "lib")
    import lib_width
    try:  # by name at run time, in a folder the stamp does not watch: only the hit check can tell
        EXTRA = importlib.import_module("helpers.opt").EXTRA
    except ImportError:
        EXTRA = 0
    units = width + lib_width.WIDTH + EXTRA
    inputs = keras.Input(input_shape)
    hidden = keras.layers.Dense(units, activation="relu")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(hidden))
"""
HELPERS = {"helpers/__init__.py": "", "helpers/width.py": "WIDTH = 1\n", "lib/lib_width.py": "WIDTH = 1\n"}
# Each edit, the units it gives, and the reason the train step must give.
EDITS = [
    ("helpers/width.py", "WIDTH = 2\n", 3, "input changed (read: helpers/width.py)"),
    ("lib/lib_width.py", "WIDTH = 3\n", 5, "input changed (read: lib/lib_width.py)"),
    ("helpers/opt.py", "EXTRA = 4\n", 9, "input changed (appeared: helpers/opt.py)"),
]
ONLY_MODEL = ["export.formats=[saved_model]"]


def parameters(units: int) -> int:
    return 6 * units + units + units * 2 + 2  # 6 features -> units -> 2 classes


def write(folder, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


@pytest.mark.slow
def test_an_edit_to_what_the_builder_reached_retrains_through_the_shortcut_too(tmp_path):
    project, cache = make_project(tmp_path / "project"), tmp_path / "cache"
    write(project, {"my_models.py": BUILDER, **HELPERS})
    log = {"TFBUILD_AUDIT_LOG": str(tmp_path / "audit.log")}
    _, steps = tfbuild(project, cache, *ONLY_MODEL, env=log)
    assert steps["train"]["status"] == "built" and steps["train"]["info"]["parameters"] == parameters(2)
    # Each project file a step read is declared (the builder, the data) or in its manifest.
    manifests = {m["name"]: m for m in map(json.loads, map(Path.read_text, cache.glob("entries/*/*/manifest.json")))}
    read = [line.split("\t") for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert ["train", str(project / "helpers/width.py")] in read
    for step, path in read:
        relative = os.path.relpath(importlib.util.source_from_cache(path) if path.endswith(".pyc") else path, project)
        record = manifests[step]["discovered"]
        assert relative in ("my_models.py", "data.npz") or relative in record["read"] or relative in record["absent"], path
    shortcut, steps = tfbuild(project, cache, *ONLY_MODEL, env=log)
    assert shortcut and steps["train"]["status"] == "cached"
    for name, text, units, reason in EDITS:
        write(project, {name: text})
        shortcut, steps = tfbuild(project, cache, *ONLY_MODEL, env=log)
        assert shortcut, f"the stamp stands for the command: the hit check is what notices ({name})"
        assert (steps["train"]["status"], steps["train"]["reason"]) == ("built", reason)
        assert steps["train"]["info"]["parameters"] == parameters(units), "never the stale model"
        _, steps = tfbuild(project, cache, *ONLY_MODEL, env=log)
        assert steps["train"]["status"] == "cached" and steps["train"]["info"]["parameters"] == parameters(units)


READER = """\
import tf_keras as keras


def build(input_shape, num_classes, width="4"):
    with open("width.txt") as settings:
        units = int(settings.read())
    inputs = keras.Input(input_shape)
    hidden = keras.layers.Dense(units, activation="relu")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(hidden))
"""


@pytest.mark.slow
def test_a_project_file_the_key_does_not_cover_is_refused_until_declared(tmp_path):
    project, cache = make_project(tmp_path / "project"), tmp_path / "cache"
    write(project, {"my_models.py": READER, "width.txt": "3"})
    refused = run_tfbuild("recipe=tiny", f"cache.dir={cache}", *ONLY_MODEL, cwd=project)
    assert refused.returncode != 0
    errors = [line for line in refused.stderr.splitlines() if line.startswith("tfbuild: error:")]
    assert errors and errors[-1].startswith(
        "tfbuild: error: step 'train' failed: read width.txt, which is not among its inputs: declare it with model.files"
    ), refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr
    assert not list((cache / "entries").glob("*/*/manifest.json")) or all(
        '"name": "train"' not in p.read_text() for p in (cache / "entries").glob("*/*/manifest.json")
    ), "nothing of the refused step is cached"

    declared = [*ONLY_MODEL, "model.files=[width.txt]"]
    _, steps = tfbuild(project, cache, *declared)
    assert steps["train"]["status"] == "built" and steps["train"]["info"]["parameters"] == parameters(3)
    write(project, {"width.txt": "5"})
    _, steps = tfbuild(project, cache, *declared)
    assert (steps["train"]["status"], steps["train"]["reason"]) == ("built", "input changed (file:width.txt)")
    assert steps["train"]["info"]["parameters"] == parameters(5)


def unkeyed_reads(log, plan, entries) -> list[str]:
    """Each `step<TAB>path` of an audit log that is neither one of the step's declared files
    (or under a declared folder) nor recorded in its manifest as read (a .pyc: its source) or
    as absent (opened, but not there)."""
    import importlib.util
    import os
    from pathlib import Path

    specs = {s.name: s for s in plan.steps}
    found = []
    for line in Path(log).read_text().splitlines() if Path(log).exists() else []:
        name, path = line.split("\t")
        declared = [os.path.abspath(p) for p in specs[name].files.values()]
        if any(path == d or path.startswith(d + "/") for d in declared):
            continue
        source = importlib.util.source_from_cache(path) if path.endswith(".pyc") else path
        record = entries[name]["discovered"] if name in entries else {"read": {}, "absent": []}
        relative = os.path.relpath(source, os.getcwd())
        if relative not in record["read"] and relative not in record["absent"]:
            found.append(line)
    return found


def test_every_step_kind_reads_only_what_is_keyed_or_recorded(built):
    """The property: the session's build of every export (each step kind, run under the audit
    hook with TFBUILD_AUDIT_LOG) read no file of the project that its key does not cover and
    its manifest does not record."""
    import json

    root, _, result = built
    entries = {r.spec.name: json.loads((r.entry.root / "manifest.json").read_text()) for r in result.steps
               if r.entry is not None}  # fmt: skip
    plan = type("Plan", (), {"steps": [r.spec for r in result.steps]})
    assert unkeyed_reads(root / "audit.log", plan, entries) == []
    kinds = {r.spec.kind for r in result.steps if r.status == "built"}
    assert {"data", "train", "saved_model", "verify", "benchmark"} <= kinds, kinds
    assert all("discovered" in manifest for manifest in entries.values())
