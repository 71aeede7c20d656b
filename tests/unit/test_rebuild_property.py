"""Properties of random plans of fake steps: change one input and exactly the steps that
depend on it re-run; corrupt any entries in any way and no step is ever served other bytes
than its key names (the corrupted steps rebuild, nothing else).

Plans are random DAGs of fake steps (each writes its `text` param and its inputs' contents),
so a change travels exactly along the edges; the runner must rebuild that set, no more (a
needless rebuild) and no less (a stale artifact served as current).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfbuild import digests
from tfbuild.cache import Cache
from tfbuild.plan import make_plan
from tfbuild.runner import BUILT, CACHED, run_plan

from tests.fakes import WriteStep, edit_manifest, step


@st.composite
def plans(draw):
    """(edges: step i -> the earlier steps it reads, the step whose input changes)."""
    count = draw(st.integers(min_value=1, max_value=8))
    edges = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(count)]
    return edges, draw(st.integers(0, count - 1))


def build(edges, changed=None):
    return [
        step(f"s{i}", {f"in{j}": f"s{j}" for j in parents}, text="changed" if i == changed else f"step {i}")
        for i, parents in enumerate(edges)
    ]


def dependents(edges, start):
    found = {start}
    for i, parents in enumerate(edges):  # edges only point backwards: one pass in order suffices
        if found.intersection(parents):
            found.add(i)
    return found


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plans())
def test_exactly_the_dependents_of_a_changed_input_rerun(tmp_path_factory, case):
    edges, changed = case
    cache = Cache(tmp_path_factory.mktemp("cache"))
    runs: Counter = Counter()
    registry = {"write": WriteStep("write", runs)}
    first = run_plan(make_plan(build(edges)), cache, registry, scope="p")
    assert {r.status for r in first.steps} == {BUILT}
    runs.clear()
    second = run_plan(make_plan(build(edges, changed)), cache, registry, scope="p")
    rebuilt = {int(r.spec.name[1:]) for r in second.steps if r.status == BUILT}
    assert rebuilt == dependents(edges, changed)
    assert {r.status for r in second.steps if int(r.spec.name[1:]) not in rebuilt} <= {CACHED}
    assert set(runs) == {f"s{i}" for i in rebuilt}
    cache.close()


# -- corruption: whatever happens to the entries, no step is served other bytes than its key names


def _writable(path: Path) -> Path:
    path.chmod(0o644)
    return path


def _in_place_same_size_mtime_restored(out: Path, folder: Path) -> None:
    before = out.stat()
    with open(_writable(out), "r+b") as f:
        f.write(b"#")
    os.utime(out, ns=(before.st_atime_ns, before.st_mtime_ns))


def _swap_with_record(out: Path, folder: Path) -> None:
    _writable(out).write_bytes(b"other bytes")

    def change(m):
        (output,) = m["outputs"].values()
        output["files"][0].update(sha256=digests.sha256_file(out), bytes=out.stat().st_size)
        output["bytes"] = out.stat().st_size

    edit_manifest(folder, change)


def _symlink_with_matching_records(out: Path, folder: Path) -> None:
    elsewhere = folder.parent / f"{folder.name}.outside"
    elsewhere.write_bytes(b"outside bytes")
    out.unlink()
    out.symlink_to(elsewhere)
    _swap_records_to(folder, elsewhere)


def _swap_records_to(folder: Path, target: Path) -> None:
    def change(m):
        (output,) = m["outputs"].values()
        records = digests.tree_files(target)
        output.update(sha256=digests.tree_digest(records), bytes=records[0].bytes, files=[vars(r) for r in records])

    edit_manifest(folder, change)


def _escape(out: Path, folder: Path) -> None:
    outside = folder.parent / f"{folder.name}.outside"
    outside.write_bytes(b"outside bytes")

    def change(m):
        (output,) = m["outputs"].values()
        records = digests.tree_files(outside)
        output.update(path=f"../../{folder.name}.outside", sha256=records[0].sha256, bytes=records[0].bytes,
                      files=[vars(r) for r in records])  # fmt: skip

    edit_manifest(folder, change)


def _drop_field(m):
    (output,) = m["outputs"].values()
    del output["files"][0]["sha256"]


CORRUPTIONS = {
    "edit in place, size and mtime restored": _in_place_same_size_mtime_restored,
    "truncate": lambda out, folder: _writable(out).write_bytes(out.read_bytes()[:2]),
    "delete": lambda out, folder: out.unlink(),
    "extra file": lambda out, folder: (out.parent / "extra.txt").write_text("x"),
    "extra symlink out": lambda out, folder: (out.parent / "link").symlink_to("/etc/hostname"),
    "manifest lists no files": lambda out, folder: edit_manifest(
        folder, lambda m: [o.update(files=[]) for o in m["outputs"].values()]),
    "swapped file, record updated, output digest not": _swap_with_record,
    "symlink with matching records": _symlink_with_matching_records,
    "output path escaping": _escape,
    "record missing a field": lambda out, folder: edit_manifest(folder, _drop_field),
    "manifest key mismatch": lambda out, folder: edit_manifest(folder, lambda m: m.update(key="0" * 64)),
    "manifest not an object": lambda out, folder: edit_manifest(folder, lambda m: [m]),
    "manifest deleted": lambda out, folder: (folder / "manifest.json").unlink(),
}


@st.composite
def corrupted_plans(draw):
    edges, _ = draw(plans())
    kinds = st.one_of(st.none(), st.sampled_from(sorted(CORRUPTIONS)))
    return edges, [draw(kinds) for _ in edges]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(corrupted_plans())
def test_no_step_is_ever_served_bytes_other_than_its_key_names(tmp_path_factory, case):
    edges, damage = case
    root = tmp_path_factory.mktemp("corrupt")
    cache = Cache(root / "cache")
    runs: Counter = Counter()
    registry = {"write": WriteStep("write", runs)}
    steps = [step(f"s{i}", {f"in{j}": f"s{j}" for j in parents}, publish=True, text=f"step {i}")
             for i, parents in enumerate(edges)]  # fmt: skip
    first = run_plan(make_plan(steps), cache, registry, scope="p")
    expected = {r.spec.name: r.entry.output_path("out").read_bytes() for r in first.steps}
    for result in first.steps:  # in run order, which need not be the order of `damage`
        kind = damage[int(result.spec.name[1:])]
        if kind is not None:
            CORRUPTIONS[kind](result.entry.output_path("out"), result.entry.root)
    runs.clear()
    second = run_plan(make_plan(steps), cache, registry, scope="p", run_dir=root / "run")
    corrupted = {f"s{i}" for i, kind in enumerate(damage) if kind is not None}
    for result in second.steps:
        name = result.spec.name
        assert result.status == (BUILT if name in corrupted else CACHED), (name, result.reason)
        if name in corrupted:
            assert result.reason.startswith("cache entry "), result.reason
        assert result.entry.output_path("out").read_bytes() == expected[name], f"{name} served other bytes"
        assert (root / "run" / f"{name}.txt").read_bytes() == expected[name], f"{name} published other bytes"
    assert set(runs) == corrupted, "only the corrupted steps ran; their rebuilt outputs match, so nothing else did"
    third = run_plan(make_plan(steps), cache, registry, scope="p")
    assert {r.status for r in third.steps} == {CACHED}, "the rebuilt entries are whole again"
    cache.close()
