"""The remote cache with fake steps and file:// remotes: two "machines" (two cache folders)
sharing one remote; what is downloaded is checked like a local hit; what is damaged, in any of
the ways a clumsy user, a killed upload or an attacker damages it, is refused and rebuilt."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest

from tfbuild.cache import Cache
from tfbuild.plan import make_plan
from tfbuild.remote_cache import RemoteCache, RemoteError, check_remote_url
from tfbuild.remote_sync import UPLOAD_MARK_TTL_S, RemoteSync
from tfbuild.runner import BUILT, CACHED, run_plan

from tests.fakes import WriteStep, step


def chain():
    return [step("data"), step("train", {"data": "data"}), step("export", {"model": "train"}, publish=True)]


class Machine:
    """One cache folder and its builds against a shared remote."""

    def __init__(self, root: Path, url: str, mode: str, **options):
        self.root, self.url, self.mode = root, url, mode
        self.options = options  # RemoteCache's: timeout_s, max_entry_bytes
        self.runs: Counter = Counter()
        self.warnings: list[str] = []

    def build(self, steps=None, **kwargs):
        cache = Cache(self.root / "cache")
        sync = RemoteSync(cache, RemoteCache(self.url, **self.options), self.mode, self.warnings.append)
        result = run_plan(make_plan(steps or chain()), cache, {"write": WriteStep("write", self.runs)},
                          run_dir=self.root / "run", remote=sync, **kwargs)  # fmt: skip
        sync.upload([r.entry for r in result.steps if r.entry is not None])
        cache.close()
        return result

    def leftovers(self) -> list[Path]:
        return list((self.root / "cache" / "tmp").glob("*")) if (self.root / "cache" / "tmp").is_dir() else []


@pytest.fixture
def remote(tmp_path) -> Path:
    return tmp_path / "remote"


@pytest.fixture
def machine(tmp_path, remote):
    def make(name: str, mode: str = "readwrite", **options) -> Machine:
        return Machine(tmp_path / name, f"file://{remote}", mode, **options)

    return make


def statuses(result):
    return {r.spec.name: (r.status, r.reason) for r in result.steps}


def manifests(remote: Path) -> dict[str, Path]:
    """step name -> its manifest in the remote."""
    return {json.loads(p.read_text())["name"]: p for p in remote.glob("ac/*/*.json")}


def blob_of(remote: Path, manifest: Path) -> Path:
    sha = json.loads(manifest.read_text())["outputs"]["out"]["files"][0]["sha256"]
    return remote / "cas" / sha[:2] / sha


def test_a_second_machine_builds_nothing_the_first_built(machine, remote):
    ci, laptop = machine("ci", "write"), machine("laptop", "read")
    ci.build()
    result = laptop.build()
    assert statuses(result) == {n: (CACHED, "downloaded from the remote cache") for n in ("data", "train", "export")}
    assert laptop.runs == Counter()
    assert (laptop.root / "run" / "export.txt").read_text() == (ci.root / "run" / "export.txt").read_text()
    assert laptop.warnings == [] and laptop.leftovers() == []
    # Downloaded entries are ordinary local entries now: the next build asks nobody.
    assert statuses(laptop.build()) == {n: (CACHED, "cached") for n in ("data", "train", "export")}


def test_a_read_only_machine_uploads_nothing_and_a_writer_downloads_nothing(machine, remote):
    machine("laptop", "read").build()
    assert not remote.exists() or manifests(remote) == {}
    machine("ci", "write").build()
    second_ci = machine("ci2", "write")
    second_ci.build()
    assert second_ci.runs == Counter(data=1, train=1, export=1)  # write mode never downloads


def test_uploads_put_every_file_before_the_manifest(machine, remote, monkeypatch):
    """A killed upload leaves files (named by their content, harmless) and no manifest: no
    reader ever finds an entry whose files are not all there."""
    ci = machine("ci", "write")
    written: list[str] = []
    original = RemoteCache._put

    def put(self, path, write):
        written.append(path.split("/")[-3])  # "ac" or "cas"
        return original(self, path, write)

    monkeypatch.setattr(RemoteCache, "_put", put)
    ci.build([step("data")])
    assert written == ["cas", "ac"]

    def dies_on_manifest(self, path, write):
        if "/ac/" in path:
            raise RemoteError("connection lost")
        return original(self, path, write)

    monkeypatch.setattr(RemoteCache, "_put", dies_on_manifest)
    ci.build([step("data"), step("train", {"data": "data"})])
    assert "train" not in manifests(remote)
    assert any("connection lost" in w for w in ci.warnings)
    assert not list(remote.glob("tmp/*"))  # the in-flight file was removed or renamed


def _flip_a_byte(remote, manifest):
    blob = blob_of(remote, manifest)
    data = bytearray(blob.read_bytes())
    data[0] ^= 1
    blob.write_bytes(bytes(data))


def _truncate(remote, manifest):
    blob = blob_of(remote, manifest)
    blob.write_bytes(blob.read_bytes()[:-1])


def _grow(remote, manifest):
    blob = blob_of(remote, manifest)
    blob.write_bytes(blob.read_bytes() + b"x" * 5000)


def _remove_file(remote, manifest):
    blob_of(remote, manifest).unlink()


def _garbage_manifest(remote, manifest):
    manifest.write_text("{not json")


def _empty_manifest(remote, manifest):
    manifest.write_text("")


def _huge_manifest(remote, manifest):
    manifest.write_bytes(b" " * (17 << 20))


def _manifest_of_another_key(remote, manifest):
    other = next(p for p in remote.glob("ac/*/*.json") if p != manifest)
    manifest.write_bytes(other.read_bytes())


def _edit_manifest(change):
    def damage(remote, manifest):
        document = json.loads(manifest.read_text())
        change(document)
        manifest.write_text(json.dumps(document))

    return damage


def _path_leaving(document):
    document["outputs"]["out"]["path"] = "../../escaped.txt"


def _digest_as_path(document):
    document["outputs"]["out"]["files"][0]["sha256"] = "../../../../etc/passwd"


def _material_edited(document):
    document["material"]["params"] = {"text": "something else"}


def _record_size_lies(document):
    document["outputs"]["out"]["files"][0]["bytes"] += 1


def _second_file_named_inside_the_first(document):
    record = dict(document["outputs"]["out"]["files"][0])
    document["outputs"]["out"]["files"] = [{**record, "path": "a"}, {**record, "path": "a/b"}]


@pytest.mark.parametrize("damage", [
    _flip_a_byte, _truncate, _grow, _remove_file, _garbage_manifest, _empty_manifest, _huge_manifest,
    _manifest_of_another_key, _edit_manifest(_path_leaving), _edit_manifest(_digest_as_path),
    _edit_manifest(_material_edited), _edit_manifest(_record_size_lies),
    _edit_manifest(_second_file_named_inside_the_first),
], ids=lambda f: getattr(f, "__name__", "edit"))  # fmt: skip
def test_a_damaged_remote_entry_is_refused_rebuilt_and_never_served(machine, remote, tmp_path, damage):
    ci, laptop = machine("ci", "write"), machine("laptop", "readwrite")
    ci.build()
    damage(remote, manifests(remote)["train"])
    result = laptop.build()
    assert laptop.runs["train"] == 1, "the damaged entry must be rebuilt here"
    assert statuses(result)["train"][0] == BUILT
    assert statuses(result)["data"] == (CACHED, "downloaded from the remote cache")
    assert [w for w in laptop.warnings if "'train' refused" in w], laptop.warnings
    assert laptop.leftovers() == []  # the refused download left nothing in the local cache
    assert not (tmp_path / "escaped.txt").exists() and not list(tmp_path.rglob("escaped.txt"))
    # In readwrite mode the rebuilt entry replaced the refused copy: a third machine gets a good one.
    third = machine("third", "read")
    assert statuses(third.build())["train"] == (CACHED, "downloaded from the remote cache")
    assert third.runs == Counter() and third.warnings == []


def test_a_download_killed_midway_leaves_nothing_behind(machine, remote, monkeypatch):
    machine("ci", "write").build()
    laptop = machine("laptop", "read")

    def killed(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(RemoteCache, "_download", killed)
    with pytest.raises(KeyboardInterrupt):
        laptop.build()
    assert laptop.leftovers() == []
    assert not list((laptop.root / "cache" / "entries").glob("*/*")) if (laptop.root / "cache" / "entries").exists() else True


def test_an_unreachable_remote_warns_once_and_the_build_goes_on(machine, tmp_path):
    pytest.importorskip("sshfs")
    laptop = Machine(tmp_path / "laptop", "sftp://127.0.0.1:1/nowhere", "readwrite")
    result = laptop.build()
    assert {r.status for r in result.steps} == {BUILT}
    assert len(laptop.warnings) == 1 and "building without the remote cache" in laptop.warnings[0], laptop.warnings


def test_an_upload_this_machine_made_recently_is_not_asked_about_again(machine, remote):
    ci = machine("ci", "write")
    ci.build()
    uploaded = set(manifests(remote))
    for path in remote.glob("ac/*/*.json"):
        path.unlink()  # a remote gc took them
    ci.build()
    assert manifests(remote) == {}, "a fresh note of the upload is trusted: the remote is not asked"
    for mark in (ci.root / "cache" / "remote").rglob("*"):
        if mark.is_file():
            old = time.time() - UPLOAD_MARK_TTL_S - 60
            os.utime(mark, (old, old))
    ci.build()
    assert set(manifests(remote)) == uploaded, "an old note is checked: what the gc took is uploaded again"


def test_the_same_key_uploaded_from_two_machines_stays_one_good_entry(machine, remote):
    first, second = machine("one", "write"), machine("two", "write")
    first.build()
    second.build()
    assert len(list(remote.glob("ac/*/*.json"))) == 3
    reader = machine("reader", "read")
    reader.build()
    assert reader.runs == Counter() and reader.warnings == []


@pytest.mark.parametrize("url, message", [
    ("s3://user:secret@bucket/cache", "credentials do not belong in the URL"),
    ("https://example.com/cache?token=abc", "credentials do not belong in the URL"),
    ("nosuch://bucket/cache", "no protocol fsspec knows"),
    ("gs://bucket/cache", "pip install 'tfbuild[gcs]'"),
    ("", "names no folder"),
    ("file://", "names no folder"),
    ("file:///", "names no folder"),
])  # fmt: skip
def test_a_remote_url_is_checked_with_a_one_line_reason(url, message):
    with pytest.raises(ValueError, match="^cache.remote: ") as caught:
        check_remote_url(url)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_plain_file_url_is_accepted(tmp_path):
    assert check_remote_url(f"file://{tmp_path}") == f"file://{tmp_path}"


# -- tfbuild-cache push / pull / list / gc --remote --------------------------------------------


def _pin(project: Path, name: str, machine: Machine, steps=("data", "train")) -> dict[str, str]:
    """A pinned recipe whose lock names the entries `machine` built for `steps`."""
    built = {}
    for manifest in (machine.root / "cache" / "entries").glob("*/*/manifest.json"):
        document = json.loads(manifest.read_text())
        built[document["name"]] = document["key"]
    keys = {name: built[name] for name in steps}  # in plan order
    (project / "recipes" / "pinned").mkdir(parents=True, exist_ok=True)
    lock = "\n".join(f"    {name}: {key}" for name, key in keys.items())
    (project / "recipes" / "pinned" / f"{name}.yaml").write_text(f"# @package _global_\nlock:\n  steps:\n{lock}\n")
    return keys


def _cache_tool(*args: str) -> int:
    from tfbuild.cache_admin import main

    with pytest.raises(SystemExit) as ended:
        main(list(args))
    return ended.value.code


@pytest.fixture
def project(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def test_push_then_pull_move_exactly_the_entries_a_pin_needs(machine, remote, project, capsys):
    ci = machine("ci", "read")  # builds locally only: push is the one upload
    ci.build()
    keys = _pin(project, "digits-1.0", ci)
    assert _cache_tool("push", "recipe=pinned/digits-1.0", "--remote", f"file://{remote}", "--cache", str(ci.root / "cache")) == 0
    assert "pushed pin 'digits-1.0': 2 entries uploaded" in capsys.readouterr().out
    assert set(manifests(remote)) == {"data", "train"}  # exactly the pin's: not export
    assert json.loads(next(remote.glob("pins/*.json")).read_text())["keys"] == sorted(keys.values())

    laptop = project.parent / "laptop-cache"
    assert _cache_tool("pull", "pinned/digits-1.0", "--remote", f"file://{remote}", "--cache", str(laptop)) == 0
    assert "pulled pin 'digits-1.0': 2 entries downloaded and checked, 0 already here" in capsys.readouterr().out
    cache = Cache(laptop)
    assert all(cache.lookup(key)[0] is not None for key in keys.values())
    assert set(cache.pinned_keys()) == set(keys.values())  # local gc keeps what was pulled for a pin
    assert _cache_tool("pull", "digits-1.0", "--remote", f"file://{remote}", "--cache", str(laptop)) == 0
    assert "0 entries downloaded and checked, 2 already here" in capsys.readouterr().out


def test_push_refuses_a_pin_whose_entries_are_not_all_here(machine, remote, project, capsys):
    ci = machine("ci", "read")
    ci.build()
    _pin(project, "rel", ci)
    other = project.parent / "empty-cache"
    (other / "entries").mkdir(parents=True)
    assert _cache_tool("push", "recipe=pinned/rel", "--remote", f"file://{remote}", "--cache", str(other)) == 2
    err = capsys.readouterr().err
    assert "2 of the 2 entries pin 'rel' needs are not in the local cache (data, train)" in err
    assert err.count("\n") == 1 and not remote.exists()


def test_pull_of_a_tampered_entry_fails_and_commits_nothing(machine, remote, project, capsys):
    ci = machine("ci", "write")
    ci.build()
    keys = _pin(project, "rel", ci)
    _flip_a_byte(remote, manifests(remote)["train"])
    laptop = project.parent / "laptop-cache"
    assert _cache_tool("pull", "recipe=pinned/rel", "--remote", f"file://{remote}", "--cache", str(laptop)) == 2
    captured = capsys.readouterr()
    assert "remote cache entry for 'train' refused (train.txt changed)" in captured.err
    assert "1 of the 2 entries pin 'rel' needs could not be pulled (train)" in captured.err
    assert Cache(laptop).lookup(keys["train"])[0] is None and Cache(laptop).lookup(keys["data"])[0] is not None


@pytest.mark.parametrize("args, message", [
    (("pull", "recipe=pinned/nope"), "recipe: 'recipe=pinned/nope' is not a pinned recipe; pinned: rel"),
    (("push", "recipe=pinned/rel"), "no remote cache given, and conf/config.yaml sets no cache.remote"),
    (("gc", "--remote", "file:///x", "--max-size", "1GB"), "gc --remote takes --older-than AGE"),
    (("list", "--remote", "s3://u:p@b/x"), "cache.remote: credentials do not belong in the URL"),
])  # fmt: skip
def test_remote_commands_refuse_bad_arguments_in_one_line(machine, project, capsys, args, message):
    ci = machine("ci", "read")
    ci.build([step("data")])
    _pin(project, "rel", ci, steps=("data",))
    if args[0] == "pull":
        args = (*args, "--remote", "file:///tmp/x")
    assert _cache_tool(*args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_the_remote_is_read_from_the_projects_config_when_not_given(machine, remote, project, capsys):
    (project / "conf").mkdir()
    (project / "conf" / "config.yaml").write_text(f"cache:\n  remote: file://{remote}\n")
    ci = machine("ci", "write")
    ci.build()
    assert _cache_tool("list", "--remote", f"file://{remote}") == 0
    listing = capsys.readouterr().out
    assert "3 entries" in listing and "train" in listing


def _age(remote: Path, days: float) -> None:
    old = time.time() - days * 86400
    for path in remote.rglob("*"):
        if path.is_file():
            os.utime(path, (old, old))


def test_remote_gc_never_deletes_what_a_pin_needs(machine, remote, project, capsys):
    ci = machine("ci", "write")
    ci.build()
    keys = _pin(project, "rel", ci, steps=("train",))
    assert _cache_tool("push", "recipe=pinned/rel", "--cache", str(ci.root / "cache"), "--remote", f"file://{remote}") == 0
    (project / "recipes" / "pinned" / "rel.yaml").unlink()  # the remote's own pin record still protects it
    _age(remote, 40)
    ci.build([step("fresh", text="new")])  # uploaded today
    assert _cache_tool("gc", "--remote", f"file://{remote}", "--older-than", "30d") == 0
    out = capsys.readouterr().out
    assert "2 entries and 2 unreferenced files were deleted" in out and "1 kept for pinned recipes" in out
    assert set(manifests(remote)) == {"train", "fresh"}
    # What remains is whole: a new machine gets train from the remote, builds data and export.
    reader = machine("reader", "read")
    assert statuses(reader.build())["train"] == (CACHED, "downloaded from the remote cache")
    assert reader.runs == Counter(data=1, export=1)
    assert keys["train"] in {json.loads(p.read_text())["key"] for p in remote.glob("ac/*/*.json")}


def test_two_checkouts_pushing_one_pin_name_keep_both_records(machine, remote, project, capsys):
    """Pin records are per content, remote as local: a second checkout's push of `rel` with other
    entries adds a record beside the first one's, and remote gc keeps the union."""
    first, second = machine("first", "write"), machine("second", "write")
    first.build()
    keys_first = _pin(project, "rel", first, steps=("train",))
    assert _cache_tool("push", "recipe=pinned/rel", "--cache", str(first.root / "cache"), "--remote", f"file://{remote}") == 0
    second.build([step("data", text="other data"), step("train", inputs={"data": "data"})])
    keys_second = _pin(project, "rel", second, steps=("train",))
    assert keys_first["train"] != keys_second["train"]
    assert _cache_tool("push", "recipe=pinned/rel", "--cache", str(second.root / "cache"), "--remote", f"file://{remote}") == 0
    assert len(list(remote.glob("pins/*.json"))) == 2
    (project / "recipes" / "pinned" / "rel.yaml").unlink()  # only the remote's records protect them now
    _age(remote, 40)
    assert _cache_tool("gc", "--remote", f"file://{remote}", "--older-than", "30d") == 0
    capsys.readouterr()
    kept = {json.loads(p.read_text())["key"] for p in remote.glob("ac/*/*.json")}
    assert {keys_first["train"], keys_second["train"]} <= kept


def test_remote_gc_keeps_young_unreferenced_files_an_upload_may_still_name(machine, remote, project, capsys):
    ci = machine("ci", "write")
    ci.build([step("data")])
    for path in remote.glob("ac/*/*.json"):
        path.unlink()  # as if the manifest were still on its way
    assert _cache_tool("gc", "--remote", f"file://{remote}", "--older-than", "1d", "--dry-run") == 0
    assert "0 entries and 0 unreferenced files would be deleted" in capsys.readouterr().out
    assert len(list(remote.glob("cas/*/*"))) == 1


def test_the_summary_shows_what_the_remote_served_as_remote(machine):
    from rich.console import Console

    from tfbuild.console_tables import summary_table

    machine("ci", "write").build()
    result = machine("laptop", "read").build([*chain(), step("extra", text="new here")])
    for width in (80, 140):
        console = Console(width=width, record=True, color_system=None)
        console.print(summary_table(result, "build"))
        text = console.export_text()
        assert [line.split()[1] for line in text.splitlines() if line.split()[:1] in (["data"], ["train"], ["export"])] == ["remote"] * 3
        assert "remote: downloaded from the remote cache, checked like a local hit." in " ".join(text.split())
        assert "downloaded from the remote cache\n" not in text
