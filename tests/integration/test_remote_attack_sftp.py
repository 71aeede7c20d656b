"""The remote cache under attack over a real SFTP server (sshd on loopback, through fsspec's
sshfs), with fake steps: uploads streamed a MiB at a time arrive whole; what is not a regular
file on the server is refused; a server that stops answering (its processes stopped with
SIGSTOP, before or after the connection is made) costs one timeout, never a hung build."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
from collections import Counter
from pathlib import Path

import pytest

from tests.sftp_server import _descendants, clear_sftp_instances
from tests.unit.test_remote_attack import DEADLINE_S, DOWNLOADED, _fifo, _folder, _link_to_a_device, _unblock_fifos, within
from tests.unit.test_remote_cache import Machine, blob_of, manifests, statuses
from tfbuild.remote_cache import RemoteCache
from tfbuild.runner import BUILT

pytest.importorskip("sshfs")

BIG = "x" * (3 << 20)  # a 3 MiB file: several streamed writes and reads


def _steps():
    from tests.fakes import step

    return [step("data", text=BIG), step("train", {"data": "data"})]


@pytest.fixture
def remote(sftp_server):
    """(url, the remote's folder on this machine: loopback)."""
    with sftp_server.configured():
        url = sftp_server.url()
        yield url, Path(url.split(str(sftp_server.port), 1)[1])


def _nothing(path: Path, tmp_path: Path) -> None:
    pass


@pytest.mark.parametrize("replace", [_nothing, _fifo, _folder, _link_to_a_device], ids=lambda f: f.__name__.strip("_"))
def test_over_sftp_uploads_stream_whole_and_only_regular_files_are_read(remote, tmp_path, replace):
    url, folder = remote
    ci = Machine(tmp_path / "ci", url, "write")
    ci.build(_steps())
    assert ci.warnings == [] and set(manifests(folder)) == {"data", "train"}
    assert blob_of(folder, manifests(folder)["data"]).stat().st_size == len(BIG)
    replace(blob_of(folder, manifests(folder)["train"]), tmp_path)
    laptop = Machine(tmp_path / "laptop", url, "read")
    try:
        result = within(DEADLINE_S, lambda: laptop.build(_steps()))
    finally:
        _unblock_fifos(folder)
    assert statuses(result)["data"] == DOWNLOADED
    assert (laptop.root / "cache").is_dir() and laptop.leftovers() == []
    if replace is _nothing:
        assert statuses(result)["train"] == DOWNLOADED and laptop.warnings == []
    else:
        assert statuses(result)["train"][0] == BUILT
        assert len(laptop.warnings) == 1 and "'train' refused" in laptop.warnings[0], laptop.warnings
        assert "not a regular file" in laptop.warnings[0]


@contextlib.contextmanager
def _stopped(pid: int):
    """The server and every process under it stopped (SIGSTOP): connections stay open, and
    nothing answers, as with a server that hangs or a network that drops packets."""
    pids = [pid, *_descendants(pid)]
    for each in pids:
        os.kill(each, signal.SIGSTOP)
    try:
        yield
    finally:
        for each in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(each, signal.SIGCONT)


@pytest.mark.parametrize("when", ["before connecting", "after connecting"])
def test_a_stalled_sftp_server_times_out_and_the_build_goes_on(sftp_server, remote, tmp_path, when):
    url, folder = remote
    Machine(tmp_path / "ci", url, "write").build(_steps())
    clear_sftp_instances()
    if when == "after connecting":
        RemoteCache(url).fs  # fsspec keeps this connection for the build's RemoteCache
    laptop = Machine(tmp_path / "laptop", url, "read", timeout_s=1)
    try:
        with _stopped(sftp_server.pid):
            result = within(DEADLINE_S, lambda: laptop.build(_steps()))
    finally:
        clear_sftp_instances()
    assert {r.status for r in result.steps} == {BUILT} and laptop.runs == Counter(data=1, train=1)
    assert len(laptop.warnings) == 1 and "building without the remote cache" in laptop.warnings[0], laptop.warnings
    assert laptop.leftovers() == []
    assert not any(stat.S_ISFIFO(p.lstat().st_mode) for p in folder.rglob("*"))
