"""A real SFTP server on loopback for the remote-cache tests: Debian's OpenSSH `sshd`, started
with its own host key, config, client key, known_hosts and port, and stopped with the context.

Credentials reach fsspec the way a user configures them, never through the recipe: fsspec reads
per-protocol default arguments from `FSSPEC_<PROTOCOL>` environment variables (JSON) when it is
first imported (fsspec/config.py), so `FSSPEC_SFTP` carries the user name, client key and
known_hosts file that sshfs passes on to `asyncssh.connect`. A `tfbuild` subprocess that
inherits `server.env` connects with no other setup; in this process, `server.configured()`
puts the same defaults into the already-imported fsspec config for the length of a block.

sshd runs as whoever runs the tests. As root (these machines), it is a root daemon that accepts
only our client key, only on 127.0.0.1; as any other user it runs unprivileged and can log in
only that user, which is all the tests need.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

# Where Debian puts the daemon; PATH may lack /usr/sbin for non-root users.
SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
START_TIMEOUT_S = 10.0


def find_sshd() -> str | None:
    """The sshd binary, or None: the caller skips (or fails under CI) with the reason."""
    found = shutil.which("sshd")
    if found:
        return found
    return next((c for c in SSHD_CANDIDATES if os.access(c, os.X_OK)), None)


def sshd_problem() -> str | None:
    """Why no SFTP server can be started here, or None when it can."""
    if find_sshd() is None:
        return "sshd is missing (Debian: apt-get install openssh-server; `make setup` does it as root)"
    if shutil.which("ssh-keygen") is None:
        return "ssh-keygen is missing (Debian: apt-get install openssh-client)"
    return None


@dataclass
class SFTPServer:
    """One running sshd. `url()` gives a fresh, empty remote folder each call."""

    host: str
    port: int
    user: str
    base: Path  # the server's files live under here; it is also the local path of remote roots
    client_key: Path
    known_hosts: Path
    pid: int
    env: dict[str, str] = field(default_factory=dict)  # only the variables we add

    @property
    def fsspec_options(self) -> dict:
        """The sftp defaults a user would put in FSSPEC_SFTP (or ~/.config/fsspec/*.json)."""
        return json.loads(self.env["FSSPEC_SFTP"])

    def url(self, name: str | None = None) -> str:
        """sftp://127.0.0.1:PORT/<absolute path of a new empty folder>. The path part is
        absolute on the server (it is the same path on this machine: loopback)."""
        return f"sftp://{self.host}:{self.port}{self.new_root(name)}"

    def new_root(self, name: str | None = None) -> str:
        root = self.base / "remote" / (name or uuid.uuid4().hex[:12])
        root.mkdir(parents=True, exist_ok=False)
        return str(root)

    def child_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """os.environ (or `base`) plus the credentials: pass to subprocess.run(env=...)."""
        return {**(os.environ if base is None else base), **self.env}

    @contextlib.contextmanager
    def configured(self) -> Iterator[None]:
        """In-process twin of `env`: fsspec read FSSPEC_SFTP at import, so set its config
        dict directly for the block, and drop cached sftp instances on both sides."""
        import fsspec.config

        before = fsspec.config.conf.get("sftp")
        fsspec.config.conf["sftp"] = {**(before or {}), **self.fsspec_options}
        try:
            yield
        finally:
            if before is None:
                fsspec.config.conf.pop("sftp", None)
            else:
                fsspec.config.conf["sftp"] = before
            clear_sftp_instances()


def clear_sftp_instances() -> None:
    """fsspec caches one instance per (class, arguments); drop the sftp ones so the next
    url_to_fs connects afresh (and sees a changed config)."""
    import fsspec

    fsspec.get_filesystem_class("sftp").clear_instance_cache()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True, stdin=subprocess.DEVNULL, capture_output=True,
    )


def _sshd_config(base: Path, port: int, user: str) -> str:
    # StrictModes no: the files sit under the system temp folder, which is world-writable
    # (sticky), and sshd's path check would refuse the authorized_keys file under it.
    return "\n".join([
        f"ListenAddress 127.0.0.1:{port}",
        f"HostKey {base / 'ssh_host_ed25519_key'}",
        f"PidFile {base / 'sshd.pid'}",
        f"AuthorizedKeysFile {base / 'authorized_keys'}",
        f"AllowUsers {user}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "AllowTcpForwarding no",
        "X11Forwarding no",
        "PrintMotd no",
        "UseDNS no",
        "LogLevel ERROR",
        "Subsystem sftp internal-sftp",
        "",
    ])


def _wait_listening(proc: subprocess.Popen, host: str, port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: {log.read_text().strip()}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on {host}:{port} within {START_TIMEOUT_S}s: {log.read_text()}")


def _descendants(pid: int) -> list[int]:
    """Pids below `pid` (Linux /proc; empty elsewhere). sshd's per-connection children call
    setsid(), so stopping the listener or its process group would leave them running while
    a client still holds its connection."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The ppid is the 2nd field after the ")" that closes the command name.
            ppid = int(entry.read_text().rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _stop(proc: subprocess.Popen) -> None:
    """Stop our sshd and its session children (our pids only): nothing outlives the context."""
    children = _descendants(proc.pid)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 3
        while (children := [p for p in children if _running(p)]) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not children:
            return


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie has stopped; init reaps it, not us)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@contextlib.contextmanager
def sftp_server(base: Path | None = None) -> Iterator[SFTPServer]:
    """Start sshd on 127.0.0.1 at a free port; yield the SFTPServer; stop it and remove its
    files (when it made `base` itself). Raises RuntimeError if sshd cannot start."""
    sshd = find_sshd()
    if sshd is None:
        raise RuntimeError(sshd_problem())
    owned = base is None
    # Short, private path: keys and config must not be readable by others.
    base = Path(tempfile.mkdtemp(prefix="tfb-sftp-")) if base is None else base
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o700)
    user = getpass.getuser()
    host = "127.0.0.1"
    proc = None
    try:
        _keygen(base / "ssh_host_ed25519_key", "tfbuild-test-host")
        _keygen(base / "client_key", "tfbuild-test-client")
        shutil.copy(base / "client_key.pub", base / "authorized_keys")
        port = free_port(host)
        host_pub = (base / "ssh_host_ed25519_key.pub").read_text().split()
        known_hosts = base / "known_hosts"
        known_hosts.write_text(f"[{host}]:{port} {host_pub[0]} {host_pub[1]}\n")
        config = base / "sshd_config"
        config.write_text(_sshd_config(base, port, user))
        if os.geteuid() == 0:
            # A root sshd insists on its privilege-separation folder (Debian: /run/sshd).
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        log = base / "sshd.log"
        # -D: stay in the foreground (our child, so we stop it); -e: log to stderr (the file).
        with open(log, "wb") as log_file:
            proc = subprocess.Popen(
                [sshd, "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            )
        # Ports can be taken between free_port() and bind(): the wait reports sshd's own error.
        _wait_listening(proc, host, port, log)
        options = {
            "username": user,
            "client_keys": [str(base / "client_key")],
            "known_hosts": str(known_hosts),
            # Do not let the user's own ~/.ssh/config or agent change what the tests see.
            "config": [],
            "agent_path": None,
        }
        yield SFTPServer(
            host=host, port=port, user=user, base=base,
            client_key=base / "client_key", known_hosts=known_hosts, pid=proc.pid,
            env={"FSSPEC_SFTP": json.dumps(options)},
        )
    finally:
        if proc is not None:
            _stop(proc)
        if owned:
            shutil.rmtree(base, ignore_errors=True)
