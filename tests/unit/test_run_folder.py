"""A run folder is shared with its user: tfbuild replaces or removes only what it published
there, one build uses it at a time, and `latest` is only ever tfbuild's own link. Real builds
(build.run_build) of fake steps, real files, and a real second process holding the folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from tfbuild.build import Build, run_build
from tfbuild.digests import sha256_file
from tfbuild.errors import BuildFailed, ConfigError, DataError
from tfbuild.formats import FORMATS
from tfbuild.plan import OutputSpec, StepSpec, make_plan
from tfbuild.recipes import PROJECT_ROOT
from tfbuild.run_folder import OWN, PUBLISHED, RunFolder

from tests.fakes import TreeStep, artifact

CONFIG = {"verify": {"enabled": True}, "gates": {}, "jobs": 1}  # steps run in this process
SAVED_MODEL = {"saved_model.pb": "graph", "variables/variables.index": "index"}
FIRST = {  # what the first build into the folder publishes
    "sm": ("saved_model", SAVED_MODEL),
    "int8": ("tflite/model_int8.tflite", None),
    "web": ("web/float", {"index.html": "<html>", "model/model.json": "{}"}),
}
SECOND = {  # ... and the second: the same SavedModel, another TFLite variant, no web page
    "sm": ("saved_model", SAVED_MODEL),
    "float": ("tflite/model_float.tflite", None),
    "tfjs": ("tfjs/uint8", {"model.json": "{}", "group1-shard1of1.bin": "w"}),
}
# The user's own files, under every format's folder name (but inside no artifact of tfbuild's).
USER_FILES = {f"{name}/notes.txt": f"my notes on {name}" for name in FORMATS} | {"serving/mine/model.txt": "mine"}
USER_FILES.pop("saved_model/notes.txt")  # saved_model/ is itself an artifact: see the refusals below


def plan_of(artifacts: dict, **data_params):
    steps = [StepSpec(name="data", kind="tree", params=data_params,
                      outputs=(OutputSpec(role="out", artifact="data", path="out"),))]  # fmt: skip
    for name, (publish, files) in artifacts.items():
        params = {"files": files} if files is not None else {"text": f"{name} bytes"}
        steps.append(artifact(name, publish, {"data": "data"}, **params))
    return make_plan(steps)


def build_into(run_dir: Path, artifacts: dict, runs: Counter, **data_params) -> dict:
    build = Build(plan=plan_of(artifacts, **data_params), recipe="fake", run_dir=run_dir,
                  cache_dir=run_dir.parent / "cache", config=CONFIG)  # fmt: skip
    return run_build(build, registry={"tree": TreeStep(runs)})


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` but tfbuild's log and own records, which every build rewrites."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink() and p.relative_to(folder).parts[0] not in (OWN, "build.log")}  # fmt: skip


def published(run_dir: Path) -> set[str]:
    return set(json.loads((run_dir / OWN / PUBLISHED).read_text())["published"])


@pytest.fixture()
def reused(tmp_path) -> Path:
    """A run folder a first build published into, then the user added files to."""
    run_dir = tmp_path / "run"
    build_into(run_dir, FIRST, Counter())
    for rel, text in USER_FILES.items():
        (run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / rel).write_text(text)
    return run_dir


def user_files(run_dir: Path) -> dict[str, str]:
    return {rel: (run_dir / rel).read_text() for rel in USER_FILES if (run_dir / rel).is_file()}


@pytest.mark.parametrize("fail", ["float", "tfjs"])
def test_a_rebuild_replaces_its_own_artifacts_and_keeps_the_users_files_whether_it_succeeds_or_fails(reused, fail):
    runs = Counter()
    record = build_into(reused, SECOND, runs)
    assert user_files(reused) == USER_FILES
    assert not (reused / "tflite" / "model_int8.tflite").exists() and not (reused / "web" / "float").exists(), \
        "what the first build published and the second did not is gone"
    assert sorted(a["path"] for a in record["artifacts"]) == sorted(p for p, _ in SECOND.values())
    assert published(reused) == {p for p, _ in SECOND.values()}

    # A build that fails (a step) went ahead all the same: it too clears the earlier build's leftovers.
    again = {**FIRST, fail: (SECOND[fail][0], None)}  # the failing step publishes nothing
    with pytest.raises(BuildFailed, match=f"step '{fail}' failed"):
        _failing_build(reused, again, fail, runs)
    assert user_files(reused) == USER_FILES
    assert (reused / "tflite" / "model_int8.tflite").read_text() == "int8 bytes"
    assert not (reused / SECOND[fail][0]).exists(), "the previous build's artifact there is gone, the failed one never came"


def _failing_build(run_dir: Path, artifacts: dict, fail: str, runs: Counter) -> None:
    plan = plan_of(artifacts)
    steps = [StepSpec(s.name, s.kind, {**s.params, "fail": True}, s.inputs, s.outputs) if s.name == fail else s
             for s in plan.steps]  # fmt: skip
    build = Build(plan=make_plan(steps), recipe="fake", run_dir=run_dir, cache_dir=run_dir.parent / "cache", config=CONFIG)
    run_build(build, registry={"tree": TreeStep(runs)})


def hold(run_dir: Path) -> subprocess.Popen:
    """A real second process holding `run_dir` as a build does, until its stdin closes."""
    code = ("import sys; from pathlib import Path; from tfbuild.plan import make_plan; "
            "from tfbuild.run_folder import RunFolder; "
            "folder = RunFolder.open(Path(sys.argv[1]), make_plan([])); print('held', flush=True); sys.stdin.read()")  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=PROJECT_ROOT)  # fmt: skip
    assert _line_within(holder, 60) == "held"
    return holder


def _line_within(process: subprocess.Popen, seconds: float) -> str:
    """`process`'s next stdout line, or fail after `seconds` (never a sleep)."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline().strip()), daemon=True)
    reader.start()
    reader.join(seconds)
    assert lines, f"no line from pid {process.pid} within {seconds} s"
    return lines[0]


