"""The remote cache under attack, with fake steps: what a hostile or broken remote can make a
build do is refuse an entry, or give up on the remote, and build here; never hang, never fill
the disk, never leave an entry that a race between a gc and an upload broke.

Every build that could hang runs under a deadline (a thread joined with a timeout), so a
hang fails its test instead of the suite."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import fsspec
import pytest
from fsspec.implementations.local import LocalFileOpener, LocalFileSystem
from omegaconf import OmegaConf

from tfbuild.cache import Cache
from tfbuild.cache_remote_admin import choose_remote_garbage, collect_remote
from tfbuild.digests import FileRecord, tree_digest
from tfbuild.errors import ConfigError
from tfbuild.plan import make_plan
from tfbuild.remote_cache import RemoteCache
from tfbuild.remote_sync import open_remote
from tfbuild.resolver import resolve
from tfbuild.runner import BUILT, CACHED, run_plan

from tests.fakes import WriteStep, step
from tests.unit.test_remote_cache import Machine, _cache_tool, blob_of, chain, machine, manifests, project, remote, statuses

__all__ = ["machine", "project", "remote"]  # fixtures, imported for the tests here

DEADLINE_S = 30.0  # far above any of these builds (well under a second each): only a hang reaches it
DOWNLOADED = (CACHED, "downloaded from the remote cache")


def within(seconds: float, fn: Callable[[], Any]) -> Any:
    """fn() in a daemon thread: its result, or a failed test when it runs past `seconds`."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: it hangs"
    if "error" in box:
        raise box["error"]
    return box.get("result")


def _unblock_fifos(folder: Path) -> None:
    """Let a reader blocked in a FIFO's open (the bug this guards against) go."""
    for path in folder.rglob("*"):
        if stat.S_ISFIFO(path.lstat().st_mode):
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass


# -- only regular files are read -----------------------------------------------------------------


