"""The post-build policy (tfbuild/build.py) without Hydra or TensorFlow: fake steps, real
files. What a build leaves (build.json, the report, the `latest` link), how it fails, and when
a pin is written."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tfbuild.build import Build, build_exit_code, run_build
from tfbuild.errors import BuildFailed
from tfbuild.plan import make_plan

from tests.fakes import WriteStep, step

CONFIG = {"verify": {"enabled": True}, "gates": {}, "recipe": "fake", "jobs": 1}  # in this process: runs are counted


@pytest.fixture
def runs() -> Counter:
    return Counter()


def make(tmp_path: Path, name: str, *, fail: bool = False, **fields) -> Build:
    steps = [step("data"), step("train", {"data": "data"}, publish=True, fail=fail)]
    return Build(plan=make_plan(steps), recipe="fake", run_dir=tmp_path / "runs" / "fake" / name,
                 cache_dir=tmp_path / "cache", config=CONFIG, **fields)


def test_a_build_leaves_its_record_report_and_latest_link(tmp_path, runs, capsys):
    registry = {"write": WriteStep("write", runs)}
    latest = tmp_path / "runs" / "fake" / "latest"
    for name in ("1", "2"):
        build = make(tmp_path, name, latest=latest)
        build.run_dir.mkdir(parents=True)
        record = run_build(build, registry=registry)
        assert record is not None and record["status"] == "succeeded"
        assert json.loads((build.run_dir / "build.json").read_text())["steps"] == record["steps"]
        assert (build.run_dir / "report.md").is_file() and (build.run_dir / "train.txt").read_text() == "train|data"
        assert latest.is_symlink() and latest.resolve() == build.run_dir.resolve()
    assert [s["status"] for s in record["steps"]] == ["cached", "cached"] and runs == Counter(data=1, train=1)


def test_a_failed_step_fails_the_build_on_one_line_and_writes_no_pin(tmp_path, runs):
    written = []
    build = make(tmp_path, "1", fail=True, write_pin=lambda record, materials: written.append(record) or tmp_path / "p.yaml")
    build.run_dir.mkdir(parents=True)
    with pytest.raises(BuildFailed, match=r"step 'train' failed: ValueError: train was told to fail \(details: .*build.log\)"):
        run_build(build, registry={"write": WriteStep("write", runs)})
    assert written == [] and "was told to fail" in build.log_path.read_text()
    assert json.loads((build.run_dir / "build.json").read_text())["status"] == "failed"


def test_a_good_build_writes_its_pin_with_the_materials_of_every_step(tmp_path, runs):
    written = {}

    def write_pin(record, materials):
        written.update(materials)
        return tmp_path / "recipes" / "pinned" / "fake-1.yaml"

    build = make(tmp_path, "1", write_pin=write_pin)
    build.run_dir.mkdir(parents=True)
    run_build(build, registry={"write": WriteStep("write", runs)})
    assert set(written) == {"data", "train"} and written["train"]["kind"] == "write"


def test_a_pin_never_names_an_entry_gc_removed_as_the_build_ended(tmp_path, runs, monkeypatch):
    """gc may run between the end of run_plan (its use locks gone) and the pin's record: the pin
    is then refused, not written naming a removed entry."""
    import tfbuild.runner as runner
    from tfbuild.cache import Cache

    real_run_plan = runner.run_plan

    def gc_at_the_end(plan, cache, *args, **kwargs):
        result = real_run_plan(plan, cache, *args, **kwargs)
        train = next(e for e in Cache(cache.root).entries() if e.name == "train")
        assert Cache(cache.root).remove_if_unused(train)  # no build holds it any more: gc may take it
        return result

    monkeypatch.setattr(runner, "run_plan", gc_at_the_end)
    written = []
    build = make(tmp_path, "1", write_pin=lambda record, materials: written.append(record) or tmp_path / "p.yaml")
    build.run_dir.mkdir(parents=True)
    with pytest.raises(BuildFailed, match=r"cache gc removed the entries of train .*nothing was pinned"):
        run_build(build, registry={"write": WriteStep("write", runs)})
    assert written == [] and Cache(tmp_path / "cache").pinned_keys() == {}


def test_a_dry_run_builds_nothing_and_leaves_no_run_folder(tmp_path, runs, monkeypatch):
    monkeypatch.chdir(tmp_path)
    build = make(tmp_path, "1", dry_run=True)
    build.run_dir.mkdir(parents=True)
    assert run_build(build, registry={"write": WriteStep("write", runs)}) is None
    assert runs == Counter() and not build.run_dir.exists()


def test_the_exit_code_says_how_it_went(tmp_path, capsys):
    build = make(tmp_path, "1")
    build.run_dir.mkdir(parents=True)
    # Real step kinds: "write" is not one, which is a bug in the caller: exit 3, one line.
    assert build_exit_code(build) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tfbuild: error: internal error, please report it: KeyError")
    assert "Traceback" in build.log_path.read_text()
