"""A sweep job's exit code, kept in its folder (`exit_code`, one number). Launchers that run
jobs in other processes or on other machines (joblib, submitit, Ray) do not hand a job's exit
code back to the tfbuild command; its folder, on a filesystem they share, does. The sweep
report reads it (sweep_report.collect), and the command exits with the worst.
"""

from __future__ import annotations

import os
from pathlib import Path

EXIT_CODE = "exit_code"


def record_exit_code(job_dir: Path, code: int) -> None:
    """Write `code` into the job's folder. A job that failed before building had its folder
    removed (run_folder.remove_unused_run_dir): in a sweep its number must still say how it
    ended, so the folder is made again; a job that succeeded without one (a dry run) is left
    without one."""
    if code == 0 and not job_dir.is_dir():
        return
    job_dir.mkdir(parents=True, exist_ok=True)
    temporary = job_dir / f".{EXIT_CODE}.{os.getpid()}"
    temporary.write_text(f"{code}\n")
    temporary.replace(job_dir / EXIT_CODE)  # whole or absent, never half a number


def read_exit_code(job_dir: Path) -> int | None:
    """The code the job recorded; None when it recorded none (it never ended)."""
    try:
        return int((job_dir / EXIT_CODE).read_text())
    except (OSError, ValueError):
        return None