def _fifo(path: Path, tmp_path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _link_to_the_right_bytes(path: Path, tmp_path: Path) -> None:
    """A link is refused, not followed, even to a file with exactly the right bytes."""
    real = tmp_path / f"elsewhere-{path.name}"
    real.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(real)


def _link_to_a_device(path: Path, tmp_path: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")


def _folder(path: Path, tmp_path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "inside").write_text("x")


def _device(path: Path, tmp_path: Path) -> None:
    path.unlink()
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero's numbers: endless zeros
    except PermissionError:
        pytest.skip("making a device node needs root")


@pytest.mark.parametrize("replace", [_fifo, _link_to_the_right_bytes, _link_to_a_device, _folder, _device],
                         ids=lambda f: f.__name__.strip("_"))  # fmt: skip
@pytest.mark.parametrize("where", ["blob", "manifest"])
def test_only_regular_files_are_read_from_a_remote(machine, remote, tmp_path, where, replace):
    ci, laptop = machine("ci", "write"), machine("laptop", "read")
    ci.build()
    manifest = manifests(remote)["train"]
    replace(blob_of(remote, manifest) if where == "blob" else manifest, tmp_path)
    try:
        result = within(DEADLINE_S, laptop.build)
    finally:
        _unblock_fifos(remote)
    assert statuses(result)["train"][0] == BUILT and laptop.runs["train"] == 1
    assert statuses(result)["data"] == DOWNLOADED  # the rest of the remote still serves
    assert len(laptop.warnings) == 1 and "remote cache entry for 'train' refused" in laptop.warnings[0], laptop.warnings
    assert "not a regular file" in laptop.warnings[0] and "building it here" in laptop.warnings[0]
    assert laptop.leftovers() == []


def test_remote_list_and_gc_read_no_fifo(machine, remote, project, capsys):
    """A FIFO as a manifest or a pin record: list and gc go on, naming the pin record."""
    machine("ci", "write").build()
    manifest = manifests(remote)["train"]
    manifest.unlink()
    os.mkfifo(manifest)
    (remote / "pins").mkdir()
    os.mkfifo(remote / "pins" / "rel.json")
    url = f"file://{remote}"
    try:
        assert within(DEADLINE_S, lambda: _cache_tool("list", "--remote", url)) == 0
        captured = capsys.readouterr()
        assert "2 entries" in captured.out and "pins/rel.json: unreadable pin record" in captured.err
        assert within(DEADLINE_S, lambda: _cache_tool("gc", "--remote", url, "--older-than", "30d")) == 2
        assert "pins/rel.json: unreadable pin record" in capsys.readouterr().err
    finally:
        _unblock_fifos(remote)


# -- a download is capped, and needs the room ----------------------------------------------------


def _claim(manifest: Path, nbytes: int) -> None:
    """Make the manifest claim `nbytes` for its file, consistently (its output's digest and
    size follow), as a forger would: only the cap can refuse it before the download."""
    document = json.loads(manifest.read_text())
    output = document["outputs"]["out"]
    output["files"][0]["bytes"] = nbytes
    output["bytes"] = nbytes
    output["sha256"] = tree_digest([FileRecord(**r) for r in output["files"]])
    manifest.write_text(json.dumps(document))


class _Spy:
    """Which remote files are opened, and how many bytes are read from them (it only looks)."""

    def __init__(self, monkeypatch):
        self.opened: list[str] = []
        self.read = 0
        chunk, opened = RemoteCache._chunk, RemoteCache._opened

        def chunking(remote_cache, handle, most):
            data = chunk(remote_cache, handle, most)
            self.read += len(data)
            return data

        def opening(remote_cache, path, limit, name):
            self.opened.append(name)
            return opened(remote_cache, path, limit, name)

        monkeypatch.setattr(RemoteCache, "_chunk", chunking)
        monkeypatch.setattr(RemoteCache, "_opened", opening)


@pytest.mark.parametrize("claimed", [5 << 30, 1 << 40, 2**62])
def test_a_manifest_claiming_more_than_the_cap_is_refused_before_a_byte_is_read(machine, remote, monkeypatch, claimed):
    ci = machine("ci", "write")
    ci.build()
    _claim(manifests(remote)["train"], claimed)
    laptop = machine("laptop", "read")  # the default cap: 4 GiB
    spy = _Spy(monkeypatch)
    result = within(DEADLINE_S, laptop.build)
    assert statuses(result)["train"][0] == BUILT
    assert [w for w in laptop.warnings if "'train' refused" in w and "over cache.remote_max_entry_bytes: 4.0 GB" in w], laptop.warnings
    assert "train.txt" not in spy.opened and {"its manifest", "data.txt"} <= set(spy.opened)
    assert laptop.leftovers() == []


@pytest.mark.parametrize("cap, served", [(5, False), (9, False), (10_000, True)])
def test_the_cap_comes_from_the_setting(machine, remote, cap, served):
    machine("ci", "write").build([step("data", text="0123456789")])  # a 10-byte file
    laptop = machine("laptop", "read")
    cache = Cache(laptop.root / "cache")
    sync = open_remote(cache, {"remote": f"file://{remote}", "remote_max_entry_bytes": cap}, laptop.warnings.append)
    assert sync is not None and sync.remote.max_entry_bytes == cap
    result = run_plan(make_plan([step("data", text="0123456789")]), cache, {"write": WriteStep("write", laptop.runs)},
                      run_dir=laptop.root / "run", remote=sync)  # fmt: skip
    cache.close()
    assert (statuses(result)["data"] == DOWNLOADED) is served
    assert bool(laptop.warnings) is not served
    if not served:
        assert f"over cache.remote_max_entry_bytes: {cap} B" in laptop.warnings[0]


class _LyingFS(LocalFileSystem):
    """A store that reports each file as the size its record claims, and then serves more."""

    protocol = ("lyingtest",)
    cachable = False
    claimed: dict[str, int] = {}

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(str(path).removeprefix("lyingtest://"))

    def info(self, path, **kwargs):
        info = super().info(path, **kwargs)
        info["size"] = self.claimed.get(info["name"].rsplit("/", 1)[-1], info["size"])
        return info


@pytest.mark.parametrize("extra", [1, 5000, 3 << 20])
def test_a_file_bigger_than_its_record_is_refused_while_streaming(machine, remote, monkeypatch, extra):
    """The store says the file is the claimed size; the stream is still cut at claim + 1."""
    ci = machine("ci", "write")
    ci.build()
    blob = blob_of(remote, manifests(remote)["train"])
    claim = blob.stat().st_size
    blob.write_bytes(blob.read_bytes() + b"x" * extra)
    fsspec.register_implementation("lyingtest", _LyingFS, clobber=True)
    monkeypatch.setattr(_LyingFS, "claimed", {blob.name: claim})
    laptop = Machine(ci.root.parent / "laptop", f"lyingtest://{remote}", "read")
    spy = _Spy(monkeypatch)
    result = within(DEADLINE_S, laptop.build)
    assert statuses(result)["train"][0] == BUILT
    assert [w for w in laptop.warnings if "'train' refused (train.txt is larger than its record)" in w], laptop.warnings
    assert spy.read < 2 * (1 << 20) + claim  # never much past the claim, whatever the file holds
    assert laptop.leftovers() == []


@pytest.mark.parametrize("free", [0, 1000, 255 << 20])
def test_a_download_the_disk_cannot_take_is_not_started(machine, remote, monkeypatch, free):
    """Only the probe of free space is faked: the cache's disk reports `free` bytes."""
    ci = machine("ci", "write")
    ci.build()
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=free))
    laptop = machine("laptop", "readwrite")
    before = {p: p.stat().st_mtime_ns for p in remote.rglob("*") if p.is_file()}
    result = within(DEADLINE_S, laptop.build)
    assert {r.status for r in result.steps} == {BUILT}
    assert len(laptop.warnings) == 3 and all("from the remote cache (it needs" in w and "free" in w for w in laptop.warnings)
    assert laptop.leftovers() == []
    # The remote's entries are fine: they are not re-uploaded as if refused.
    assert {p: p.stat().st_mtime_ns for p in before} == before


