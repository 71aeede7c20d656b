import os
from pathlib import Path

import pytest

from tfbuild import digests
from tfbuild.cache import Cache, cache_key, canonical_json


def _commit(cache: Cache, key: str, content: str = "hello", replace: bool = False) -> None:
    tmp = cache.begin(key)
    (tmp / "out" / "a.txt").write_text(content)
    files = digests.tree_files(tmp / "out" / "a.txt")
    cache.commit(
        tmp,
        key,
        {"key": key, "name": "step", "info": {}, "discovered": {"read": {}, "absent": []},
         "outputs": {"out": {"path": "a.txt", "sha256": files[0].sha256, "bytes": files[0].bytes,
                             "files": [vars(f) for f in files]}}},
        replace=replace,
    )


def test_key_is_canonical_json_independent_of_dict_order():
    assert cache_key({"a": 1, "b": {"c": 2, "d": 3}}) == cache_key({"b": {"d": 3, "c": 2}, "a": 1})
    assert canonical_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'


def test_commit_then_lookup(tmp_path):
    cache = Cache(tmp_path)
    _commit(cache, "k" * 64)
    entry, problem = cache.lookup("k" * 64)
    assert problem is None and entry is not None
    assert entry.output_path("out").read_text() == "hello"
    assert not list((tmp_path / "tmp").iterdir()), "the temp folder was renamed, not copied"


def test_unknown_key_is_a_plain_miss(tmp_path):
    assert Cache(tmp_path).lookup("0" * 64) == (None, None)


def test_folder_without_manifest_is_a_miss_and_is_discarded(tmp_path):
    cache = Cache(tmp_path)
    partial = cache.entry_dir("p" * 64)
    (partial / "out").mkdir(parents=True)
    (partial / "out" / "a.txt").write_text("half")
    entry, problem = cache.lookup("p" * 64)
    assert entry is None and problem == "cache entry incomplete"
    assert not partial.exists()


def test_unreadable_manifest_is_a_miss(tmp_path):
    cache = Cache(tmp_path)
    _commit(cache, "m" * 64)
    (cache.entry_dir("m" * 64) / "manifest.json").write_text("{not json")
    assert cache.lookup("m" * 64)[0] is None


@pytest.mark.parametrize("damage", ["edit", "truncate", "delete"])
def test_changed_output_file_is_reported_corrupt(tmp_path, damage):
    cache = Cache(tmp_path)
    key = "c" * 64
    _commit(cache, key)
    path = cache.entry_dir(key) / "out" / "a.txt"
    if damage == "edit":
        path.write_text("jello")  # same size, different bytes
    elif damage == "truncate":
        path.write_text("he")
    else:
        path.unlink()
    entry, problem = cache.lookup(key)
    assert entry is None and problem.startswith("cache entry corrupt (a.txt")
    assert not cache.entry_dir(key).exists()


def test_unchanged_files_are_not_rehashed(tmp_path, monkeypatch):
    monkeypatch.setattr(digests, "RACY_NS", 0)  # as if the entry were written a while ago
    cache = Cache(tmp_path)
    _commit(cache, "s" * 64)
    calls = []
    monkeypatch.setattr(digests, "sha256_file", lambda p: calls.append(p) or "x")
    for _ in range(3):
        assert cache.lookup("s" * 64)[0] is not None
    assert calls == []


def test_stat_cache_rehashes_a_changed_file(tmp_path):
    state = digests.StatCache(tmp_path / "state.db")
    f = tmp_path / "f.bin"
    f.write_bytes(b"one")
    first = state.file_digest(f)
    f.write_bytes(b"two!")
    assert state.file_digest(f) == digests.sha256_file(f) != first


def test_second_commit_of_the_same_key_keeps_the_first(tmp_path):
    cache = Cache(tmp_path)
    _commit(cache, "d" * 64, "hello")
    _commit(cache, "d" * 64, "world")  # a racing writer with the same inputs
    entry, _ = cache.lookup("d" * 64)
    assert entry.output_path("out").read_text() == "hello"
    assert not list((tmp_path / "tmp").iterdir())


def test_a_forced_commit_replaces_the_entry_it_rebuilt(tmp_path):
    cache = Cache(tmp_path)
    _commit(cache, "f" * 64, "hello")
    _commit(cache, "f" * 64, "world", replace=True)
    entry, _ = cache.lookup("f" * 64)
    assert entry.output_path("out").read_text() == "world"
    assert not list((tmp_path / "tmp").iterdir()), "the replaced entry was deleted"


def test_an_unforced_commit_does_not_keep_a_corrupt_entry(tmp_path):
    cache = Cache(tmp_path)
    _commit(cache, "e" * 64, "hello")
    (cache.entry_dir("e" * 64) / "out" / "a.txt").write_text("jello")  # corrupted while we built
    _commit(cache, "e" * 64, "hello")
    entry, problem = cache.lookup("e" * 64)
    assert problem is None and entry.output_path("out").read_text() == "hello"


