"""A long-lived Node script spoken to in JSON lines: one request on its stdin, one reply on
its stdout, each with a time limit; `stage: ...` lines on its stderr say where it is.

browser_run.js is one: it keeps a Chromium for many models. Whatever ends the conversation
(close, a time limit, an error, the interpreter exiting), the script's process group is
ended and then every process carrying `marker` (Chromium, which puppeteer starts in a group
of its own), so nothing outlives it. The script itself also ends when its stdin closes,
which covers a Python process killed outright.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
from collections import deque
from pathlib import Path
from typing import Any, Sequence

from .processes import end_marked
from .tfjs_node import failure_line

__all__ = ["DriverError", "DriverTimeout", "LineDriver"]

_EOF = object()


class DriverError(RuntimeError):
    """The script answered with an error, or died; the message is one line."""


class DriverTimeout(RuntimeError):
    """No reply within the time limit; `stage` is the script's last `stage:` line, if any."""

    def __init__(self, stage: str | None) -> None:
        super().__init__(stage or "no stage")
        self.stage = stage


class LineDriver:
    def __init__(self, command: Sequence[str], *, env: dict[str, str], cwd: Path, marker: str, name: str) -> None:
        self.name = name  # the script's prefix on its own error lines, e.g. "browser_run"
        self._marker = marker
        self._replies: queue.Queue[Any] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=200)
        self.stage: str | None = None
        try:
            self._process = subprocess.Popen(
                list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, bufsize=1, cwd=cwd, env=env, start_new_session=True,
            )  # fmt: skip
        except OSError as error:
            raise DriverError(f"could not start `{command[0]}`: {error}") from None
        self._readers = [
            threading.Thread(target=self._read_stdout, name=f"{name}-stdout", daemon=True),
            threading.Thread(target=self._read_stderr, name=f"{name}-stderr", daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        for line in self._process.stdout:  # type: ignore[union-attr]
            if line.strip():
                self._replies.put(line)
        self._replies.put(_EOF)

    def _read_stderr(self) -> None:
        for line in self._process.stderr:  # type: ignore[union-attr]
            line = line.strip()
            if line.startswith("stage: "):
                self.stage = line[len("stage: ") :]
            elif line:
                self._stderr.append(line)

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    def request(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send `message`, wait for the reply's "result". A reply with "error" raises
        DriverError(`<name>: error`); no reply in time ends the script and raises DriverTimeout."""
        try:
            self._process.stdin.write(json.dumps(message) + "\n")  # type: ignore[union-attr]
            self._process.stdin.flush()  # type: ignore[union-attr]
        except (BrokenPipeError, OSError, ValueError):
            pass  # it died: the reply queue says how
        try:
            line = self._replies.get(timeout=timeout_s)
        except queue.Empty:
            stage = self.stage
            self.close(graceful=False)  # it is stuck: asking it to end would only wait
            raise DriverTimeout(stage) from None
        if line is _EOF:
            self.close()
            raise DriverError(self._death_line())
        try:
            reply = json.loads(line)
        except ValueError:
            raise DriverError(f"{self.name} replied with something other than JSON: {line[:200]!r}") from None
        if not reply.get("ok"):
            raise DriverError(f"{self.name}: {reply.get('error', 'no message')}")
        return reply["result"]

    def _death_line(self) -> str:
        """The script's own `<name>: ...` line; otherwise (a crash, a kill) the last thing said."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=5)
        self._readers[1].join(timeout=5)
        done = subprocess.CompletedProcess(self._process.args, self._process.returncode, "", "\n".join(self._stderr))
        return failure_line(done, self.name)

    def close(self, graceful: bool = True) -> None:
        """End the conversation: stdin closed (the script ends its Chromium and exits; not
        waited for unless `graceful`), then its group and anything carrying the marker.
        Idempotent."""
        with contextlib.suppress(OSError, ValueError):
            self._process.stdin.close()  # type: ignore[union-attr]
        if graceful:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=2)
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        end_marked(self._marker)
        for reader in self._readers:
            reader.join(timeout=5)
        for stream in (self._process.stdout, self._process.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.close()  # type: ignore[union-attr]
