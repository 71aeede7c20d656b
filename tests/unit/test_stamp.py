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
