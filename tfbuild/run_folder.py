"""The run folder: what tfbuild owns in it, and publishing artifacts into it.

Published artifacts are the user's own copies: a reflink (FICLONE: shares blocks with the
cache entry until either side is written, so it is as cheap as a link where the filesystem
has it: btrfs, XFS, bcachefs, APFS-like overlays) or else a plain copy. Never a hard link: a
hard link is the cache entry's own inode, so an append to a run's .tflite would change the
cache entry and every other run (a read-only link does not help: its owner can chmod it back).

Each artifact appears in one rename from a temporary name beside it, so a full disk or a
kill leaves the previous artifact or none, never a truncated one.

A run folder is shared with its user, so tfbuild replaces or removes only what it wrote
there (`RunFolder`): every artifact a build publishes is recorded first, in the folder's
`.tfbuild/published.json`, with its digest, and a path is tfbuild's to replace or remove
only while it holds exactly those bytes. One build uses a run folder at a time (the lock
`.tfbuild/lock`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Mapping

from .digests import stat_signature, tree_digest, tree_files
from .errors import BuildFailed, ConfigError
from .exclusive import Busy, HeldLock, take
from .formats import FORMATS
from .plan import Plan

FICLONE = 0x40049409  # _IOW(0x94, 9, int) from <linux/fs.h>
BUILD_RECORD = "build.json"  # written after the build (record.py)
BUILD_LOG = "build.log"  # TensorFlow's output and failed steps' tracebacks
LATEST = "latest"  # outputs/runs/RECIPE/latest: a link to RECIPE's last run folder
OWN = ".tfbuild"  # the run folder's lock and its record of what tfbuild published
LOCK = "lock"
PUBLISHED = "published.json"
# A record lists digests; build.json (read for folders made before the record) holds the config too.
MAX_RECORD_BYTES = 16 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


def owned_paths(plan: Plan) -> list[str]:
    """Top-level names in a run folder that tfbuild writes: the roots of the plan's published
    artifacts, every format's folder, and the report and build records. Known from code and
    the plan, never read from the folder. Only the report and build records are replaced
    whatever they hold; under the others tfbuild replaces only what it recorded (RunFolder)."""
    from .report import FILES as REPORT_FILES  # report imports the runner, which imports us

    roots = {PurePosixPath(out.publish).parts[0] for step in plan.steps for out in step.outputs if out.publish}
    names = sorted(roots | set(FORMATS) | set(REPORT_FILES) | {BUILD_RECORD})  # a format publishes under its name
    for name in names:  # a plan's publish paths are the resolver's; still, stay inside the folder
        if name in ("", ".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"refusing to publish to '{name}': not a plain name inside the run folder")
    return names


# -- what tfbuild published: the record, and whether a path still holds it ------------------


@dataclass(frozen=True)
class Version:
    """Bytes tfbuild put at a path: their tree digest (as the cache manifest's), and the stat
    of each file just after publishing (None until then), which spares re-reading them."""

    sha256: str
    stats: Mapping[str, tuple[int, ...]] | None = None

    def as_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "stats": None if self.stats is None else {k: list(v) for k, v in self.stats.items()}}


class RunFolder:
    """A run folder held by one build: its lock, and what tfbuild published in it.

    Invariants: a path is replaced or removed only while it holds bytes a build recorded
    publishing there (a version's stat, else its digest, re-read), only under a format's
    folder name, and never through a link; the record is written before each artifact is
    published (so a kill forgets nothing it may have to remove) and is read only from a
    regular file of this user's that no one else may write. An edited record can therefore
    name only files that hold exactly the bytes it claims tfbuild wrote."""

    def __init__(self, root: Path, lock: HeldLock, previous: dict[str, list[Version]]):
        self.root = root
        self._lock = lock
        self.previous = previous  # what the folder's last builds published (and may still be there)
        self.current = {path: list(versions) for path, versions in previous.items()}  # the record, now
        self.published: set[str] = set()  # by this build
        self._dirty = False

    # -- holding the folder -----------------------------------------------------------------

    @classmethod
    def open(cls, run_dir: Path, plan: Plan) -> RunFolder:
        """Lock `run_dir` (made if missing) for a build of `plan` and read its record; ConfigError
        (exit 2, before any work) when another build holds it or its .tfbuild/ is not tfbuild's."""
        own = run_dir / OWN
        if os.path.lexists(own) and not (own.is_dir() and not own.is_symlink()):
            raise ConfigError(f"run folder: '{own}' is not a folder (tfbuild keeps its lock and record there); "
                              "move it away or choose another folder with hydra.run.dir=FOLDER")  # fmt: skip
        try:
            own.mkdir(parents=True, exist_ok=True)
            lock = take(own / LOCK)
        except Busy as busy:
            holder = f" (pid {busy.pid})" if busy.pid else ""
            raise ConfigError(f"run folder: another tfbuild{holder} is building into {run_dir} (one build per run "
                              "folder at a time); wait for it, or choose another folder with hydra.run.dir=FOLDER"
                              ) from None  # fmt: skip
        except OSError as exc:
            raise ConfigError(f"run folder: cannot lock '{own / LOCK}' ({exc.strerror or exc}); set hydra.run.dir=FOLDER "
                              "to a writable place") from None  # fmt: skip
        return cls(run_dir, lock, read_record(run_dir, publish_roots(plan)))

    @classmethod
    @contextlib.contextmanager
    def opened(cls, run_dir: Path, plan: Plan) -> Iterator[RunFolder]:
        folder = cls.open(run_dir, plan)
        try:
            yield folder
        finally:
            folder.close()

    def close(self) -> None:
        """Write what the record holds now (a build that stopped half-way forgets nothing it
        published), and let go of the lock."""
        try:
            if self._dirty and (self.root / OWN).is_dir():
                with contextlib.suppress(OSError):
                    self._write_record()
        finally:
            self._lock.release()

    # -- before any work --------------------------------------------------------------------

    def check_free(self, plan: Plan) -> None:
        """Refuse (exit 2, before any work, nothing touched) a plan that would publish over
        something tfbuild did not write: a file of the user's where an artifact goes, or a
        link or file where a folder of artifacts goes."""
        for path in dict.fromkeys(out.publish for s in plan.steps for out in s.outputs if out.publish):
            problem = self.conflict(path)
            if problem is not None:
                raise ConfigError(f"run folder: {problem}; tfbuild replaces only what it wrote: move it away, "
                                  "or choose another folder with hydra.run.dir=FOLDER")  # fmt: skip

    def conflict(self, path: str) -> str | None:
        """Why `path` (relative to the run folder) is not tfbuild's to replace or remove: it,
        or a folder on the way to it, holds something no build recorded publishing there (or
        changed since); None when it is tfbuild's, or free."""
        parts = PurePosixPath(path).parts
        for depth in range(1, len(parts)):
            parent = self.root.joinpath(*parts[:depth])
            try:
                st = os.lstat(parent)
            except FileNotFoundError:
                return None
            except OSError as exc:
                return f"'{_rel(parent, self.root)}' cannot be read ({exc.strerror})"
            if not stat.S_ISDIR(st.st_mode):
                return f"'{_rel(parent, self.root)}' is a {'link' if stat.S_ISLNK(st.st_mode) else 'file'}, not a folder"
        target = self.root / path
        if not os.path.lexists(target):
            return None
        try:
            files = _plain_files(target)
        except OSError as exc:
            return f"'{path}' cannot be read ({exc.strerror})"
        if isinstance(files, str):
            return f"'{_rel(target / files, self.root) if files else path}' is a link or special file"
        versions = self.current.get(path, [])
        if not versions:
            first = min(files, default=None)
            if first == "":
                return f"'{path}' is a file tfbuild did not write"
            if first is None:
                return f"'{path}' is a folder tfbuild did not make"
            return f"'{path}' holds '{path}/{first}', which tfbuild did not write"
        signatures = {rel: stat_signature(st) for rel, st in files.items()}
        if any(v.stats is not None and dict(v.stats) == signatures for v in versions):
            return None
        try:
            digest = tree_digest(tree_files(target))
        except OSError as exc:
            return f"'{path}' cannot be read ({exc.strerror})"
        if any(v.sha256 == digest for v in versions):
            return None
        return f"'{path}' was changed since tfbuild published it"

    # -- publishing -------------------------------------------------------------------------

    def publish(self, path: str, source: Path, sha256: str) -> None:
        """Put a copy of the cache's `source` (digest `sha256`) at `path`, replacing only what
        tfbuild wrote there; OSError (the step fails, on one line) when it would replace
        anything else."""
        problem = self.conflict(path)
        if problem is not None:
            raise OSError(0, f"{problem}; tfbuild replaces only what it wrote", str(self.root / path))
        # Recorded before it appears (with what was there, which a kill may leave in place).
        self.current[path] = [*self.current.get(path, []), Version(sha256)]
        self._write_record()
        target = self.root / path
        publish_tree(source, target)
        files = _plain_files(target)
        stats = None if isinstance(files, str) else {rel: stat_signature(st) for rel, st in files.items()}
        self.current[path] = [Version(sha256, stats)]
        self.published.add(path)
        self._dirty = True

    def finish(self) -> None:
        """The build went ahead: remove what the folder's earlier builds published and this one
        did not, where it is still exactly what tfbuild wrote (the user's edits and files
        stay), with the folders left empty by it; then record what this build published."""
        for path in sorted(set(self.previous) - self.published):
            if os.path.lexists(self.root / path) and self.conflict(path) is None:
                try:
                    _remove(self.root / path)
                except OSError:
                    continue  # still tfbuild's: a later build removes it
                _remove_empty_parents(self.root / path, stop=self.root)
            self.current.pop(path, None)  # gone, or the user's now
        self._dirty = True
        self._write_record()

    def remove_if_unused(self) -> None:
        """remove_unused_run_dir, by the build that holds the folder."""
        remove_unused_run_dir(self.root, held=True)

    def _write_record(self) -> None:
        if not self.current and not (self.root / OWN / PUBLISHED).exists():
            return
        document = {"published": {path: [v.as_json() for v in versions] for path, versions in sorted(self.current.items())}}
        _write_private(self.root / OWN / PUBLISHED, json.dumps(document, indent=1) + "\n")
        self._dirty = False


def _write_private(path: Path, text: str) -> None:
    """Replace `path` in one rename with a file only its owner may write (0644, whatever the
    umask: a record others could write would not be read back)."""
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w") as file:
            os.fchmod(file.fileno(), 0o644)
            file.write(text)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def publish_roots(plan: Plan) -> frozenset[str]:
    """The top-level names under which artifacts are published: every format's folder, and
    the roots of `plan`'s publish paths; never tfbuild's or Hydra's own records."""
    roots = {PurePosixPath(out.publish).parts[0] for step in plan.steps for out in step.outputs if out.publish}
    return frozenset((roots | set(FORMATS)) - {OWN, ".hydra", BUILD_RECORD, BUILD_LOG})


def read_record(run_dir: Path, roots: frozenset[str]) -> dict[str, list[Version]]:
    """path -> the versions tfbuild published there, from the folder's record; for a folder
    made before the record existed, from its build.json's artifacts. Whatever cannot be
    trusted (not a regular file of this user's that only they may write, not JSON of the
    right shape, a path that is not plain or not under one of `roots`) is left out: tfbuild
    then removes nothing of it, and refuses to publish over it."""
    document = _read_trusted(run_dir / OWN / PUBLISHED, 0o022)
    if document is not None:
        published = document.get("published") if isinstance(document, dict) else None
        return {path: versions for path, entries in (published if isinstance(published, dict) else {}).items()
                if _publish_path(path, roots) and (versions := _versions(entries))}  # fmt: skip
    legacy = _read_trusted(run_dir / BUILD_RECORD, 0o002)  # written under the user's umask
    artifacts = legacy.get("artifacts") if isinstance(legacy, dict) else None
    found: dict[str, list[Version]] = {}
    for artifact in artifacts if isinstance(artifacts, list) else []:
        if isinstance(artifact, dict) and _publish_path(artifact.get("path"), roots) and _is_sha(artifact.get("sha256")):
            found.setdefault(artifact["path"], []).append(Version(artifact["sha256"]))
    return found


def _read_trusted(path: Path, unsafe_modes: int) -> Any:
    """A JSON file's content, only from a regular file (no link followed) of this user's with
    none of `unsafe_modes` (write permissions for others); None otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & unsafe_modes or st.st_size > MAX_RECORD_BYTES:
            return None
        with os.fdopen(os.dup(fd), "rb") as file:
            return json.loads(file.read(MAX_RECORD_BYTES + 1))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def _versions(entries: Any) -> list[Version]:
    versions = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not _is_sha(entry.get("sha256")):
            continue
        stats = entry.get("stats")
        ok = isinstance(stats, dict) and all(
            (key == "" or _plain_relative(key)) and isinstance(value, list) and len(value) == 5
            and all(type(n) is int for n in value) for key, value in stats.items()
        )  # fmt: skip
        versions.append(Version(entry["sha256"], {k: tuple(v) for k, v in stats.items()} if ok else None))
    return versions


def _publish_path(path: Any, roots: frozenset[str]) -> bool:
    """A path tfbuild may have published to: plain, relative, under one of `roots`."""
    return isinstance(path, str) and _plain_relative(path) and PurePosixPath(path).parts[0] in roots


def _plain_relative(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return bool(parts) and not path.startswith("/") and "\\" not in path and "\0" not in path and all(
        p not in ("", ".", "..") for p in parts) and path == "/".join(parts)  # fmt: skip


def _is_sha(value: Any) -> bool:
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def _plain_files(target: Path) -> dict[str, os.stat_result] | str:
    """Every file at or under `target` (relative path -> lstat; "" for `target` itself when
    it is a file); or the relative path of the first link or special file found ("" for
    `target` itself). Links are never followed."""
    st = os.lstat(target)
    if stat.S_ISREG(st.st_mode):
        return {"": st}
    if not stat.S_ISDIR(st.st_mode):
        return ""
    found: dict[str, os.stat_result] = {}
    pending = [(target, "")]
    while pending:
        folder, prefix = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = f"{prefix}{entry.name}"
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    pending.append((Path(entry.path), f"{rel}/"))
                elif stat.S_ISREG(st.st_mode):
                    found[rel] = st
                else:
                    return rel
    return found


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


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



def remove_unused_run_dir(run_dir: Path, held: bool = False) -> None:
    """A run folder in which nothing was built (a config error, a dry run), with the empty
    folders made on the way to it: Hydra made it, with only its .hydra/ record, before the
    build could tell. Left alone while another build holds it (`held`: the caller does)."""
    leftovers = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else set()
    own = run_dir / OWN
    if OWN in leftovers and (not own.is_dir() or own.is_symlink() or {p.name for p in own.iterdir()} - {LOCK}):
        return  # tfbuild published here (its record), or the name is the user's
    if not leftovers <= {".hydra", BUILD_LOG, OWN}:
        return
    lock = None
    if not held and os.path.lexists(own / LOCK):
        try:
            lock = take(own / LOCK)
        except (Busy, OSError):
            return
    try:
        shutil.rmtree(run_dir, ignore_errors=True)
        _remove_empty_parents(run_dir, stop=Path.cwd())
    finally:
        if lock is not None:
            lock.release()


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