def test_entry_files_are_read_only(tmp_path):
    cache = Cache(tmp_path)
    _commit(cache, "r" * 64)
    entry, _ = cache.lookup("r" * 64)
    assert entry.output_path("out").stat().st_mode & 0o777 == 0o444


def test_an_in_place_edit_with_size_and_mtime_restored_is_caught(tmp_path):
    # `dd conv=notrunc` then `touch -r`: same size, same mtime, same inode; only ctime moves.
    cache = Cache(tmp_path)
    key = "t" * 64
    _commit(cache, key)
    path = cache.entry_dir(key) / "out" / "a.txt"
    before = path.stat()
    path.chmod(0o644)
    with open(path, "r+b") as f:
        f.write(b"J")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    entry, problem = cache.lookup(key)
    assert entry is None and problem == "cache entry corrupt (a.txt changed)"


def _digest_twice(state_db, tmp_path):
    f = tmp_path / "f.bin"
    f.write_bytes(b"one")
    state = digests.StatCache(state_db)
    assert state.file_digest(f) == digests.sha256_file(f)
    state.remember(f, digests.sha256_file(f))
    assert state.file_digest(f) == digests.sha256_file(f)
    state.close()


@pytest.mark.parametrize("damage", ["garbage", "folder", "journal garbage"])
def test_a_broken_state_db_is_replaced_not_fatal(tmp_path, damage):
    db = tmp_path / "cache" / "state.db"
    db.parent.mkdir()
    if damage == "folder":
        (db / "inside").mkdir(parents=True)
    else:
        db.write_bytes(b"\x00garbage " * 1000)
    _digest_twice(db, tmp_path)
    assert db.is_file(), "a fresh database took the bad one's place"
    _digest_twice(db, tmp_path)  # and works for the next run


def test_an_unusable_state_db_path_falls_back_to_memory(tmp_path):
    _digest_twice(tmp_path / ("x" * 300) / "state.db", tmp_path)  # name too long: cannot exist


def test_a_read_only_state_db_does_not_fail_a_build(tmp_path):
    import subprocess

    db = tmp_path / "cache" / "state.db"
    _digest_twice(db, tmp_path)
    # Root writes through file modes, so as root the file is made immutable (read-only even to root).
    lock = ["chattr", "+i", str(db)] if os.geteuid() == 0 else ["chmod", "0444", str(db)]
    subprocess.run(lock, check=True)
    try:
        with pytest.raises(Exception, match="readonly"):  # the database really refuses writes
            import sqlite3

            sqlite3.connect(db).execute("INSERT INTO file_digests VALUES ('p', 0, 0, 0, 0, 0, '')")
        (tmp_path / "f.bin").write_bytes(b"two")  # a changed file: its new digest must be written
        _digest_twice(db, tmp_path)
    finally:
        subprocess.run(["chattr", "-i", str(db)] if os.geteuid() == 0 else ["chmod", "0644", str(db)], check=True)


def test_material_index_round_trip(tmp_path):
    cache = Cache(tmp_path)
    assert cache.previous_material("digits", "train") is None
    cache.remember_material("digits", "train", {"params": {"epochs": 5}})
    assert cache.previous_material("digits", "train") == {"params": {"epochs": 5}}
    assert cache.previous_material("other", "train") is None


def test_tree_digest_of_a_file_is_its_sha256(tmp_path):
    f = tmp_path / "m.tflite"
    f.write_bytes(b"\x00model")
    assert digests.tree_digest(digests.tree_files(f)) == digests.sha256_file(f)


def test_tree_digest_depends_on_names_and_contents_not_times(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "w.bin").write_bytes(b"w")
    before = digests.tree_digest(digests.tree_files(tmp_path / "d"))
    os.utime(tmp_path / "d" / "sub" / "w.bin", (1, 1))
    assert digests.tree_digest(digests.tree_files(tmp_path / "d")) == before
    (tmp_path / "d" / "sub" / "w.bin").rename(tmp_path / "d" / "sub" / "v.bin")
    assert digests.tree_digest(digests.tree_files(tmp_path / "d")) != before


def test_a_digest_is_remembered_only_for_a_file_older_than_a_timestamp_tick(tmp_path, monkeypatch):
    """Racy git: a write within the tick in which a digest was taken can leave the whole stat
    unchanged (coarse filesystem clocks), so a fresh file is hashed again on every call."""
    state = digests.StatCache(tmp_path / "state.db")
    f = tmp_path / "f.bin"
    f.write_bytes(b"aaaa")
    reads = []
    real = digests.sha256_file
    monkeypatch.setattr(digests, "sha256_file", lambda p: reads.append(p) or real(p))
    for _ in range(2):
        state.file_digest(f)
    assert len(reads) == 2, "a file written just now is never trusted by its stat"
    monkeypatch.setattr(digests, "RACY_NS", 0)  # the same file, as if written long ago
    for _ in range(2):
        state.file_digest(f)
    assert len(reads) == 3, "an old file is read once, then known by its stat"
