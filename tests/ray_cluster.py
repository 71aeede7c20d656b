"""A real two-node Ray cluster on this machine, for the launcher tests and the cluster
benchmark: a head and a worker node, each started by its own `ray start --block` in its own
session, on free ports, with its own temp folder. Stopping it ends exactly those two
sessions (every Ray process a node starts stays in its `ray start`'s session); never
`ray stop`, which would end every Ray instance of this user on the machine.

Ray replaces 127.0.0.1 by the machine's own address (it must be reachable from other nodes),
so the cluster listens there; callers use `address` as Ray reports it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")
START_S = 120.0  # two nodes on two busy cores: Ray's own processes take a while to come up


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _node_args(log_dir: Path) -> list[str]:
    """What both nodes share: one CPU each (two cores here), a small object store (jobs pass
    configs, not data), no dashboard, and random ports where Ray's defaults are fixed ones
    (another Ray on this machine may hold them)."""
    return [
        "--num-cpus=1", "--object-store-memory=80000000", "--disable-usage-stats",
        "--min-worker-port=0", "--max-worker-port=0", f"--dashboard-agent-listen-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}", "--block",
    ]  # fmt: skip


class LocalRayCluster:
    """`with LocalRayCluster(folder) as cluster:` a head and one worker node, both up;
    `cluster.address` is what `hydra.launcher.ray.init.address` takes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._nodes: list[subprocess.Popen] = []
        # Ray's sockets live under its temp folder, and a socket's path may not pass 107 bytes
        # (pytest's tmp_path is too deep): a short folder of its own, removed at the end.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))

    def start(self) -> "LocalRayCluster":
        self.folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        head = ["--head", "--node-ip-address=127.0.0.1", f"--port={self.port}", f"--ray-client-server-port={free_port()}",
                "--include-dashboard=false", f"--dashboard-port={free_port()}", f"--temp-dir={self.temp_dir}"]  # fmt: skip
        self._start_node("head", head, env)
        self._wait_for_nodes(1)
        self._start_node("worker", [f"--address={self.address}"], env)
        self._wait_for_nodes(2)
        return self

    def stop(self) -> None:
        """End both nodes' sessions: SIGTERM, then SIGKILL for what did not exit (Ray's own
        servers take their time)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for node in self._nodes:
                try:
                    os.killpg(node.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(_group_alive(n.pid) for n in self._nodes):
                time.sleep(0.2)
        for node in self._nodes:
            node.wait(timeout=10)
        self._nodes = []
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def node_ids(self) -> set[str]:
        """The ids of the cluster's live nodes, as `ray status` lists them (hex)."""
        status = subprocess.run([RAY, "status", f"--address={self.address}"], capture_output=True, text=True, check=True)
        return set(re.findall(r"^\s*1 node_([0-9a-f]+)$", status.stdout, re.MULTILINE))

    def __enter__(self) -> "LocalRayCluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_node(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = open(self.folder / f"{name}.log", "wb")
        node = subprocess.Popen([RAY, "start", *args, *_node_args(self.folder)], stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)  # fmt: skip
        log.close()
        self._nodes.append(node)

    def _wait_for_nodes(self, count: int) -> None:
        """Until the cluster has `count` live nodes (`ray status` asks the head)."""
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            for node in self._nodes:
                if node.poll() is not None:
                    raise RuntimeError(f"a Ray node exited ({node.returncode}); see {self.folder}/*.log")
            status = subprocess.run([RAY, "status", f"--address={self.address}"], capture_output=True, text=True)
            if status.returncode == 0 and _active_nodes(status.stdout) >= count:
                return
            time.sleep(1)
        raise RuntimeError(f"the Ray cluster did not have {count} nodes after {START_S:.0f} s; see {self.folder}/*.log")


def _active_nodes(status: str) -> int:
    """The count of lines under `Active:` in `ray status`'s output (one per node)."""
    lines = status.splitlines()
    if "Active:" not in [line.strip() for line in lines]:
        return 0
    start = [line.strip() for line in lines].index("Active:") + 1
    count = 0
    for line in lines[start:]:
        if not line.strip().startswith("1 node_"):
            break
        count += 1
    return count


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group is still running (zombies, waiting for a parent that is
    gone, do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it exited meanwhile
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields after the name: state, ppid, pgrp
            return True
    return False
