"""Cache housekeeping with fake steps: what gc picks, and that pinned entries stay."""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest

from tfbuild.cache import Cache
from tfbuild.cache_admin import choose_garbage, list_entries, main, parse_age, parse_size, pinned_keys
from tfbuild.plan import make_plan
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
