"""The no-op shortcut (tfbuild/stamp.py), through the installed `tfbuild`: a repeated command
builds without Hydra and leaves the same build; every kind of change that shaped the build
is still noticed (recipe and conf edits, overrides, data and builder files, environment,
tool versions, tfbuild's own source), and a damaged stamp is never trusted."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from tests.conftest import PROJECT_ROOT, run_tfbuild
from tests.integration.test_cli import probe, run_dirs

# Says on stderr which way the command went: the shortcut never imports Hydra.
PROBE = probe('"SHORTCUT=" + str("hydra" not in sys.modules)')
RECIPE = """\
# @package _global_
defaults:
  - override /model: custom
  - override /data: npz
model:
  _target_: my_models.build
  params:
    width: ${oc.env:TINY_WIDTH,'4'}
data:
  path: data.npz
  calibration_samples: 8
train:
  epochs: 1
  learning_rate: 0.01
verify:
  enabled: false
benchmark:
  enabled: false
"""
BUILDER = """\
import tf_keras as keras


def build(input_shape, num_classes, width="4"):
    inputs = keras.Input(input_shape)
    hidden = keras.layers.Dense(int(width), activation="relu")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(hidden))
"""


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One cache for every project here: each test trains only what no test trained before."""
    return tmp_path_factory.mktemp("cache") / "cache"


def make_project(folder: Path, seed: int = 0) -> Path:
    (folder / "recipes").mkdir(parents=True, exist_ok=True)
    (folder / "recipes" / "tiny.yaml").write_text(RECIPE)
    (folder / "my_models.py").write_text(BUILDER)
    write_data(folder, seed)
    return folder


