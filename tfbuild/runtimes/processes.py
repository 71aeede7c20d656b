"""Ending the processes a run left behind, found by a marker only they carry.

puppeteer starts Chromium in a process group of its own (so that it can end the browser's
helpers with it), which also means that ending the Node driver's group at a time limit leaves
Chromium running, and a driver killed outright never runs puppeteer's clean-up. Each run gives
Chromium a `--user-data-dir` inside its own temporary folder; that path on a command line
marks the processes to end, and nothing else can carry it. Linux only (/proc); elsewhere
nothing is found and puppeteer's own clean-up is all there is.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

__all__ = ["end_marked", "marked_pids"]


def marked_pids(marker: str) -> list[int]:
    """Live processes whose command line contains `marker`."""
    wanted = marker.encode()
    try:
        entries = list(Path("/proc").iterdir())
    except OSError:
        return []
    pids = []
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if wanted in (entry / "cmdline").read_bytes():  # a zombie's is empty: already ended
                pids.append(int(entry.name))
        except OSError:  # it ended while we looked
            continue
    return pids


def end_marked(marker: str) -> list[int]:
    """SIGKILL every process carrying `marker`, and the whole group of one that leads its
    group (Chromium's browser process: its renderer, GPU and zygote helpers are in it).
    Returns the pids found."""
    pids = marked_pids(marker)
    for pid in pids:
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
    return pids
