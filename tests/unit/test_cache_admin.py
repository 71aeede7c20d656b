"""Cache housekeeping with fake steps: what gc picks, and that pinned entries stay."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from tfbuild.cache import Cache
from tfbuild.cache_admin import choose_garbage, list_entries, main, parse_age, parse_size, pinned_keys
from tfbuild.plan import OutputSpec, StepSpec, make_plan
from tfbuild.runner import run_plan

from tests.fakes import WriteStep, step


@pytest.fixture
def cache_with_three_entries(tmp_path):
    cache = Cache(tmp_path / "outputs" / "cache")
    steps = [step("data", text="x" * 1000), step("train", {"data": "data"}), step("export", {"model": "train"})]
    result = run_plan(make_plan(steps), cache, {"write": WriteStep("write", Counter())})
    cache.close()
    keys = {r.spec.name: r.key for r in result.steps}
    now = time.time()
    for age_days, name in ((40, "data"), (10, "train"), (1, "export")):  # last used N days ago
        manifest = cache.entry_dir(keys[name]) / "manifest.json"
        os.utime(manifest, (now - age_days * 86400, now - age_days * 86400))
    return tmp_path, keys


def test_gc_by_age_and_by_size_takes_the_least_recently_used(cache_with_three_entries):
    root, keys = cache_with_three_entries
    entries = list_entries(root / "outputs" / "cache")
    assert sorted(e.name for e in entries) == ["data", "export", "train"]
    by_age = choose_garbage(entries, {}, older_than=30 * 86400, max_bytes=None, include_pinned=False, now=time.time())
    assert [e.name for e in by_age] == ["data"]
    total = sum(e.bytes for e in entries)
    by_size = choose_garbage(entries, {}, older_than=None, max_bytes=total - 1, include_pinned=False, now=time.time())
    assert [e.name for e in by_size] == ["data"], "the least recently used goes first"


def test_pinned_entries_are_kept_unless_asked(cache_with_three_entries, monkeypatch):
    root, keys = cache_with_three_entries
    pinned = root / "recipes" / "pinned"
    pinned.mkdir(parents=True)
    (pinned / "digits-1.0.yaml").write_text(f"lock:\n  steps:\n    data: {keys['data']}\n")
    monkeypatch.chdir(root)
    assert pinned_keys([root / "recipes"]) == {keys["data"]: "digits-1.0"}
    main(["gc", "--older-than", "5d"])
    left = {e.name for e in list_entries(root / "outputs" / "cache")}
    assert left == {"data", "export"}, "train (10 days) went; data (40 days) is pinned"
    main(["gc", "--older-than", "5d", "--include-pinned"])
    assert {e.name for e in list_entries(root / "outputs" / "cache")} == {"export"}


def test_gc_dry_run_deletes_nothing(cache_with_three_entries, monkeypatch, capsys):
    root, _ = cache_with_three_entries
    monkeypatch.chdir(root)
    main(["gc", "--max-size", "0", "--dry-run"])
    assert len(list_entries(root / "outputs" / "cache")) == 3
    assert "3 of 3 entries" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["gc"], "gc needs --older-than AGE and/or --max-size SIZE"),
    (["gc", "--older-than", "soon"], "--older-than: 'soon' is not an age like 30d, 12h or 90m"),
    (["list", "--cache", "nowhere"], "nowhere is not a tfbuild cache (no entries/ folder)"),
])
def test_bad_arguments_are_one_line_errors(cache_with_three_entries, monkeypatch, capsys, args, message):
    root, _ = cache_with_three_entries
    monkeypatch.chdir(root)
    with pytest.raises(SystemExit) as exit_code:
        main(args)
    assert exit_code.value.code == 2
    assert capsys.readouterr().err.strip() == f"tfbuild-cache: error: {message}"


def test_sizes_and_ages_parse():
    assert parse_size("2GB") == 2 * 1024**3 and parse_size("500mb") == 500 * 1024**2 and parse_size("10") == 10
    assert parse_age("30d") == 30 * 86400 and parse_age("90m") == 5400


ABSURD = [("--max-size", size) for size in ("1e999GB", "99999999999999999999999999TB", "nanGB", "1" * 400 + "GB",
                                           "-5GB", "infGB", "", "5 XB")]
ABSURD += [("--older-than", age) for age in ("1e999d", "9" * 400 + "d", "nand", "-1d")]


@pytest.mark.parametrize("option, value", ABSURD)
def test_absurd_sizes_and_ages_are_one_line_errors(cache_with_three_entries, monkeypatch, capsys, option, value):
    root, _ = cache_with_three_entries
    monkeypatch.chdir(root)
    with pytest.raises(SystemExit) as exit_code:
        main(["gc", f"{option}={value}"])
    err = capsys.readouterr().err
    assert exit_code.value.code == 2 and err.startswith(f"tfbuild-cache: error: {option}: ") and err.count("\n") == 1
    assert len(list_entries(root / "outputs" / "cache")) == 3


def test_pins_the_cache_recorded_are_kept_wherever_gc_runs(cache_with_three_entries, monkeypatch, tmp_path, capsys):
    root, keys = cache_with_three_entries
    cache = Cache(root / "outputs" / "cache")
    cache.record_pin("digits-1.0", [keys["data"], keys["train"]])
    assert cache.pinned_keys() == {keys["data"]: "digits-1.0", keys["train"]: "digits-1.0"}
    elsewhere = tmp_path / "elsewhere"  # no recipes/pinned here
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    main(["gc", "--max-size", "0", "--cache", str(root / "outputs" / "cache")])
    assert {e.name for e in list_entries(root / "outputs" / "cache")} == {"data", "train"}
    assert "2 kept for pinned recipes" in capsys.readouterr().out



def test_checkouts_sharing_a_cache_keep_each_others_pins(cache_with_three_entries, monkeypatch, tmp_path, capsys):
    """Two checkouts pin the same name with different steps, in separate processes sharing the
    cache; neither record replaces the other, a pinned rebuild adds nothing, and gc keeps the union."""
    root, keys = cache_with_three_entries
    cache_dir = root / "outputs" / "cache"
    record = ("import sys; from tfbuild.cache import Cache; "
              "Cache(sys.argv[1]).record_pin('digits-1.0', sys.argv[2:])")  # fmt: skip
    for checkout, pinned in (("a", ["data", "train"]), ("b", ["data", "export"]), ("a", ["train", "data"])):
        (tmp_path / checkout).mkdir(exist_ok=True)
        subprocess.run([sys.executable, "-c", record, str(cache_dir), *(keys[n] for n in pinned)], cwd=tmp_path / checkout,
                       check=True)  # fmt: skip
    assert len(list((cache_dir / "pins").glob("digits-1.0.*.json"))) == 2, "one record per pin content"
    assert set(Cache(cache_dir).pinned_keys()) == set(keys.values())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    main(["gc", "--max-size", "0", "--cache", str(cache_dir)])
    assert {e.name for e in list_entries(cache_dir)} == {"data", "train", "export"}
    assert "3 kept for pinned recipes" in capsys.readouterr().out

MALFORMED_PINS = {
    "bad yaml": "lock: [unclosed\n",
    "steps not a mapping": "lock:\n  steps: [a, b]\n",
    "lock not a mapping": "lock: 5\n",
    "not a mapping": "- 1\n- 2\n",
    "huge": "# " + "x" * (2 << 20) + "\n",
    # 10**30 scalars once its aliases are expanded, in a few hundred bytes: refused unexpanded
    "alias bomb": "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" if i else "l0: &l0 [a, a, a, a, a, a, a, a, a, a]\n"
                          for i in range(30)),
}


@pytest.mark.parametrize("text", MALFORMED_PINS.values(), ids=MALFORMED_PINS.keys())
def test_a_malformed_pinned_file_warns_in_list_and_stops_gc(cache_with_three_entries, monkeypatch, capsys, text):
    root, _ = cache_with_three_entries
    (root / "recipes" / "pinned").mkdir(parents=True)
    bad = root / "recipes" / "pinned" / "broken-1.0.yaml"
    bad.write_text(text)
    monkeypatch.chdir(root)
    main(["list"])
    out = capsys.readouterr()
    assert out.err.startswith("tfbuild-cache: warning: ") and str(bad) in out.err and out.err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_code:
        main(["gc", "--max-size", "0"])
    err = capsys.readouterr().err
    assert exit_code.value.code == 2 and str(bad) in err and "--include-pinned" in err and err.count("\n") == 1
    assert len(list_entries(root / "outputs" / "cache")) == 3
    main(["gc", "--max-size", "0", "--include-pinned"])
    assert list_entries(root / "outputs" / "cache") == []


def test_leftover_tmp_folders_are_listed_and_reclaimed_unless_a_build_holds_them(cache_with_three_entries, monkeypatch, capsys):
    root, keys = cache_with_three_entries
    cache = Cache(root / "outputs" / "cache")
    killed = cache.begin("c" * 64)  # a build that was killed: its lock went with it
    (killed / "out" / "half.bin").write_bytes(b"x" * 2048)
    (cache.root / "tmp" / "discarded.abc.123").mkdir()
    monkeypatch.chdir(root)
    main(["list"])
    assert "tmp: 2 leftover folders, 2.0 KB" in capsys.readouterr().out
    with cache.locked("d" * 64):  # a live build, in the middle of its step
        live = cache.begin("d" * 64)
        main(["gc", "--older-than", "1000d", "--dry-run"])
        assert killed.exists() and live.exists()
        assert "0 of 3 entries and 3 of 3 tmp folders" in capsys.readouterr().out
        main(["gc", "--older-than", "1000d"])
        assert not killed.exists() and live.exists(), "the live build's folder stays"
        assert [t.folder for t in cache.leftovers()] == [live]
    main(["gc", "--older-than", "1000d"])
    assert cache.leftovers() == []


class PauseStep:
    """Copies its input once `go` is set: a build in the middle of a step, using its inputs."""

    kind, version, tools = "pause", 1, ()

    def __init__(self, started: threading.Event, go: threading.Event):
        self.started, self.go = started, go

    def run(self, ctx):
        self.started.set()
        assert self.go.wait(60)
        ctx.outputs["out"].write_text(ctx.inputs["model"].read_text() + "|paused")
        return {}


def test_gc_skips_what_a_running_build_uses_and_the_build_finishes(cache_with_three_entries):
    root, keys = cache_with_three_entries
    cache_dir = root / "outputs" / "cache"
    started, go = threading.Event(), threading.Event()
    registry = {"write": WriteStep("write", Counter()), "pause": PauseStep(started, go)}
    steps = [step("data", text="x" * 1000), step("train", {"data": "data"}), step("export", {"model": "train"}),
             StepSpec("pause", "pause", inputs={"model": "export"},
                      outputs=(OutputSpec("out", "paused", "paused.txt", publish="paused.txt"),))]  # fmt: skip
    results = []
    build = threading.Thread(target=lambda: results.append(
        run_plan(make_plan(steps), Cache(cache_dir), registry, run_dir=root / "run")))
    build.start()
    try:
        assert started.wait(60)
        # gc in its own process, as a user runs it, while the build is inside its last step
        gc = subprocess.run([sys.executable, "-m", "tfbuild.cache_admin", "gc", "--max-size", "0", "--cache", str(cache_dir)],
                            capture_output=True, text=True, timeout=60, env={**os.environ})  # fmt: skip
    finally:
        go.set()
        build.join(60)
    assert gc.returncode == 0, gc.stderr
    skipped = sorted(line.split()[2].rstrip(":") for line in gc.stdout.splitlines() if line.startswith("skipped "))
    assert skipped == ["data", "export", "train"], gc.stdout
    assert "0 of 3 entries and 0 of 1 tmp folders" in gc.stdout, "nor the folder the paused step writes in"
    (result,) = results
    assert [r.status for r in result.steps] == ["cached", "cached", "cached", "built"]
    assert (root / "run" / "paused.txt").read_text() == f"export|train|{'x' * 1000}|paused"
    main(["gc", "--max-size", "0", "--cache", str(cache_dir)])  # once the build is over, all can go
    assert list_entries(cache_dir) == []