# -- a stalled remote --------------------------------------------------------------------------------


class _StallingFile(LocalFileOpener):
    def read(self, *args, **kwargs):
        if self.tell() > 0:
            _StallingFS.wait("read midway")
        size = args[0] if args else -1
        return super().read(64 if size is None or size < 0 else min(size, 64))  # short reads: several per file

    def write(self, *args, **kwargs):
        _StallingFS.wait("write")
        return super().write(*args, **kwargs)


class _StallingFS(LocalFileSystem):
    """A file:// store whose chosen calls stop answering until the test ends."""

    protocol = ("stalltest",)
    cachable = False
    stall: set[str] = set()
    release = threading.Event()

    @classmethod
    def wait(cls, call: str) -> None:
        if call in cls.stall:
            cls.release.wait(DEADLINE_S)

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(str(path).removeprefix("stalltest://"))

    def __init__(self, *args, **kwargs):
        self.wait("connect")
        super().__init__(*args, **kwargs)

    def info(self, path, **kwargs):
        self.wait("info")
        return super().info(path, **kwargs)

    def _open(self, path, mode="rb", block_size=None, **kwargs):
        self.wait("open")
        path = self._strip_protocol(path)
        return _StallingFile(path, mode, fs=self, **kwargs)

    def mv(self, path1, path2, **kwargs):
        self.wait("rename")
        return super().mv(path1, path2, **kwargs)

    def find(self, path, *args, **kwargs):
        self.wait("list")
        return super().find(path, *args, **kwargs)


@pytest.fixture
def stalling(monkeypatch):
    fsspec.register_implementation("stalltest", _StallingFS, clobber=True)
    release = threading.Event()
    monkeypatch.setattr(_StallingFS, "release", release)
    monkeypatch.setattr(_StallingFS, "stall", set())
    yield _StallingFS
    release.set()  # the calls left behind end


STEPS = [step("data", text="d" * 500), step("train", {"data": "data"}, text="t" * 500)]


@pytest.mark.parametrize("call", ["connect", "info", "open", "read midway"])
def test_a_stalled_remote_times_out_and_the_build_goes_on(machine, remote, stalling, call):
    machine("ci", "write").build(STEPS)
    stalling.stall.add(call)
    laptop = Machine(remote.parent / "laptop", f"stalltest://{remote}", "read", timeout_s=0.5)
    started = time.monotonic()
    result = within(DEADLINE_S, lambda: laptop.build(STEPS))
    assert time.monotonic() - started < 10
    assert {r.status for r in result.steps} == {BUILT} and laptop.runs == Counter(data=1, train=1)
    assert len(laptop.warnings) == 1, laptop.warnings
    # 0.5 s a call; a read of up to a MiB, a second more
    assert re.search(r"no answer in (0\.5|1\.5) s", laptop.warnings[0]) and "building without the remote cache" in laptop.warnings[0]
    assert laptop.leftovers() == []


@pytest.mark.parametrize("call", ["write", "rename", "open"])
def test_a_stalled_upload_times_out_and_publishes_nothing(machine, remote, stalling, call):
    stalling.stall.add(call)
    ci = Machine(remote.parent / "ci", f"stalltest://{remote}", "write", timeout_s=0.5)
    result = within(DEADLINE_S, lambda: ci.build(STEPS))
    assert {r.status for r in result.steps} == {BUILT}
    assert len(ci.warnings) == 1 and "no answer in 0.5" in ci.warnings[0] and "not uploaded" in ci.warnings[0], ci.warnings
    assert not list(remote.glob("ac/*/*")), "no entry is half there"


