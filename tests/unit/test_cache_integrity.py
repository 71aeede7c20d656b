"""A cache hit serves only an entry that is exactly what its self-consistent manifest says.

Each case damages a committed entry (its files or its manifest) the way a bug, a crash, a
careless user or a hostile one could; every one must be a miss that discards the entry, never
a hit and never an exception.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tfbuild import digests
from tfbuild.cache import Cache

from tests.fakes import edit_manifest

KEY = "a" * 64
OUTPUTS = {"model": "saved_model", "weights": "w.bin"}


def commit(cache: Cache) -> Path:
    tmp = cache.begin(KEY)
    (tmp / "out" / "saved_model" / "variables").mkdir(parents=True)
    (tmp / "out" / "saved_model" / "assets").mkdir()  # empty, as in a real SavedModel
    (tmp / "out" / "saved_model" / "saved_model.pb").write_bytes(b"graph")
    (tmp / "out" / "saved_model" / "variables" / "v.data").write_bytes(b"variables")
    (tmp / "out" / "w.bin").write_bytes(b"weights")
    outputs = {}
    for role, path in OUTPUTS.items():
        files = digests.tree_files(tmp / "out" / path)
        outputs[role] = {"path": path, "sha256": digests.tree_digest(files), "bytes": sum(f.bytes for f in files),
                         "files": [vars(f) for f in files]}  # fmt: skip
    cache.commit(tmp, KEY, {"key": KEY, "name": "step", "info": {}, "outputs": outputs,
                            "discovered": {"read": {}, "absent": []}})  # fmt: skip
    return cache.entry_dir(KEY)


def swap_with_record(folder: Path) -> None:
    """A file replaced and its own record updated, but not the output's digest."""
    target = folder / "out" / "w.bin"
    target.chmod(0o644)
    target.write_bytes(b"evil bytes")

    def change(m):
        m["outputs"]["weights"]["files"][0].update(sha256=digests.sha256_file(target), bytes=10)
        m["outputs"]["weights"]["bytes"] = 10

    edit_manifest(folder, change)


def escape(folder: Path) -> None:
    """An output that names a system file: served, it would be linked into the run folder."""
    system = Path("/etc/hostname")

    def change(m):
        files = digests.tree_files(system)
        m["outputs"]["weights"] = {"path": "../../../../../../../../../../etc/hostname", "sha256": files[0].sha256,
                                   "bytes": files[0].bytes, "files": [vars(f) for f in files]}  # fmt: skip

    edit_manifest(folder, change)


def symlink_out(folder: Path) -> None:
    """A listed file replaced by a symlink to a file outside, with matching records."""
    (folder / "out" / "w.bin").unlink()
    (folder / "out" / "w.bin").symlink_to("/etc/hostname")

    def change(m):
        files = digests.tree_files(Path("/etc/hostname"))
        m["outputs"]["weights"].update(sha256=files[0].sha256, bytes=files[0].bytes, files=[vars(f) for f in files])

    edit_manifest(folder, change)


def drop_field(m):
    del m["outputs"]["model"]["files"][0]["bytes"]


CASES = {
    "manifest lists no files": (lambda f: edit_manifest(f, lambda m: m["outputs"]["model"].update(files=[]))),
    "file swapped with its record, not the output digest": swap_with_record,
    "file present but unlisted": lambda f: (f / "out" / "saved_model" / "extra.pb").write_bytes(b"x"),
    "unlisted file in an empty folder": lambda f: (f / "out" / "saved_model" / "assets" / "x").write_bytes(b"x"),
    "unlisted folder": lambda f: (f / "out" / "stray").mkdir(),
    "output path escapes the entry": escape,
    "symlink inside out/ pointing out": symlink_out,
    "symlink to a folder": lambda f: (f / "out" / "saved_model" / "link").symlink_to("/etc"),
    "a record missing a field": lambda f: edit_manifest(f, drop_field),
    "a field of the wrong type": lambda f: edit_manifest(f, lambda m: m["outputs"]["model"].update(bytes="14")),
    "manifest missing outputs": lambda f: edit_manifest(f, lambda m: m.pop("outputs")),
    "manifest key mismatch": lambda f: edit_manifest(f, lambda m: m.update(key="b" * 64)),
    "manifest not a JSON object": lambda f: edit_manifest(f, lambda m: ["not", "an", "object"]),
    "manifest not JSON": lambda f: (f / "manifest.json").write_bytes(b"\xff\xfe binary"),
    "manifest is a folder": lambda f: ((f / "manifest.json").unlink(), (f / "manifest.json").mkdir()),
    "absolute record path": lambda f: edit_manifest(
        f, lambda m: m["outputs"]["model"]["files"][0].update(path="/etc/passwd")),
    "dot-dot record path": lambda f: edit_manifest(
        f, lambda m: m["outputs"]["model"]["files"][0].update(path="../w.bin")),
    "extra file beside out/": lambda f: (f / "notes.txt").write_text("x"),
    "listed file deleted": lambda f: (f / "out" / "saved_model" / "variables" / "v.data").unlink(),
}


@pytest.mark.parametrize("damage", CASES.values(), ids=CASES.keys())
def test_a_damaged_entry_is_a_miss_and_is_discarded(tmp_path, damage):
    cache = Cache(tmp_path)
    folder = commit(cache)
    assert cache.lookup(KEY, OUTPUTS)[0] is not None, "intact before the damage"
    damage(folder)
    entry, problem = cache.lookup(KEY, OUTPUTS)
    assert entry is None and problem.startswith("cache entry "), problem
    assert not folder.exists(), "discarded, so the next build writes a fresh one"


def test_an_entry_with_other_outputs_than_the_step_declares_is_a_miss(tmp_path):
    cache = Cache(tmp_path)
    commit(cache)
    entry, problem = cache.lookup(KEY, {"model": "saved_model", "weights": "other.bin"})
    assert entry is None and problem == "cache entry does not have the step's outputs"


def test_an_intact_hit_reads_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(digests, "RACY_NS", 0)  # as if the entry were written a while ago
    cache = Cache(tmp_path)
    commit(cache)
    cache.close()
    cache = Cache(tmp_path)  # a later build: only the stat cache remembers the digests
    monkeypatch.setattr(digests, "sha256_file", lambda p: pytest.fail(f"read {p}"))
    entry, problem = cache.lookup(KEY, OUTPUTS)
    assert problem is None and entry.output_path("model").is_dir()


def test_a_symlinked_entry_folder_is_refused(tmp_path):
    cache = Cache(tmp_path)
    folder = commit(cache)
    os.rename(folder, tmp_path / "elsewhere")
    folder.symlink_to(tmp_path / "elsewhere")
    entry, problem = cache.lookup(KEY, OUTPUTS)
    assert entry is None and problem.startswith("cache entry corrupt")
    assert (tmp_path / "elsewhere" / "manifest.json").exists(), "the link went, not what it pointed to"
    assert list((tmp_path / "tmp").iterdir()) == []