def write_data(folder: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(120, 6)).astype(np.float32)
    np.savez(folder / "data.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))


def tfbuild(cwd: Path, cache: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[bool, dict[str, dict]]:
    """(whether the shortcut built it, the build's steps by name)."""
    result = run_tfbuild("recipe=tiny", f"cache.dir={cache}", *extra, cwd=cwd, python_code=PROBE, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    shortcut = "SHORTCUT=True" in result.stderr
    record = json.loads((run_dirs(cwd)[-1] / "build.json").read_text())
    return shortcut, {s["name"]: s for s in record["steps"]}


def statuses(steps: dict[str, dict]) -> dict[str, str]:
    return {name: s["status"] for name, s in steps.items()}


ALL_CACHED = {"data": "cached", "train": "cached", "saved_model": "cached"}


def test_a_repeated_command_builds_without_hydra_and_leaves_the_same_build(tmp_path, shared_cache):
    project = make_project(tmp_path)
    first, first_steps = tfbuild(project, shared_cache)
    again, again_steps = tfbuild(project, shared_cache)
    assert not first and again, "the first build goes through Hydra, the repeat takes the stamp"
    assert statuses(again_steps) == ALL_CACHED
    assert {n: s["key"] for n, s in again_steps.items()} == {n: s["key"] for n, s in first_steps.items()}

    runs = run_dirs(project)
    records = [json.loads((run / "build.json").read_text()) for run in runs]
    assert records[0]["artifacts"] == records[1]["artifacts"] and records[0]["config"] == records[1]["config"]
    assert (runs[1] / "saved_model" / "saved_model.pb").read_bytes() == (runs[0] / "saved_model" / "saved_model.pb").read_bytes()
    # Hydra's record of the run is there as Hydra writes it, naming its own folder.
    assert (runs[1] / ".hydra" / "config.yaml").read_text() == (runs[0] / ".hydra" / "config.yaml").read_text()
    assert f"output_dir: {runs[1]}" in (runs[1] / ".hydra" / "hydra.yaml").read_text()
    latest = project / "outputs" / "runs" / "tiny" / "latest"
    assert latest.is_symlink() and latest.resolve() == runs[1].resolve()
    assert not os.path.isabs(os.readlink(latest)), "a relative link survives moving the runs folder"


def edit_recipe(project: Path) -> None:
    path = project / "recipes" / "tiny.yaml"
    path.write_text(path.read_text().replace("learning_rate: 0.01", "learning_rate: 0.02"))


def edit_builder(project: Path) -> None:
    path = project / "my_models.py"
    path.write_text(path.read_text() + "\n# a comment is still an edit of the builder's source\n")


def fake_newer_tf_keras(project: Path) -> None:
    """tf-keras 99.0 as importlib.metadata sees it (tfbuild puts the project folder first on
    sys.path, as `python -m` does); the module itself stays the installed one."""
    dist = project / "tf_keras-99.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tf-keras\nVersion: 99.0\n")


# (change, extra arguments, environment, expected: shortcut taken, statuses, why the first rebuilt step runs)
CHANGES: dict[str, tuple[Callable[[Path], None], list[str], dict[str, str], bool, dict[str, str], str]] = {
    "an override": (lambda p: None, ["train.epochs=2"], {}, False,
                    {"data": "cached", "train": "built", "saved_model": "built"}, "params changed"),
    "a recipe edit": (edit_recipe, [], {}, False,
                      {"data": "cached", "train": "built", "saved_model": "built"}, "params changed"),
    "the data file": (lambda p: write_data(p, seed=1), [], {}, False,
                      {"data": "built", "train": "built", "saved_model": "built"}, "input changed"),
    # Retrained to the very same weights (training is deterministic): the SavedModel is reused.
    "the builder's source": (edit_builder, [], {}, False,
                             {"data": "cached", "train": "built", "saved_model": "cached"}, "input changed"),
    "an environment variable the recipe reads": (lambda p: None, [], {"TINY_WIDTH": "6"}, False,
                                                 {"data": "cached", "train": "built", "saved_model": "built"}, "params changed"),
    "a tool version": (fake_newer_tf_keras, [], {}, True,
                       {"data": "cached", "train": "built", "saved_model": "built"}, "tool version changed"),
}  # fmt: skip


@pytest.mark.parametrize("change", list(CHANGES))
def test_every_change_that_shaped_the_build_is_noticed(change, tmp_path, shared_cache):
    edit, extra, env, shortcut_expected, expected, reason = CHANGES[change]
    project = make_project(tmp_path)
    tfbuild(project, shared_cache)
    assert tfbuild(project, shared_cache)[0], "the repeat takes the stamp"

    edit(project)
    shortcut, steps = tfbuild(project, shared_cache, *extra, env=env)
    assert shortcut == shortcut_expected
    assert statuses(steps) == expected
    first_built = next(s for s in steps.values() if s["status"] == "built")  # steps are in plan order
    assert first_built["reason"].startswith(reason), first_built["reason"]
    # ... and the new state is stamped in turn: its repeat is a shortcut with nothing to build.
    again, steps = tfbuild(project, shared_cache, *extra, env=env)
    assert again and statuses(steps) == ALL_CACHED


def stamps(cache: Path, project: Path) -> list[Path]:
    found = sorted((cache / "stamps").glob("*.json"), key=lambda p: p.stat().st_mtime)
    assert found
    return [p for p in found if p.is_file() and json.loads(p.read_text()).get("cwd") == str(project)]


@pytest.mark.parametrize("damage", ["edited plan", "edited seal", "truncated", "a folder in its place", "not JSON"])
def test_a_damaged_stamp_is_never_trusted(damage, tmp_path, shared_cache):
    project = make_project(tmp_path)
    tfbuild(project, shared_cache)
    (stamp,) = stamps(shared_cache, project)
    text = stamp.read_text()
    document = json.loads(text)
    if damage == "edited plan":  # a different training, under the old seal
        train = next(s for s in document["plan"] if s["name"] == "train")
        train["params"]["epochs"] = 7
        stamp.write_text(json.dumps(document))
    elif damage == "edited seal":
        document["seal"] = "0" * 64
        stamp.write_text(json.dumps(document))
    elif damage == "truncated":
        stamp.write_text(text[: len(text) // 2])
    elif damage == "a folder in its place":
        stamp.unlink()
        stamp.mkdir()
    else:
        stamp.write_text("\x00\xff garbage")
    shortcut, steps = tfbuild(project, shared_cache)
    assert not shortcut and statuses(steps) == ALL_CACHED
    assert tfbuild(project, shared_cache)[0], "that build stamped the command anew"


def test_edits_to_tfbuilds_conf_and_source_are_noticed(tmp_path, shared_cache):
    """In a copy of tfbuild (first on PYTHONPATH), so the checkout under test stays as it is."""
    copy = tmp_path / "tfbuild-copy"
    for part in ("tfbuild", "conf", "recipes"):
        shutil.copytree(PROJECT_ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": str(copy)}
    project = make_project(tmp_path / "project")
    tfbuild(project, shared_cache, env=env)
    assert tfbuild(project, shared_cache, env=env)[0]

    source = copy / "tfbuild" / "plan.py"
    source.write_text(source.read_text() + "\n# an edit of tfbuild itself\n")
    shortcut, steps = tfbuild(project, shared_cache, env=env)
    assert not shortcut and statuses(steps) == ALL_CACHED
    assert tfbuild(project, shared_cache, env=env)[0]

    conf = copy / "conf" / "config.yaml"
    conf.write_text(conf.read_text().replace("  batch_size: 32 ", "  batch_size: 16 ", 1))
    shortcut, steps = tfbuild(project, shared_cache, env=env)
    assert not shortcut and statuses(steps) == {"data": "cached", "train": "built", "saved_model": "built"}
    assert steps["train"]["reason"].startswith("params changed")


def test_commands_a_stamp_never_stands_for_go_through_hydra(tmp_path, shared_cache):
    project = make_project(tmp_path)
    for extra in (["dry_run=true"], ["hydra.run.dir=elsewhere"]):
        for _ in range(2):
            result = run_tfbuild("recipe=tiny", f"cache.dir={shared_cache}", *extra, cwd=project, python_code=PROBE)
            assert result.returncode == 0 and "SHORTCUT=False" in result.stderr, result.stderr
    assert not (project / "outputs" / "runs" / "tiny" / "latest").exists(), "a dry run leaves no run folder to link"
    assert not (project / "elsewhere" / "latest").exists() and not (project / "latest").exists()


# -- a stale plan is never reused (issue 24): what a stat of the watched paths alone missed ----
# Each case stamps a project, changes it, and shows that the next command plans again (the
# stale plan would have kept the old config, or the old key), then that the new state is
# stamped in turn. A config-only change sets data.calibration_samples, which no step of this
# plan reads: the build then costs no training, and only its recorded config tells a fresh
# plan from a stale one. Values are the test's own, so no other test cached the rebuilt keys.


def relink(path: Path, store: Path) -> Path:
    """Move `path` into `store` and leave a link in its place: where the user's file now lives."""
    store.mkdir(exist_ok=True)
    target = store / path.name
    path.rename(target)
    path.symlink_to(os.path.relpath(target, path.parent))
    return target


def set_calibration(recipe: Path, value: str) -> None:
    recipe.write_text(recipe.read_text().replace("calibration_samples: 8", f"calibration_samples: {value}"))


def calibration_from_env(form: str) -> Callable[[Path], None]:
    def setup(project: Path) -> None:
        set_calibration(project / "recipes" / "tiny.yaml", form)

    return setup


OPTIONAL_MODULE = BUILDER.replace("import tf_keras as keras\n", """import tf_keras as keras

try:
    from helpers_opt import WIDTH
except ImportError:
    WIDTH = 4
""").replace("int(width)", "int(WIDTH)")


def optional_module(project: Path) -> None:
    (project / "my_models.py").write_text(OPTIONAL_MODULE)


def calibration(steps_run: Path) -> int:
    return json.loads((steps_run / "build.json").read_text())["config"]["data"]["calibration_samples"]


# (set the project up, change it, environment after the change, statuses, what the fresh plan shows:
#  data.calibration_samples recorded, or the first rebuilt step's reason)
STALE: dict[str, tuple[Callable[[Path], None], Callable[[Path], None], dict[str, str], dict[str, str], int | str]] = {
    "a linked recipe, edited at its target": (
        lambda p: relink(p / "recipes" / "tiny.yaml", p / "shared"),
        lambda p: set_calibration(p / "shared" / "tiny.yaml", "11"), {}, ALL_CACHED, 11),
    "oc.env with a double-quoted name": (
        calibration_from_env('${oc.env:"TINY_CAL",8}'), lambda p: None, {"TINY_CAL": "12"}, ALL_CACHED, 12),
    "oc.env with a single-quoted name and spaces": (
        calibration_from_env("\"${oc.env: 'TINY_CAL' , 8}\""), lambda p: None, {"TINY_CAL": "13"}, ALL_CACHED, 13),
    "a builder's optional module appearing": (
        optional_module, lambda p: (p / "helpers_opt.py").write_text("WIDTH = 5\n"), {},
        {"data": "cached", "train": "built", "saved_model": "built"}, "input changed (builder:helpers_opt.py)"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(STALE))
def test_a_stale_plan_is_never_reused(case, tmp_path, shared_cache):
    setup, change, env, expected, fresh = STALE[case]
    project = make_project(tmp_path)
    setup(project)
    tfbuild(project, shared_cache)
    assert tfbuild(project, shared_cache)[0], "the repeat takes the stamp: the setup keeps the shortcut"

    change(project)
    shortcut, steps = tfbuild(project, shared_cache, env=env)
    assert not shortcut, "planned again: the stamp's plan is stale"
    assert statuses(steps) == expected
    if isinstance(fresh, int):
        assert calibration(run_dirs(project)[-1]) == fresh
    else:
        first_built = next(s for s in steps.values() if s["status"] == "built")
        assert first_built["reason"].startswith(fresh), first_built["reason"]
    again, steps = tfbuild(project, shared_cache, env=env)
    assert again and statuses(steps) == ALL_CACHED


def test_a_recipes_folder_made_after_the_stamp_is_noticed(tmp_path, shared_cache):
    """`recipe=tiny` first found in tfbuild's own recipes/ (a copy of tfbuild, first on
    PYTHONPATH), then in a ./recipes the user makes: the user's wins, from the next command on."""
    copy = tmp_path / "tfbuild-copy"
    for part in ("tfbuild", "conf", "recipes"):
        shutil.copytree(PROJECT_ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": str(copy)}
    project = make_project(tmp_path / "project")
    (project / "recipes" / "tiny.yaml").rename(copy / "recipes" / "tiny.yaml")
    (project / "recipes").rmdir()
    tfbuild(project, shared_cache, env=env)
    assert tfbuild(project, shared_cache, env=env)[0]

    (project / "recipes").mkdir()
    (project / "recipes" / "tiny.yaml").write_text(RECIPE.replace("calibration_samples: 8", "calibration_samples: 14"))
    shortcut, steps = tfbuild(project, shared_cache, env=env)
    assert not shortcut and statuses(steps) == ALL_CACHED and calibration(run_dirs(project)[-1]) == 14
    assert tfbuild(project, shared_cache, env=env)[0]


TFRECORD_RECIPE = RECIPE.replace("  - override /data: npz", "  - override /data: tfrecord").replace(
    "  path: data.npz\n",
    "  path: PATTERN\n  spec: {x: {dtype: float32, shape: [6]}, y: {dtype: int64, shape: []}}\n  label: y\n",
)


def shard(path: Path, seed: int) -> None:
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for x in rng.normal(size=(40, 6)).astype(np.float32):
            example = tf.train.Example(features=tf.train.Features(feature={
                "x": tf.train.Feature(float_list=tf.train.FloatList(value=x)),
                "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(x[0] > 0)])),
            }))  # fmt: skip
            writer.write(example.SerializeToString())


@pytest.mark.parametrize(("pattern", "shards", "new", "seed"), [
    # A new match in a folder the glob looks into (the folders a glob reads, for every form of
    # glob, are tests/unit/test_stamp.py's).
    ("shards/*/part.tfrecord", ["shards/1/part.tfrecord", "shards/3/part.tfrecord"], "shards/2/part.tfrecord", 60),
])  # fmt: skip
def test_a_new_file_matching_a_tfrecord_glob_is_noticed(tmp_path, shared_cache, pattern, shards, new, seed):
    project = make_project(tmp_path)
    (project / "recipes" / "tiny.yaml").write_text(TFRECORD_RECIPE.replace("PATTERN", pattern))
    (project / "shards" / "2").mkdir(parents=True)  # listed by a glob `shards/*/...`, no match in it yet
    for i, name in enumerate(shards):
        shard(project / name, seed + i)
    tfbuild(project, shared_cache)
    assert tfbuild(project, shared_cache)[0]

    shard(project / new, seed + 9)
    shortcut, steps = tfbuild(project, shared_cache)
    assert not shortcut and statuses(steps) == {"data": "built", "train": "built", "saved_model": "built"}
    assert steps["data"]["reason"].startswith("input changed (source."), steps["data"]["reason"]
    assert tfbuild(project, shared_cache)[0]
