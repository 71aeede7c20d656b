"""The runner with fake steps: what runs, what is reused, and the reason given for each."""

import os
from collections import Counter
from pathlib import Path

import pytest

from tfbuild import keys
from tfbuild.cache import Cache
from tfbuild.plan import OutputSpec, StepSpec, make_plan
from tfbuild.runner import BUILT, CACHED, FAILED, NOT_NEEDED, SKIPPED, TO_BUILD, run_plan

from tests.fakes import EventReporter, WriteStep, step


@pytest.fixture
def runs():
    return Counter()


@pytest.fixture
def build(tmp_path, runs):
    cache = Cache(tmp_path / "cache")
    registry = {"write": WriteStep("write", runs)}

    def _build(steps, **kwargs):
        return run_plan(make_plan(steps), cache, registry, scope="recipe", **kwargs)

    return _build


def chain(**params):
    """data -> train -> export, like the real pipeline; params go to the named step."""
    return [
        step("data", **params.get("data", {})),
        step("train", {"data": "data"}, **params.get("train", {})),
        step("export", {"model": "train"}, publish=True, **params.get("export", {})),
    ]


def summary(result):
    return {r.spec.name: (r.status, r.reason) for r in result.steps}


def test_first_build_runs_everything_then_nothing(build, runs):
    first = build(chain())
    assert summary(first) == {n: (BUILT, "not in cache") for n in ("data", "train", "export")}
    second = build(chain())
    assert summary(second) == {n: (CACHED, "cached") for n in ("data", "train", "export")}
    assert runs == Counter(data=1, train=1, export=1)


def test_param_change_reruns_the_step_and_what_depends_on_it(build, runs):
    build(chain(train={"text": "five epochs"}))
    result = build(chain(train={"text": "three epochs"}))
    assert summary(result)["data"] == (CACHED, "cached")
    assert summary(result)["train"] == (BUILT, "params changed (text: five epochs -> three epochs)")
    assert summary(result)["export"] == (BUILT, "input changed (model)")
    assert runs == Counter(data=1, train=2, export=2)


def test_change_in_a_leaf_step_reruns_only_that_step(build, runs):
    build(chain(export={"text": "float"}))
    result = build(chain(export={"text": "int8"}))
    assert [r.status for r in result.steps] == [CACHED, CACHED, BUILT]
    assert runs["train"] == 1


def test_switching_back_reuses_the_earlier_result(build, runs):
    build(chain(export={"text": "float"}))
    build(chain(export={"text": "int8"}))
    result = build(chain(export={"text": "float"}))
    assert [r.status for r in result.steps] == [CACHED, CACHED, CACHED]
    assert runs["export"] == 2


def test_upstream_rebuild_with_identical_output_keeps_downstream_cached(build, runs):
    # A param that does not change the output (here: `note`, which WriteStep ignores).
    build(chain())
    result = build(chain(data={"note": "cosmetic"}))
    assert [r.status for r in result.steps] == [BUILT, CACHED, CACHED]


def test_tool_version_change_is_the_reason(build, runs, monkeypatch):
    build(chain())
    real = keys.tool_version
    monkeypatch.setattr(keys, "tool_version", lambda name: "99.0" if name == "pytest" else real(name))
    result = build(chain())
    assert result.steps[0].status == BUILT
    assert result.steps[0].reason.startswith("tool version changed (pytest: ")
    assert result.steps[0].reason.endswith("-> 99.0)")


def test_failure_stops_dependents_and_caches_nothing(build, runs, tmp_path):
    result = build(chain(train={"fail": True}))
    assert [r.status for r in result.steps] == [BUILT, FAILED, SKIPPED]
    assert result.failed.spec.name == "train"
    assert result.failed.error == "ValueError: train was told to fail"
    assert result.steps[2].reason == "train did not build"
    assert runs["export"] == 0
    assert not list((tmp_path / "cache" / "tmp").iterdir()), "the failed step's temp folder is gone"
    again = build(chain(train={"fail": True}))
    assert runs["train"] == 2, "a failure is never cached"
    assert again.failed is not None


def test_a_failure_skips_only_its_dependents(build, runs):
    steps = [*chain(train={"fail": True}), step("other", {"data": "data"}, publish=True)]
    result = build(steps)
    assert summary(result) == {
        "data": (BUILT, "not in cache"),
        "train": (FAILED, "not in cache"),
        "export": (SKIPPED, "train did not build"),
        "other": (BUILT, "not in cache"),
    }
    assert [r.spec.name for r in result.failures] == ["train"]


def test_force_all_or_by_name(build, runs):
    build(chain())
    result = build(chain(), force=("train",))
    assert summary(result)["train"] == (BUILT, "forced")
    assert summary(result)["export"][0] == CACHED  # same output, so still cached
    build(chain(), force=True)
    assert runs == Counter(data=2, train=3, export=2)


