"""The no-op shortcut's parts (tfbuild/stamp.py): which commands a stamp may stand for, where
its cache is, the run folder it makes, the plan kept exactly, and damaged stamps refused."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tfbuild import stamp
from tfbuild.build import Build
from tfbuild.cache import Cache
from tfbuild.plan import OutputSpec, StepSpec, make_plan
from tfbuild.project import CONF_DIR
from tfbuild.run_folder import latest_link

PATTERN = "outputs/runs/${tfbuild_run_name:${hydra:runtime.choices.recipe}}/${now:%Y-%m-%d_%H-%M-%S-%f}"


@pytest.mark.parametrize(("args", "usable"), [
    (["recipe=digits", "train.epochs=2", "+model.params.width=3", "~gates"], True),
    (["-m", "recipe=digits"], False),
    (["--cfg", "job"], False),
    (["recipe=digits", "hydra.run.dir=x"], False),
    (["recipe=digits", "hydra/launcher=joblib"], False),
    (["recipe=digits", "++hydra.job.chdir=true"], False),
])  # fmt: skip
def test_a_stamp_stands_only_for_plain_overrides(args, usable):
    assert stamp.usable(args) is usable


def test_the_cache_is_where_the_arguments_say(tmp_path):
    assert stamp._cache_dir_for([], tmp_path) == tmp_path / "outputs" / "cache"
    assert stamp._cache_dir_for(["cache.dir=a", "cache.dir=/abs/b"], tmp_path) == Path("/abs/b")
    assert stamp._cache_dir_for(["++cache.dir=c"], tmp_path) == tmp_path / "c"
    assert stamp._cache_dir_for(["cache.dir=${oc.env:X}"], tmp_path) is None


def build_for(tmp_path: Path, run_dir: Path, plan=None) -> Build:
    plan = plan or make_plan([StepSpec("data", "data", {"limit": 5})])
    return Build(plan=plan, recipe="digits", run_dir=run_dir, cache_dir=tmp_path / "cache",
                 config={"verify": {"enabled": True}, "gates": {}, "target": {"strategy": "default"}})


def test_the_run_folder_pattern_keeps_only_its_time_stamps_to_fill(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    made = tmp_path / "outputs/runs/digits/2026-11-22_10-00-00-123456"
    assert stamp._run_dir_template(PATTERN, build_for(tmp_path, made)) == "outputs/runs/digits/${now:%Y-%m-%d_%H-%M-%S-%f}"
    # Another interpolation, or a pattern that does not give the folder Hydra made: no stamp.
    assert stamp._run_dir_template("out/${oc.env:USER}/${now:%H}", build_for(tmp_path, tmp_path / "out/me/10")) is None
    assert stamp._run_dir_template(PATTERN, build_for(tmp_path, tmp_path / "elsewhere/1")) is None


def test_latest_is_linked_only_beside_time_stamped_run_folders(tmp_path):
    run = tmp_path / "outputs/runs/digits/2026"
    assert latest_link(run, PATTERN) == run.parent / "latest"
    assert latest_link(tmp_path / "mine", "mine") is None  # hydra.run.dir=mine: the parent is the user's


def test_the_plan_survives_json_exactly():
    plan = make_plan([
        StepSpec("data", "data", {"shape": (8, 8), "names": ["a", "b"], "nested": {"t": (1, (2, 3))}, "none": None},
                 outputs=(OutputSpec("split", "data", "split"),), files={"source": "/x/data.npz"}),
        StepSpec("train", "train", {"epochs": 3}, {"data": "data"},
                 (OutputSpec("model", "model", "model", publish="model", format="saved_model"),)),
    ])
    again = stamp._plan_from(json.loads(json.dumps(stamp._plan_document(plan))))
    assert again == plan and isinstance(again.steps[0].params["shape"], tuple)


def test_a_stamp_whose_seal_does_not_hold_is_not_read(tmp_path):
    document = {"format": stamp.FORMAT, "args": ["recipe=digits"], "plan": []}
    assert stamp._read(json.dumps({**document, "seal": stamp._seal(document)})) == document
    for text in (json.dumps({**document, "args": ["recipe=other"], "seal": stamp._seal(document)}),
                 json.dumps(document), "[1, 2]", '{"seal": 1', "", None):
        assert stamp._read(text) is None, text


def test_only_this_users_own_stamps_are_read(tmp_path):
    """A stamp decides what a command builds: one that others could write, or a link to
    somewhere else, is not taken (in a cache shared between people)."""
    Cache.write_stamp(tmp_path, "a", "{}")
    path = Cache.stamp_file(tmp_path, "a")
    assert oct(path.stat().st_mode & 0o777) == "0o600" and Cache.read_stamp(tmp_path, "a") == "{}"
    path.chmod(0o666)
    assert Cache.read_stamp(tmp_path, "a") is None
    path.chmod(0o600)
    other = tmp_path / "elsewhere.json"
    other.write_text("{}")
    other.chmod(0o600)
    Cache.stamp_file(tmp_path, "b").symlink_to(other)
    assert Cache.read_stamp(tmp_path, "b") is None and Cache.read_stamp(tmp_path, "missing") is None


def test_a_file_changed_a_moment_ago_is_known_by_its_content(tmp_path):
    recent = tmp_path / "recipe.yaml"
    recent.write_text("a: 1\n")
    fingerprint = stamp._fingerprint(str(recent))
    assert "content" in fingerprint, "changed within the racy window: its stat could not tell a second edit"
    recent.write_text("a: 1\n")  # the same bytes again
    assert stamp._still(str(recent), fingerprint)
    recent.write_text("a: 2\n")
    assert not stamp._still(str(recent), fingerprint)


def test_an_older_file_is_known_by_its_stat_and_a_missing_one_must_stay_missing(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("a: 1\n")
    settled = time.time_ns() - 2 * stamp.RACY_NS
    fingerprint = {"stat": [*stamp.stat_signature(os.lstat(old))]}
    assert stamp._still(str(old), fingerprint)
    os.utime(old, ns=(settled, settled))  # even a change of times alone is a change
    assert not stamp._still(str(old), fingerprint)
    missing = str(tmp_path / "conf")
    assert stamp._fingerprint(missing) is None and stamp._still(missing, None)
    Path(missing).mkdir()
    assert not stamp._still(missing, None)


def test_what_a_stamp_watches_covers_the_config_trees_and_tfbuild_itself(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.npz").write_bytes(b"x")
    plan = make_plan([StepSpec("data", "data", files={"source": str(tmp_path / "data.npz")})])
    watched = set(stamp._watched(plan))
    assert str(CONF_DIR / "config.yaml") in watched and str(CONF_DIR / "target") in watched
    assert str(Path(stamp.__file__)) in watched and str(tmp_path / "data.npz") in watched
    assert str(tmp_path / "conf") in watched, "a ./conf made later is noticed"
    assert not any("__pycache__" in path for path in watched)


# -- what a stamp must notice that a stat of the path alone misses (issue 24) -------------------


def settled(path: Path, follow: bool) -> dict:
    """A fingerprint as taken of an old file: by stat (a link's and its target's)."""
    fingerprint = {"stat": [*stamp.stat_signature(os.lstat(path))]}
    if path.is_symlink():
        fingerprint["target"] = {"stat": [*stamp.stat_signature(os.stat(path))]} if follow else None
    return fingerprint


@pytest.mark.parametrize("how", ["by stat", "by content"])
@pytest.mark.parametrize("chain", [1, 2])
def test_a_link_edited_at_its_target_is_noticed(tmp_path, how, chain):
    """A recipe, conf file, builder module or data file may be a link: editing the file it
    names leaves the link itself as it was."""
    target = tmp_path / "shared" / "recipe.yaml"
    target.parent.mkdir()
    target.write_text("lr: 1\n")
    link = target
    for i in range(chain):  # recipes/tiny.yaml -> shared/recipe.yaml (or through one more link)
        nearer = tmp_path / f"link{i}.yaml"
        nearer.symlink_to(link)
        link = nearer
    fingerprint = settled(link, follow=True) if how == "by stat" else stamp._fingerprint(str(link))
    assert "target" in fingerprint and stamp._still(str(link), fingerprint)
    target.write_text("lr: 2\n")
    assert not stamp._still(str(link), fingerprint)


def test_a_dangling_link_must_stay_dangling(tmp_path):
    link = tmp_path / "recipes" / "tiny.yaml"
    link.parent.mkdir()
    link.symlink_to(tmp_path / "later.yaml")
    fingerprint = stamp._fingerprint(str(link))
    assert fingerprint["target"] is None and stamp._still(str(link), fingerprint)
    (tmp_path / "later.yaml").write_text("lr: 1\n")
    assert not stamp._still(str(link), fingerprint)


def test_the_trees_a_stamp_watches_are_walked_through_links(tmp_path):
    shared = tmp_path / "shared"
    (shared / "deep").mkdir(parents=True)
    (shared / "deep" / "team.yaml").write_text("a: 1\n")
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "team").symlink_to(shared, target_is_directory=True)
    (recipes / "loop").symlink_to(recipes, target_is_directory=True)
    (recipes / "gone.yaml").symlink_to(tmp_path / "nowhere")
    (recipes / "__pycache__").mkdir()
    watched = {str(p) for p in stamp._tree(recipes)}
    assert str(recipes / "team" / "deep" / "team.yaml") in watched, "inside a linked folder"
    assert {str(recipes / "loop"), str(recipes / "gone.yaml")} <= watched, "watched as they are, not entered"
    assert not any("__pycache__" in p for p in watched)


@pytest.mark.parametrize(("text", "names"), [
    ("${oc.env:WIDTH}", ["WIDTH"]),
    ('${oc.env:"WIDTH"}', ["WIDTH"]),
    ("${oc.env:'WIDTH',4}", ["WIDTH"]),
    ("${oc.env: 'WIDTH' , '4'}", ["WIDTH"]),
    ('x ${oc.env:A} y ${oc.env:"B",${oc.env:C,1}}', ["A", "B", "C"]),
    ("${oc.env:MY-VAR.X,1}", ["MY-VAR.X"]),
    ("no env here", []),
    ("${oc.env:${other}}", None),  # which variable: OmegaConf's to say, at compose time
    (r"${oc.env:'WID\'TH'}", None),
    ("${oc.env:}", None),
])  # fmt: skip
def test_every_oc_env_name_is_read_or_the_config_is_not_stamped(text, names):
    assert stamp.env_names([text]) == names


def test_oc_env_names_are_read_from_the_config_as_yaml_quotes_them(tmp_path):
    from omegaconf import OmegaConf

    config = OmegaConf.create({"a": "${oc.env:'W1',4}", "b": {"c": ['${oc.env:"W2"}']}})
    assert stamp.env_names(stamp._strings(OmegaConf.to_yaml(config))) == ["W1", "W2"]


def test_recipe_and_conf_folders_not_made_yet_are_watched(tmp_path):
    from tfbuild.project import config_dirs, recipe_dirs

    assert tmp_path / "recipes" in config_dirs(tmp_path) and tmp_path / "conf" in config_dirs(tmp_path)
    assert tmp_path / "recipes" not in recipe_dirs(tmp_path), "Hydra searches only folders that exist"


@pytest.mark.parametrize(("pattern", "folders"), [
    ("data/*.tfrecord", ["data"]),
    ("data/part-[0-9].tfrecord", ["data"]),
    ("data/*/x.tfrecord", ["data", "data/a", "data/b"]),
    ("data/*/sub/*.tfrecord", ["data", "data/a", "data/b", "data/b/sub"]),
    ("*.tfrecord", ["."]),
])  # fmt: skip
def test_a_tfrecord_glob_watches_every_folder_it_reads(tmp_path, monkeypatch, pattern, folders):
    from tfbuild.datasets.sources.tfrecord import glob_folders

    monkeypatch.chdir(tmp_path)
    for folder in ("data/a", "data/b/sub"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "data" / "note.txt").write_text("not a folder")
    assert glob_folders(pattern) == sorted(str(tmp_path / f) if f != "." else str(tmp_path) for f in folders)
    assert glob_folders(str(tmp_path / pattern)) == glob_folders(pattern), "absolute or relative alike"


@pytest.mark.parametrize(("source", "extra", "watched"), [
    ("try:\n    from helpers_opt import WIDTH\nexcept ImportError:\n    WIDTH = 8\n", {}, ["."]),
    ("def build(input_shape, num_classes):\n    import helpers_opt\n", {}, ["."]),
    ("from pkg import opt\n", {"pkg/__init__.py": ""}, ["pkg"]),
    ("from pkg.sub import opt\n", {"pkg/__init__.py": "", "pkg/sub/__init__.py": ""}, ["pkg/sub"]),
    ("from . import opt\n", {}, []),  # my_models is no package: nothing could appear
    ("from helpers import VALUE\n", {"helpers.py": "VALUE = 1\n"}, []),  # a plain module has no submodules
])  # fmt: skip
def test_where_a_missing_module_would_appear_is_watched(tmp_path, monkeypatch, source, extra, watched):
    import sys

    from tfbuild import project
    from tfbuild.builder_source import user_builder

    monkeypatch.setattr(project, "_PLANNING_WATCHED", set())
    (tmp_path / "my_models.py").write_text(source + "\ndef build(input_shape, num_classes):\n    pass\n")
    for name, text in extra.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    user_builder("my_models.build", [], [str(tmp_path), *sys.path])
    mine = [p for p in project.planning_watched() if Path(p).is_relative_to(tmp_path)]
    assert mine == sorted(str(tmp_path / w) if w != "." else str(tmp_path) for w in watched)