def test_a_stalled_remote_fails_list_and_gc_in_one_line(machine, remote, project, stalling, capsys):
    machine("ci", "write").build(STEPS)
    (project / "conf").mkdir()
    (project / "conf" / "config.yaml").write_text("cache:\n  remote_timeout_s: 1\n")
    stalling.stall.add("list")
    for command in (("list",), ("gc", "--older-than", "30d")):
        assert within(DEADLINE_S, lambda: _cache_tool(*command, "--remote", f"stalltest://{remote}")) == 1
        err = capsys.readouterr().err
        assert "no answer in 1 s" in err and err.count("\n") == 1


# -- gc and uploads --------------------------------------------------------------------------------


def _age(remote: Path, days: float) -> None:
    old = time.time() - days * 86400
    for path in remote.rglob("*"):
        if path.is_file():
            os.utime(path, (old, old))


def _gc_chooses(url: str):
    remote = RemoteCache(url)
    garbage, _ = choose_remote_garbage(remote, {}, older_than=30 * 86400, include_pinned=False, now=time.time())
    return lambda: collect_remote(remote, garbage, dry_run=False, say=lambda line: None)


def _whole_gc(url: str) -> None:
    _gc_chooses(url)()


def _every_manifest_names_files_that_exist(remote: Path) -> None:
    for manifest in remote.glob("ac/*/*.json"):
        sha = json.loads(manifest.read_text())["outputs"]["out"]["files"][0]["sha256"]
        assert (remote / "cas" / sha[:2] / sha).is_file(), f"{manifest.name} names a deleted file"


# Where a gc meets the upload of an entry whose one file the remote already holds (old, and
# named by no manifest the gc keeps): (the gc's choice, its deletions) at points of the upload.
INTERLEAVINGS = {
    "whole gc between the upload's look and its touch": ("before touch", "before touch"),
    "whole gc between the touch and the manifest": ("before manifest", "before manifest"),
    "chosen before the upload, deleted between touch and manifest": ("start", "before manifest"),
    "chosen before the upload, deleted after it": ("start", "end"),
    "chosen between look and touch, deleted after the upload": ("before touch", "end"),
}


# Another key (a param the fake step does not write), the same bytes: the same file in cas/.
SECOND = step("second", text="same bytes", variant=2)


@pytest.mark.parametrize("interleaving", INTERLEAVINGS)
def test_a_gc_racing_an_upload_never_leaves_a_broken_entry(machine, remote, monkeypatch, interleaving):
    one = machine("one", "write")
    one.build([step("first", text="same bytes")])
    _age(remote, 40)  # its entry and its file: old enough for a 30-day gc
    url = f"file://{remote}"
    choose_at, delete_at = INTERLEAVINGS[interleaving]
    pending: list[Callable[[], Any]] = []

    def at(point: str) -> None:
        if point == choose_at:
            pending.append(_gc_chooses(url))
        if point == delete_at:
            pending.pop()()

    touch, write = RemoteCache._touch, RemoteCache._write

    def touching(self, blob):
        at("before touch")
        return touch(self, blob)

    def writing(self, path, data):
        if "/ac/" in path:
            at("before manifest")
        return write(self, path, data)

    monkeypatch.setattr(RemoteCache, "_touch", touching)
    monkeypatch.setattr(RemoteCache, "_write", writing)
    two = machine("two", "write")
    at("start")
    two.build([SECOND])  # another entry, the same file
    at("end")
    monkeypatch.undo()
    assert two.warnings == []
    _every_manifest_names_files_that_exist(remote)
    reader = machine("reader", "read")
    assert statuses(reader.build([SECOND]))["second"] == DOWNLOADED
    assert reader.warnings == []


def test_gc_looks_again_before_deleting_a_file(machine, remote):
    """Chosen while old and unnamed; young, or named, by the time it would be deleted: kept."""
    machine("one", "write").build([step("a", text="A"), step("b", text="B"), step("c", text="C")])
    found = manifests(remote)
    blobs = {name: blob_of(remote, manifest) for name, manifest in found.items()}
    b_manifest = found["b"].read_bytes()
    for manifest in found.values():
        manifest.unlink()
    _age(remote, 40)
    collect = _gc_chooses(f"file://{remote}")  # chooses all three files
    os.utime(blobs["a"])  # an upload reusing it touched it
    found["b"].write_bytes(b_manifest)  # an upload wrote a manifest naming it
    collect()
    assert blobs["a"].is_file() and blobs["b"].is_file() and not blobs["c"].exists()