def test_dry_run_builds_nothing_and_says_why(build, runs, tmp_path):
    result = build(chain(), dry_run=True)
    assert summary(result) == {
        "data": (TO_BUILD, "not in cache"),
        "train": (TO_BUILD, "after data (its input may change)"),
        "export": (TO_BUILD, "after train (its input may change)"),
    }
    assert not runs
    build(chain())
    result = build(chain(export={"text": "int8"}), dry_run=True)
    assert [r.status for r in result.steps] == [CACHED, CACHED, TO_BUILD]
    assert result.steps[2].reason == "params changed (text: - -> int8)"
    assert runs == Counter(data=1, train=1, export=1)


def test_corrupt_entry_is_rebuilt_with_the_reason(build, runs, tmp_path):
    first = build(chain())
    (first.steps[1].entry.output_path("out")).write_text("tampered!")
    result = build(chain())
    assert summary(result)["train"] == (BUILT, "cache entry corrupt (train.txt changed)")
    assert runs["train"] == 2


def test_published_artifacts_are_links_or_copies_not_paths_into_the_cache(build, tmp_path):
    run_dir = tmp_path / "run"
    result = build(chain(), run_dir=run_dir)
    published = run_dir / "export.txt"
    assert published.is_file() and not published.is_symlink()
    assert published.read_text() == result.steps[2].entry.output_path("out").read_text()
    assert not (run_dir / "train.txt").exists(), "internal outputs stay in the cache"


def test_progress_and_quiet_wrapper_are_used(build):
    reporter = EventReporter()
    quiet_calls = []

    import contextlib

    @contextlib.contextmanager
    def quiet():
        quiet_calls.append(1)
        yield

    build(chain(), reporter=reporter, quiet=quiet)
    assert reporter.events[:2] == [("start", "data"), ("end", "data", BUILT)]
    assert len(quiet_calls) == 3


def test_a_forced_build_replaces_a_corrupt_entry(build, runs, tmp_path):
    first = build(chain())
    model = first.steps[1].entry.output_path("out")
    model.chmod(0o644)
    model.write_text("tampered!")  # same key, wrong bytes: the reason a user forces a rebuild
    forced = build(chain(), force=("train",))
    assert summary(forced)["train"] == (BUILT, "forced")
    assert forced.steps[1].entry.output_path("out").read_text() == "train|data"
    assert build(chain()).steps[1].entry.output_path("out").read_text() == "train|data"


def test_published_artifacts_cannot_change_the_cache_or_other_runs(build, tmp_path):
    first = build(chain(), run_dir=tmp_path / "run1")
    build(chain(), run_dir=tmp_path / "run2")
    with open(tmp_path / "run1" / "export.txt", "a") as published:
        published.write(" appended")
    entry = first.steps[2].entry.output_path("out")
    assert entry.read_text() == "export|train|data" == (tmp_path / "run2" / "export.txt").read_text()
    assert entry.stat().st_mode & 0o777 == 0o444 and os.stat(tmp_path / "run1" / "export.txt").st_nlink == 1
    assert summary(build(chain()))["export"] == (CACHED, "cached")


def exports(*variants):
    """tflite-like steps publishing tflite/model_<variant>.tflite, as the real plan does."""
    return [StepSpec(name=f"tflite[{v}]", kind="write", params={"text": v}, inputs={"model": "train"},
                     outputs=(OutputSpec("out", f"tflite/{v}", f"model_{v}.tflite", publish=f"tflite/model_{v}.tflite",
                                         format="tflite", variant=v),)) for v in variants]  # fmt: skip


def test_a_reused_run_folder_keeps_only_this_builds_artifacts(build, tmp_path):
    run_dir = tmp_path / "run"
    build([*chain(), *exports("float", "int8")], run_dir=run_dir)
    assert sorted(p.name for p in (run_dir / "tflite").iterdir()) == ["model_float.tflite", "model_int8.tflite"]
    (run_dir / "tfjs" / "uint8").mkdir(parents=True)  # under a format's name, but not tfbuild's: it stays
    (run_dir / "mine.txt").write_text("the user's own file")
    build([*chain(), *exports("float")], run_dir=run_dir)
    # What the first build published and this one did not (the int8 model) is gone; what the
    # user made stays, whatever its name (.tfbuild/ is the record of what tfbuild published).
    assert sorted(p.name for p in run_dir.iterdir()) == [".tfbuild", "export.txt", "mine.txt", "tfjs", "tflite"]
    assert [p.name for p in (run_dir / "tflite").iterdir()] == ["model_float.tflite"]
    assert (run_dir / "tfjs" / "uint8").is_dir()


