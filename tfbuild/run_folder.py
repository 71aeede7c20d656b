"""The run folder: what tfbuild owns in it, and publishing artifacts into it.

Published artifacts are the user's own copies: a reflink (FICLONE: shares blocks with the
cache entry until either side is written, so it is as cheap as a link where the filesystem
has it: btrfs, XFS, bcachefs, APFS-like overlays) or else a plain copy. Never a hard link: a
hard link is the cache entry's own inode, so an append to a run's .tflite would change the
cache entry and every other run (a read-only link does not help: its owner can chmod it back).

Each artifact appears in one rename from a temporary name beside it, so a full disk or a
kill leaves the previous artifact or none, never a truncated one.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from pathlib import Path, PurePosixPath

from .errors import BuildFailed
from .formats import FORMATS
from .plan import Plan

FICLONE = 0x40049409  # _IOW(0x94, 9, int) from <linux/fs.h>
BUILD_RECORD = "build.json"  # written after the build (record.py)
BUILD_LOG = "build.log"  # TensorFlow's output and failed steps' tracebacks
LATEST = "latest"  # outputs/runs/RECIPE/latest: a link to RECIPE's last run folder


def owned_paths(plan: Plan) -> list[str]:
    """Top-level names in a run folder that tfbuild writes, and so may clear: the roots of the
    plan's published artifacts, every format's folder, and the report and build records. Known
    from code and the plan, never read from the folder (an edited build.json could name any path)."""
    from .report import FILES as REPORT_FILES  # report imports the runner, which imports us

    roots = {PurePosixPath(out.publish).parts[0] for step in plan.steps for out in step.outputs if out.publish}
    names = sorted(roots | set(FORMATS) | set(REPORT_FILES) | {BUILD_RECORD})  # a format publishes under its name
    for name in names:  # a plan's publish paths are the resolver's; still, stay inside the folder
        if name in ("", ".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"refusing to publish to '{name}': not a plain name inside the run folder")
    return names


def clear_owned(plan: Plan, run_dir: Path) -> None:
    """Remove what an earlier build left in a reused run folder (hydra.run.dir=X twice), so the
    folder holds exactly this build's artifacts."""
    for name in owned_paths(plan):
        try:
            _remove(run_dir / name)
        except OSError as exc:
            raise BuildFailed(f"cannot clear '{name}' from the run folder {run_dir} ({exc.strerror or exc})") from None


def publish_tree(source: Path, target: Path) -> None:
    """Put a copy of `source` (a file or a folder) at `target`, atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tfbuild-{uuid.uuid4().hex[:8]}")
    try:
        if source.is_dir():
            staging.mkdir()
            for file in sorted(p for p in source.rglob("*") if p.is_file()):
                destination = staging / file.relative_to(source)
                destination.parent.mkdir(parents=True, exist_ok=True)
                clone_or_copy(file, destination)
        else:
            clone_or_copy(source, staging)
        if (target.is_dir() and not target.is_symlink()) or (staging.is_dir() and os.path.lexists(target)):
            _remove(target)  # rename replaces a file with a file only; anything else goes first
        os.replace(staging, target)
    except BaseException:
        _remove(staging)
        raise


def clone_or_copy(source: Path, destination: Path) -> str:
    """A reflink of `source` where the filesystem supports it, else a copy; which one it was.
    The copy is writable (0644): it is the user's, whatever the cache entry's mode."""
    with open(source, "rb") as src, open(destination, "wb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
            how = "reflink"
        except OSError:  # EOPNOTSUPP/EXDEV/EINVAL/ENOTTY: no reflinks here (ext4, tmpfs, across filesystems)
            _copy(src.fileno(), dst.fileno())
            how = "copy"
    os.chmod(destination, 0o644)
    return how


def _copy(src: int, dst: int) -> None:
    """Copy in the kernel (copy_file_range), falling back to read/write where it is refused."""
    try:
        while os.copy_file_range(src, dst, 1 << 30):
            pass
    except OSError:  # EXDEV on older kernels, ENOSYS, EINVAL on some filesystems
        os.lseek(src, 0, os.SEEK_SET)
        os.lseek(dst, 0, os.SEEK_SET)
        os.ftruncate(dst, 0)
        while chunk := os.read(src, 1 << 20):
            view = memoryview(chunk)
            while view:
                view = view[os.write(dst, view):]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()



def remove_unused_run_dir(run_dir: Path) -> None:
    """A run folder in which nothing was built (a config error, a dry run), with the empty
    folders made on the way to it: Hydra made it, with only its .hydra/ record, before the
    build could tell."""
    leftovers = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else set()
    if leftovers <= {".hydra", BUILD_LOG}:
        shutil.rmtree(run_dir, ignore_errors=True)
        _remove_empty_parents(run_dir, stop=Path.cwd())


def remove_unused_sweep_dir(sweep_dir: Path) -> None:
    """A sweep folder no job started in (its launcher could not start them): Hydra wrote only
    its record of the sweep there."""
    leftovers = {p.name for p in sweep_dir.iterdir()} if sweep_dir.is_dir() else set()
    if leftovers <= {"multirun.yaml"}:
        shutil.rmtree(sweep_dir, ignore_errors=True)
        _remove_empty_parents(sweep_dir, stop=Path.cwd())


def _remove_empty_parents(folder: Path, stop: Path) -> None:
    """The folders made on the way (outputs/runs/RECIPE/), while empty, up to `stop`."""
    stop = stop.absolute()
    for parent in folder.absolute().parents:
        if parent == stop or not parent.is_relative_to(stop):
            return
        try:
            parent.rmdir()  # only ever removes an empty folder
        except OSError:
            return


def latest_link(run_dir: Path, pattern: str) -> Path | None:
    """Where the link to the last run goes: beside the run folder, when each build gets a
    folder of its own named by the time (hydra.run.dir's last part is a ${now:...}); None for
    a fixed folder (hydra.run.dir=X), whose parent is the user's."""
    return run_dir.parent / LATEST if "${now:" in pattern.rstrip("/").rsplit("/", 1)[-1] else None
