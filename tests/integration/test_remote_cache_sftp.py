"""A remote cache on a real SFTP server (Debian's sshd on loopback, through fsspec's sshfs),
shared by "machines" that are separate folders with caches of their own, each running the
installed `tfbuild` with real TensorFlow. Credentials reach fsspec the way a user sets them
(FSSPEC_SFTP), never through the recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TINY, run_tfbuild
from tests.integration.test_cli import WITH_IMPORT_PROBE, run_dirs

pytest.importorskip("sshfs")
pytestmark = pytest.mark.slow

QUICK = [*TINY, "export.tflite.quantization=[float,int8]"]


def build(machine: Path, url: str, mode: str, server, probe: bool = False):
    machine.mkdir(exist_ok=True)
    return run_tfbuild("recipe=digits", *QUICK, f"cache.remote={url}", f"cache.remote_mode={mode}", cwd=machine,
                       env=server.env, python_code=WITH_IMPORT_PROBE if probe else None)  # fmt: skip


def steps(machine: Path) -> dict[str, dict]:
    record = json.loads((run_dirs(machine)[-1] / "build.json").read_text())
    return {s["name"]: s for s in record["steps"]}


def flip_a_byte(path: Path) -> None:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


def test_machines_sharing_an_sftp_remote_build_each_step_once_and_refuse_a_tampered_entry(sftp_server, tmp_path):
    url = sftp_server.url("team")
    remote = Path(url.split(str(sftp_server.port), 1)[1])  # loopback: the server's path is ours too

    ci = build(tmp_path / "ci", url, "write", sftp_server)
    assert ci.returncode == 0, ci.stderr
    assert "remote cache: uploaded" in ci.stdout
    built_by_ci = steps(tmp_path / "ci")
    assert all(s["status"] in ("built", "not needed") for s in built_by_ci.values())
    assert len(list(remote.glob("ac/*/*.json"))) == sum(1 for s in built_by_ci.values() if s["status"] == "built")

    # A second machine builds nothing the first built, and does not even import TensorFlow.
    laptop = build(tmp_path / "laptop", url, "read", sftp_server, probe=True)
    assert laptop.returncode == 0, laptop.stderr
    assert laptop.stderr.strip().splitlines()[-1] == "TENSORFLOW_IMPORTED=False"
    downloaded = steps(tmp_path / "laptop")
    for name, step in built_by_ci.items():
        if step["status"] == "built":
            assert (downloaded[name]["status"], downloaded[name]["reason"]) == ("cached", "downloaded from the remote cache"), name
            assert downloaded[name]["key"] == step["key"]
    assert "warning" not in laptop.stdout + laptop.stderr
    # Credentials stay in the back-end's configuration: nothing of FSSPEC_SFTP reaches the record.
    record = (run_dirs(tmp_path / "laptop")[-1] / "build.json").read_text()
    assert str(sftp_server.client_key) not in record and "client_keys" not in record

    # Someone changes the trained model's bytes on the server: the next machine refuses that
    # entry, trains here, and puts a good copy back (readwrite); a fourth machine gets that one.
    train_manifest = next(p for p in remote.glob("ac/*/*.json") if json.loads(p.read_text())["name"] == "train")
    files = [f for output in json.loads(train_manifest.read_text())["outputs"].values() for f in output["files"]]
    biggest = max(files, key=lambda f: f["bytes"])["sha256"]
    flip_a_byte(remote / "cas" / biggest[:2] / biggest)

    third = build(tmp_path / "third", url, "readwrite", sftp_server)
    assert third.returncode == 0, third.stderr
    assert "remote cache entry for 'train' refused" in third.stdout + third.stderr
    rebuilt = steps(tmp_path / "third")
    assert rebuilt["train"]["status"] == "built"
    assert rebuilt["data"]["reason"] == "downloaded from the remote cache"
    assert not list((tmp_path / "third" / "outputs" / "cache" / "tmp").glob("*")), "nothing half-written is left"

    fourth = build(tmp_path / "fourth", url, "read", sftp_server)
    assert fourth.returncode == 0, fourth.stderr
    assert steps(tmp_path / "fourth")["train"]["reason"] == "downloaded from the remote cache"
    assert "warning" not in fourth.stdout + fourth.stderr


def test_an_sftp_remote_checks_the_servers_host_key(sftp_server, tmp_path, monkeypatch):
    """sshfs would skip the host key check unless told; tfbuild tells it (asyncssh's default:
    ~/.ssh/known_hosts), so a server this machine does not know is refused, not trusted."""
    import fsspec.config

    from tests.sftp_server import clear_sftp_instances
    from tfbuild.remote_cache import RemoteCache, RemoteError

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/known_hosts: the server is unknown
    options = {k: v for k, v in sftp_server.fsspec_options.items() if k != "known_hosts"}
    monkeypatch.setitem(fsspec.config.conf, "sftp", options)
    clear_sftp_instances()
    try:
        with pytest.raises(RemoteError, match="[Hh]ost key"):
            RemoteCache(sftp_server.url()).pinned_keys()
        # Told where the server's key is, the same remote is used.
        monkeypatch.setitem(fsspec.config.conf, "sftp", {**options, "known_hosts": str(sftp_server.known_hosts)})
        clear_sftp_instances()
        assert RemoteCache(sftp_server.url()).pinned_keys() == ({}, [])
    finally:
        clear_sftp_instances()