FULL_DISK = """
import resource, signal, sys
from collections import Counter
from pathlib import Path
from tfbuild.cache import Cache
from tfbuild.plan import make_plan
from tfbuild.runner import run_plan
from tests.fakes import EventReporter, WriteStep, step

root = Path(sys.argv[1])
steps = [step("big", text="x" * 300_000, publish=True), step("small", publish=True)]
run = lambda: run_plan(make_plan(steps), Cache(root / "cache"), {"write": WriteStep("write", Counter())},
                       run_dir=root / "run")
run()  # everything cached and published once
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))  # now the disk is "full" past 100 KB
result = run()
print([(r.spec.name, r.status, r.error) for r in result.steps])
"""


def test_a_full_disk_while_publishing_fails_the_step_in_one_line_and_leaves_no_truncated_file(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).parents[2]
    done = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path)], capture_output=True, text=True,
                          cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    (big, small) = eval(done.stdout)  # noqa: S307 - our own script's repr
    assert big[:2] == ("big", FAILED) and big[2].startswith("cannot publish into the run folder: File too large")
    assert "\n" not in big[2]
    assert small == ("small", CACHED, None)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".tfbuild", "small.txt"], "no truncated or temp file"
    assert len(Cache(tmp_path / "cache").lookup(big_key(tmp_path))[0].output_path("out").read_text()) == 300_000


def big_key(root):
    (entry,) = [e for e in Cache(root / "cache").entries() if e.name == "big"]
    return entry.key


def test_an_earlier_artifact_that_cannot_be_removed_stays_tfbuilds_until_a_later_build_removes_it(build, tmp_path):
    import subprocess

    run_dir = tmp_path / "run"
    build([*chain(), *exports("float", "int8")], run_dir=run_dir)
    stuck = run_dir / "tflite" / "model_int8.tflite"
    # Root deletes through file modes, so as root the file is made immutable instead.
    protect = ["chattr", "+i", str(stuck)] if os.geteuid() == 0 else ["chmod", "0555", str(stuck.parent)]
    subprocess.run(protect, check=True)
    try:
        build([*chain(), *exports("float")], run_dir=run_dir)  # the build goes ahead; int8 cannot go yet
        assert stuck.exists()
    finally:
        subprocess.run(["chattr", "-i", str(stuck)] if os.geteuid() == 0 else ["chmod", "0755", str(stuck.parent)])
    build([*chain(), *exports("float")], run_dir=run_dir)  # still recorded as tfbuild's: removed now
    assert [p.name for p in (run_dir / "tflite").iterdir()] == ["model_float.tflite"]


# -- a step that runs only if another fails (the int8 report when int8 verification fails) --


def diagnosed(fail: bool):
    """export -> check; `diagnose` reads export and runs only if check fails."""
    from dataclasses import replace

    diagnose = replace(step("diagnose", {"model": "export"}, publish=True), runs_if_failed="check")
    return [*chain(), diagnose, step("check", {"model": "export"}, fail=fail)]


def test_a_diagnosis_is_not_needed_while_its_trigger_passes(build, runs, tmp_path):
    result = build(diagnosed(fail=False), run_dir=tmp_path / "run")
    assert summary(result)["diagnose"] == (NOT_NEEDED, "check passed")
    assert runs["diagnose"] == 0 and not (tmp_path / "run" / "diagnose.txt").exists()
    assert [r.spec.name for r in result.steps][-2:] == ["check", "diagnose"], "it runs after its trigger"
    assert result.failed is None


def test_a_diagnosis_runs_when_its_trigger_fails_and_is_cached_like_any_step(build, runs, tmp_path):
    result = build(diagnosed(fail=True), run_dir=tmp_path / "run")
    assert summary(result)["check"][0] == FAILED
    assert summary(result)["diagnose"] == (BUILT, "not in cache")
    assert (tmp_path / "run" / "diagnose.txt").is_file()
    again = build(diagnosed(fail=True))
    assert summary(again)["diagnose"] == (CACHED, "cached") and runs["diagnose"] == 1


def test_a_dry_run_says_when_a_diagnosis_would_run(build):
    result = build(diagnosed(fail=True), dry_run=True)
    assert summary(result)["diagnose"] == (TO_BUILD, "only if check fails")


def test_a_diagnosis_is_skipped_with_its_trigger(build):
    steps = diagnosed(fail=False)
    steps[0] = step("data", fail=True)  # nothing downstream can run
    result = build(steps)
    assert summary(result)["check"][0] == SKIPPED
    assert summary(result)["diagnose"] == (SKIPPED, "check did not run")


def test_a_diagnosis_of_a_step_that_is_not_planned_is_refused():
    from dataclasses import replace

    from tfbuild.errors import PlanError

    with pytest.raises(PlanError, match="runs if 'verify' fails, but no step is named so"):
        make_plan([*chain(), replace(step("diagnose", {"model": "export"}), runs_if_failed="verify")])
