"""Keep TensorFlow's C++ and Python log noise off the user's terminal, in a log file instead.

TensorFlow writes from C++ straight to file descriptors 1 and 2 (CUDA probing, MLIR passes,
converter chatter), which no Python logging setting reaches. So while a step runs, both
descriptors point at the run folder's log; tfbuild's own console writes to a duplicate of
the original stdout taken beforehand.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import IO, Iterator


def terminal_stream() -> IO[str]:
    """A stream to the real stdout that keeps working while fds 1 and 2 are redirected."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # a captured stdout (pytest) has no fd
        return sys.stdout
    return open(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace")


@contextlib.contextmanager
def native_output_to(log_path: Path) -> Iterator[None]:
    """Send fds 1 and 2 to `log_path` for the block. The run folder exists while its build
    runs; a worker warming up (importing TensorFlow) after a build removed its folder (its
    input was refused) writes to /dev/null instead, and never makes the folder again."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        log = open(log_path, "ab")
    except FileNotFoundError:
        log = open(os.devnull, "ab")
    saved = [os.dup(1), os.dup(2)]
    with log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