REFUSED = {  # how a build into the reused folder exits 2: (what it builds, what it is told)
    "data refused": (SECOND, {"refuse": True}, DataError, "step 'data': data refuses its input"),
    "a folder of the user's in the way": ({**SECOND, "serving": ("serving", {"a": "b"})}, {}, ConfigError,
                                          "run folder: 'serving' holds 'serving/mine/model.txt', which tfbuild did not write"),
    "another build holds the folder": (SECOND, {}, ConfigError, "run folder: another tfbuild (pid {pid}) is building into"),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_a_build_that_exits_2_leaves_the_folder_as_it_was(reused, case):
    artifacts, data_params, error, message = REFUSED[case]
    before = snapshot(reused)
    holder = hold(reused) if case.startswith("another") else None
    runs = Counter()
    try:
        with pytest.raises(error) as info:
            build_into(reused, artifacts, runs, **data_params)
    finally:
        if holder is not None:
            holder.communicate("", timeout=60)
    assert str(info.value).startswith(message.format(pid=holder.pid if holder else None))
    assert "\n" not in str(info.value) and error.exit_code == 2
    assert snapshot(reused) == before, "nothing removed, replaced or added"
    assert set(runs) <= {"data"}, "refused before any work (the data step is the one that refuses)"


IN_THE_WAY = {  # something not tfbuild's where the second build publishes: refused, before any work, untouched
    "a user's file where an artifact goes": (lambda d: (d / "tflite" / "model_float.tflite").write_text("mine"),
                                             "'tflite/model_float.tflite' is a file tfbuild did not write"),
    "a user's file in tfbuild's folder artifact": (lambda d: (d / "saved_model" / "notes.txt").write_text("mine"),
                                                   "'saved_model' was changed since tfbuild published it"),
    "a published file edited": (lambda d: _append(d / "saved_model" / "saved_model.pb"),
                                "'saved_model' was changed since tfbuild published it"),
    "a link where a format's folder goes": (lambda d: _replace_with_link(d / "tfjs", d.parent / "elsewhere"),
                                            "'tfjs' is a link, not a folder"),
    "a file where a format's folder goes": (lambda d: _replace_with_file(d / "tfjs"), "'tfjs' is a file, not a folder"),
    "a link where a folder artifact goes": (lambda d: _replace_with_link(d / "saved_model", d.parent / "elsewhere"),
                                            "'saved_model' is a link or special file"),
    "an empty folder of the user's": (lambda d: (d / "tfjs" / "uint8").mkdir(), "'tfjs/uint8' is a folder tfbuild did not make"),
}


def _append(path: Path) -> None:
    with open(path, "a") as file:
        file.write("mine")


def _replace_with_link(path: Path, target: Path) -> None:
    target.mkdir(exist_ok=True)
    (target / "kept.txt").write_text("elsewhere")
    shutil.rmtree(path)
    path.symlink_to(target)


def _replace_with_file(path: Path) -> None:
    shutil.rmtree(path)
    path.write_text("mine")


@pytest.mark.parametrize("case", IN_THE_WAY, ids=list(IN_THE_WAY))
def test_only_what_tfbuild_wrote_is_replaced(reused, case):
    put, message = IN_THE_WAY[case]
    put(reused)
    before, elsewhere = snapshot(reused), snapshot(reused.parent / "elsewhere") if (reused.parent / "elsewhere").exists() else {}
    runs = Counter()
    with pytest.raises(ConfigError) as info:
        build_into(reused, SECOND, runs)
    assert str(info.value) == (f"run folder: {message}; tfbuild replaces only what it wrote: move it away, or choose "
                               "another folder with hydra.run.dir=FOLDER")  # fmt: skip
    assert runs == Counter(), "before any work"
    assert snapshot(reused) == before
    if elsewhere:
        assert snapshot(reused.parent / "elsewhere") == elsewhere


def test_an_artifact_the_user_edited_is_theirs_from_then_on(reused):
    int8 = reused / "tflite" / "model_int8.tflite"
    _append(int8)
    build_into(reused, SECOND, Counter())  # int8 is not built again: the edited copy stays
    assert int8.read_text() == "int8 bytesmine" and "tflite/model_int8.tflite" not in published(reused)
    with pytest.raises(ConfigError, match="'tflite/model_int8.tflite' is a file tfbuild did not write"):
        build_into(reused, FIRST, Counter())
    assert int8.read_text() == "int8 bytesmine"


def test_a_copied_or_killed_run_folder_is_still_known_by_its_bytes(reused, tmp_path):
    """Stats change when a folder is copied; a build killed after publishing never recorded
    them: the digests still say what is tfbuild's."""
    copy = tmp_path / "copy"
    shutil.copytree(reused, copy)
    record = json.loads((copy / OWN / PUBLISHED).read_text())
    for versions in record["published"].values():
        for version in versions:
            version["stats"] = None
    (copy / OWN / PUBLISHED).write_text(json.dumps(record))
    build_into(copy, SECOND, Counter())
    assert user_files(copy) == USER_FILES and not (copy / "web" / "float").exists()


def test_a_folder_built_before_the_record_is_known_by_its_build_json(reused):
    (reused / OWN / PUBLISHED).unlink()
    build_into(reused, SECOND, Counter())
    assert user_files(reused) == USER_FILES and not (reused / "web" / "float").exists()


def forged(entries: dict) -> callable:
    def forge(run_dir: Path) -> None:
        path = run_dir / OWN / PUBLISHED
        record = json.loads(path.read_text())
        record["published"].update(entries)
        path.write_text(json.dumps(record))

    return forge


def real(path: str, run_dir: Path) -> list[dict]:
    """The version a forger would claim for `path`: its real digest."""
    return [{"sha256": sha256_file(run_dir / path), "stats": None}]


EDITS = {  # ways the record can be edited or replaced; none may remove a file of the user's
    "a user's file named, with another digest": forged({"web/notes.txt": [{"sha256": "ab" * 32, "stats": None}]}),
    "a format folder named, with another digest": forged({"web": [{"sha256": "ab" * 32, "stats": None}]}),
    "Hydra's record named": lambda d: forged({".hydra/config.yaml": real(".hydra/config.yaml", d)})(d),
    "a top-level file named": lambda d: forged({"notes.txt": real("notes.txt", d)})(d),
    "a path out of the folder": lambda d: forged({"../outside.txt": real("../outside.txt", d)})(d),
    "a path out through a format folder": lambda d: forged({"web/../../outside.txt": real("../outside.txt", d)})(d),
    "an absolute path": lambda d: forged({str(d.parent / "outside.txt"): real("../outside.txt", d)})(d),
    "others may write the record": lambda d: (forged({"web/notes.txt": real("web/notes.txt", d)})(d),
                                               (d / OWN / PUBLISHED).chmod(0o666)),
    "the record a link": lambda d: _record_link(d, {"web/notes.txt": real("web/notes.txt", d)}),
    "the record not JSON": lambda d: (d / OWN / PUBLISHED).write_text("{not json"),
    "the record of another shape": lambda d: (d / OWN / PUBLISHED).write_text('{"published": [["web/notes.txt"]]}'),
}


def _record_link(run_dir: Path, entries: dict) -> None:
    forged_record = run_dir.parent / "forged.json"
    forged_record.write_text(json.dumps({"published": entries}))
    (run_dir / OWN / PUBLISHED).unlink()
    (run_dir / OWN / PUBLISHED).symlink_to(forged_record)


@pytest.mark.parametrize("edit", EDITS, ids=list(EDITS))
def test_an_edited_record_never_removes_a_users_file(reused, edit):
    (reused / "notes.txt").write_text("top-level notes")
    (reused / ".hydra").mkdir()
    (reused / ".hydra" / "config.yaml").write_text("hydra: config")
    (reused.parent / "outside.txt").write_text("outside the run folder")
    EDITS[edit](reused)
    kept = [*USER_FILES, "notes.txt", ".hydra/config.yaml"]
    before = {rel: (reused / rel).read_text() for rel in kept}
    try:
        build_into(reused, SECOND, Counter())
    except ConfigError as refused:  # an ignored record makes the first build's artifacts strangers
        assert "tfbuild replaces only what it wrote" in str(refused)
    assert {rel: (reused / rel).read_text() for rel in kept} == before
    assert (reused.parent / "outside.txt").read_text() == "outside the run folder"


def test_two_builds_into_one_folder_the_second_is_refused_and_the_first_is_whole(tmp_path):
    """A real first build, held mid-way in its own process; a second, here, is refused."""
    run_dir, fifo = tmp_path / "run", tmp_path / "go"
    os.mkfifo(fifo)
    code = (
        "import sys; from collections import Counter; from pathlib import Path\n"
        "from tests.unit.test_run_folder import build_into, FIRST\n"
        "build_into(Path(sys.argv[1]), FIRST, Counter(), wait_on=sys.argv[2])\n"
    )
    first = subprocess.Popen([sys.executable, "-c", code, str(run_dir), str(fifo)], cwd=PROJECT_ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    opened: list = []
    opener = threading.Thread(target=lambda: opened.append(open(fifo, "w")), daemon=True)
    opener.start()
    opener.join(60)  # the first build's data step opened the FIFO: it holds the folder now
    assert opened, f"the first build never started: {first.poll()}"
    runs = Counter()
    try:
        with pytest.raises(ConfigError) as info:
            build_into(run_dir, SECOND, runs)
    finally:
        opened[0].close()  # let the first go on
    assert str(info.value).startswith(f"run folder: another tfbuild (pid {first.pid}) is building into {run_dir} "
                                      "(one build per run folder at a time)")  # fmt: skip
    assert runs == Counter()
    assert first.wait(60) == 0, first.stderr.read()
    record = json.loads((run_dir / "build.json").read_text())
    assert {a["path"] for a in record["artifacts"]} == {p for p, _ in FIRST.values()}
    assert (run_dir / "tflite" / "model_int8.tflite").read_text() == "int8 bytes", "the first build's own artifacts"
    build_into(run_dir, SECOND, Counter())  # once it ended, the folder is free


def test_a_killed_holder_frees_the_folder(tmp_path):
    holder = hold(tmp_path / "run")
    holder.kill()
    holder.wait(60)
    build_into(tmp_path / "run", FIRST, Counter())


LATEST = {  # a thing of the user's named `latest`, and how to tell it is untouched
    "a file": lambda link: link.write_text("my latest"),
    "a folder": lambda link: (link.mkdir(), (link / "notes.txt").write_text("mine")),
    "a link of the user's (absolute)": lambda link: link.symlink_to(link.parent / "some" / "where"),
    "a link of the user's (into a folder)": lambda link: link.symlink_to("../elsewhere/run"),
}


@pytest.mark.parametrize("thing", LATEST, ids=list(LATEST))
def test_latest_replaces_only_its_own_link(tmp_path, thing, capfd):
    runs = tmp_path / "runs" / "fake"
    runs.mkdir(parents=True)
    link = runs / "latest"
    LATEST[thing](link)
    before = (os.readlink(link) if link.is_symlink() else None, snapshot(link) if link.is_dir() else
              link.read_text() if link.is_file() else None)  # fmt: skip
    for name in ("1", "2"):
        build = Build(plan=plan_of(FIRST), recipe="fake", run_dir=runs / name, cache_dir=tmp_path / "cache",
                      config=CONFIG, latest=link)  # fmt: skip
        run_build(build, registry={"tree": TreeStep(Counter())})
    after = (os.readlink(link) if link.is_symlink() else None, snapshot(link) if link.is_dir() else
             link.read_text() if link.is_file() else None)  # fmt: skip
    assert after == before
    out = " ".join(capfd.readouterr().out.split())  # rich may wrap a long path's line
    assert out.count(f"warning: {link} is not tfbuild's link to the last run (yours?): left as it is") == 2, \
        "one line per build"


def test_a_run_folder_held_by_another_build_is_not_removed_as_unused(tmp_path):
    from tfbuild.run_folder import remove_unused_run_dir

    run_dir = tmp_path / "run"
    holder = hold(run_dir)
    try:
        remove_unused_run_dir(run_dir)  # a config error of a second build into it
        assert run_dir.is_dir()
    finally:
        holder.communicate("", timeout=60)
    remove_unused_run_dir(run_dir)
    assert not run_dir.exists()