def test_a_reader_meeting_a_broken_entry_drops_the_mark_and_the_next_upload_repairs_it(machine, remote, tmp_path):
    """A gc racing an upload (before this was fixed), or a hand, left train's manifest naming
    a deleted file. A machine whose cache says it uploaded train meets it as a reader: the
    note is dropped, so its next build that writes uploads train again, whole."""
    ci = machine("ci", "write")
    ci.build()
    cache = Cache(ci.root / "cache")
    train_key = json.loads(manifests(remote)["train"].read_text())["key"]
    assert cache.uploaded_within(ci.url, train_key, 3600)
    blob_of(remote, manifests(remote)["train"]).unlink()
    shutil.rmtree(cache.entry_dir(train_key))  # this machine's own copy went too (a local gc)
    reader = Machine(ci.root, ci.url, "read")  # the same cache folder, reading
    result = reader.build()
    assert statuses(result)["train"][0] == BUILT
    assert [w for w in reader.warnings if "'train' refused (train.txt is missing from the remote)" in w], reader.warnings
    assert not cache.uploaded_within(ci.url, train_key, 3600), "the note that the remote holds it was dropped"
    ci.build()  # everything cached here: only the dropped note sends train again
    assert ci.warnings == []
    third = machine("third", "read")
    assert statuses(third.build())["train"] == DOWNLOADED and third.warnings == []


def test_an_upload_checks_that_an_entry_already_there_is_whole(machine, remote):
    """Without any note (push, or a note a day old), an entry whose manifest is there but
    whose file is not is uploaded again; one that is whole is left as it is."""
    ci = machine("ci", "write")
    ci.build()
    cache = Cache(ci.root / "cache")
    entries = {json.loads(p.read_text())["name"]: cache.lookup(json.loads(p.read_text())["key"])[0] for p in remote.glob("ac/*/*.json")}
    blob_of(remote, manifests(remote)["train"]).unlink()
    untouched = manifests(remote)["data"].stat().st_mtime_ns
    remote_cache = RemoteCache(ci.url)
    assert remote_cache.upload(entries["data"]) == 0
    assert remote_cache.upload(entries["train"]) > 0
    assert manifests(remote)["data"].stat().st_mtime_ns == untouched
    _every_manifest_names_files_that_exist(remote)


# -- the settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("override, message", [
    ("cache.remote_timeout_s=0", "cache.remote_timeout_s must be at least 1, got 0"),
    ("cache.remote_timeout_s=-5", "cache.remote_timeout_s must be at least 1, got -5"),
    ("cache.remote_timeout_s=100000", "cache.remote_timeout_s must be at most 86400, got 100000"),
    ("cache.remote_max_entry_bytes=0", "cache.remote_max_entry_bytes must be at least 1, got 0"),
    ("cache.remote_max_entry_bytes=-1", "cache.remote_max_entry_bytes must be at least 1, got -1"),
    (f"cache.remote_max_entry_bytes={2**51}", f"cache.remote_max_entry_bytes must be at most {2**50}, got {2**51}"),
])  # fmt: skip
def test_bad_remote_settings_are_one_line_config_errors_naming_the_key(compose_cfg, override, message):
    with pytest.raises(ConfigError) as info:
        resolve(compose_cfg("recipe=digits", override))
    assert str(info.value) == message


def test_the_remote_settings_reach_the_remote(compose_cfg):
    cfg = compose_cfg("recipe=digits", "cache.remote=file:///tmp/x", "cache.remote_timeout_s=7",
                      "cache.remote_max_entry_bytes=1000")  # fmt: skip
    sync = open_remote(Cache.__new__(Cache), OmegaConf.to_container(cfg.cache), lambda text: None)
    assert sync is not None and (sync.remote.timeout_s, sync.remote.max_entry_bytes) == (7.0, 1000)
    defaults = open_remote(Cache.__new__(Cache), {"remote": "file:///tmp/x"}, lambda text: None)
    assert defaults is not None and (defaults.remote.timeout_s, defaults.remote.max_entry_bytes) == (60.0, 4 << 30)
    assert OmegaConf.to_container(compose_cfg("recipe=digits").cache)["remote_max_entry_bytes"] == 4 << 30
