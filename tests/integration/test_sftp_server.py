"""The loopback SFTP server works through fsspec with only the user-style configuration
(FSSPEC_SFTP), in this process and in a subprocess, and its host key is really checked."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

fsspec = pytest.importorskip("fsspec")
pytest.importorskip("sshfs")


@pytest.fixture
def remote(sftp_server):
    """(fs, root): an sshfs filesystem from the URL alone, and its fresh remote folder."""
    with sftp_server.configured():
        fs, root = fsspec.core.url_to_fs(sftp_server.url())
        yield fs, root


def test_url_path_is_the_absolute_server_path(sftp_server, remote):
    fs, root = remote
    assert type(fs).__name__ == "SSHFileSystem"
    assert root.startswith(str(sftp_server.base)) and root.startswith("/")
    assert fs.ls(root) == []


def test_round_trip(remote, tmp_path):
    fs, root = remote
    fs.makedirs(f"{root}/a/b", exist_ok=True)
    fs.pipe(f"{root}/a/b/small.bin", b"\x00tfbuild\xff")
    assert fs.cat(f"{root}/a/b/small.bin") == b"\x00tfbuild\xff"

    local = tmp_path / "up.bin"
    payload = bytes(range(256)) * 4096  # 1 MiB, crosses sshfs's write blocks
    local.write_bytes(payload)
    fs.put(str(local), f"{root}/a/up.bin")
    info = fs.info(f"{root}/a/up.bin")
    assert (info["type"], info["size"], info["name"]) == ("file", len(payload), f"{root}/a/up.bin")
    assert fs.info(f"{root}/a")["type"] == "directory"

    fs.get(f"{root}/a/up.bin", str(tmp_path / "down.bin"))
    assert (tmp_path / "down.bin").read_bytes() == payload
    with fs.open(f"{root}/a/up.bin", "rb") as f:
        assert f.read(10) == payload[:10]

    assert sorted(fs.find(root)) == [f"{root}/a/b/small.bin", f"{root}/a/up.bin"]
    assert sorted(fs.ls(f"{root}/a", detail=False)) == [f"{root}/a/b", f"{root}/a/up.bin"]

    fs.mv(f"{root}/a/up.bin", f"{root}/moved.bin")
    assert not fs.exists(f"{root}/a/up.bin") and fs.exists(f"{root}/moved.bin")
    fs.rm(f"{root}/a", recursive=True)
    assert fs.ls(root, detail=False) == [f"{root}/moved.bin"]
    with pytest.raises(FileNotFoundError):
        fs.cat(f"{root}/a/b/small.bin")


def test_a_subprocess_connects_with_the_env_alone(sftp_server):
    """What a `tfbuild` subprocess sees: FSSPEC_SFTP in its environment, a URL, nothing else."""
    url = sftp_server.url()
    code = (
        "import fsspec, json, sys\n"
        "fs, root = fsspec.core.url_to_fs(sys.argv[1])\n"
        "fs.pipe(root + '/from-child', b'ok')\n"
        "print(json.dumps(fs.ls(root, detail=False)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, url], env=sftp_server.child_env(),
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    root = url.split(f":{sftp_server.port}", 1)[1]
    assert json.loads(out.stdout) == [f"{root}/from-child"]


def test_without_the_configuration_the_login_fails(sftp_server, tmp_path):
    """The server accepts only the generated key, and the client checks the host key:
    the tests really exercise credentials rather than an open door."""
    from tests.sftp_server import clear_sftp_instances

    options = dict(sftp_server.fsspec_options)
    wrong_hosts = tmp_path / "known_hosts"
    wrong_hosts.write_text(f"[127.0.0.1]:{sftp_server.port} {sftp_server.client_key.with_suffix('.pub').read_text()}")
    import asyncssh

    clear_sftp_instances()
    with pytest.raises(PermissionError):  # sshfs wraps asyncssh's PermissionDenied
        fsspec.filesystem("sftp", host="127.0.0.1", port=sftp_server.port, **{**options, "client_keys": []})
    clear_sftp_instances()
    with pytest.raises(asyncssh.HostKeyNotVerifiable):  # not wrapped by sshfs
        fsspec.filesystem("sftp", host="127.0.0.1", port=sftp_server.port, **{**options, "known_hosts": str(wrong_hosts)})
    clear_sftp_instances()


def test_nothing_outlives_the_server(sftp_server, tmp_path):
    """sshd's per-connection children call setsid(); a client still connected when the
    context ends must not leave them (or the listener) running. (A second server: the
    session's one stays up.)"""
    from tests import sftp_server as sftp

    with sftp.sftp_server(tmp_path / "srv") as server:
        opts = {**server.fsspec_options, "host": server.host, "port": server.port}
        fs = fsspec.filesystem("sftp", skip_instance_cache=True, **opts)
        fs.ls(server.new_root())
        pids = [server.pid, *sftp._descendants(server.pid)]
        assert len(pids) >= 2  # the listener and at least one session process
    assert not [pid for pid in pids if sftp._running(pid)]
