"""Content digests of files and folders, remembered by the file's full stat.

Like DVC's state database: a file whose stat is unchanged is not read again, so keying a step
on a 100 MB input costs a stat, not a hash. The stat compared is (size, mtime_ns, ctime_ns,
inode, device): mtime can be set back by anyone (`touch -r`), ctime cannot, so a file edited in
place with its size and mtime restored is read again. The memory is a small SQLite table in the
cache; it is only a memory, so a broken, unwritable or full database never fails a build (it
is moved aside and rebuilt, or digests are kept in memory for this run).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import sqlite3
import stat
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from .errors import ConfigError

CHUNK = 1 << 20


@dataclass(frozen=True)
class FileRecord:
    path: str  # relative to the artifact root ("" when the artifact is one file)
    sha256: str
    bytes: int


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_files(root: Path, hasher: Hasher | None = None, key: str | None = None) -> list[FileRecord]:
    """Every file under `root` (or `root` itself), sorted, with its digest and size, read
    through symlinks as `walk` says (InputPathError naming `key` for what it refuses)."""
    hasher = hasher or (lambda path, st: sha256_file(path))
    records = [FileRecord(e.name, hasher(e.path, e.st), e.st.st_size) for e in walk(Path(root), refuse(key)) if e.is_file]
    # Sorted as paths (part by part: "a/b" before "a-c"), as digests always were.
    return sorted(records, key=lambda record: record.path.split("/"))


# -- the symlink rule ----------------------------------------------------------------------------
#
# One rule for every path tfbuild hashes into a key or watches for the no-op stamp (model.path,
# data paths, image folders, TFRecord globs, builder and model.modules sources, recipes and
# conf): symlinks are followed, and a link's target is read under the link's own name, so its
# bytes are in the key and an edit at the target changes it. What cannot be read that way is
# refused rather than skipped, since skipping is how bytes escape a key: a dangling link, a link
# cycle, a folder reached a second time (through a link: it would be hashed twice, or forever),
# and anything that is not a regular file or a folder (a FIFO blocks the reader, a device never
# ends). Cache entries hold regular files only (step_job.output_records refuses links).


class InputPathError(ConfigError):
    """A path tfbuild would hash that is missing or breaks the symlink rule; one line."""


@dataclass(frozen=True)
class Entry:
    name: str  # relative to the root ("" for the root), through links: a link keeps its own name
    path: Path  # the root joined with `name`: opening it follows the links on the way
    st: os.stat_result  # its stat, links followed
    is_link: bool  # the entry itself is a symlink

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.st.st_mode)


Hasher = Callable[[Path, os.stat_result], str]
Problem = Callable[[Path, str], None]  # called with a path `walk` will not read, and why


def refuse(key: str | None = None) -> Problem:
    """The problem handler of hashing: raise InputPathError naming `key`, the setting that led there."""

    def raise_it(path: Path, why: str) -> None:
        raise InputPathError(f"{key + ': ' if key else ''}{path}: {why}")

    return raise_it


def check_tree(path: str | Path, key: str) -> None:
    """Refuse now, naming `key`, what hashing `path` would refuse later (planning calls this)."""
    for _ in walk(Path(path), refuse(key)):
        pass


def walk(root: Path, problem: Problem, prune: Callable[[str], bool] = lambda name: False) -> Iterator[Entry]:
    """`root` and every file and folder under it, links followed (the symlink rule above).
    Each thing the rule refuses goes to `problem` instead (hashing raises; the stamp watches
    it as it is) and is not descended into. `prune(name)`: folders not to enter."""
    st = _stat(root, problem)
    if st is None:
        return
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        problem(root, _not_regular(st))
        return
    yield Entry("", root, st, root.is_symlink())
    if not stat.S_ISDIR(st.st_mode):
        return
    seen = {(st.st_dev, st.st_ino): ""}  # folders reached so far (device, inode) -> their name
    stack = [("", root)]
    while stack:
        prefix, folder = stack.pop()
        try:
            with os.scandir(folder) as listing:
                children = sorted(listing, key=lambda child: child.name)
        except OSError as exc:
            problem(folder, f"cannot be listed ({exc.strerror})")
            continue
        for child in children:
            path, name = Path(child.path), prefix + child.name
            is_link = child.is_symlink()
            child_st = _stat(path, problem) if is_link else _lstat(child, problem)
            if child_st is None:
                continue
            if stat.S_ISDIR(child_st.st_mode):
                if prune(child.name):
                    continue
                first = seen.setdefault((child_st.st_dev, child_st.st_ino), name)
                if first != name:
                    problem(path, _second_time(root, name, first))
                    continue
                yield Entry(name, path, child_st, is_link)
                stack.append((name + "/", path))
            elif stat.S_ISREG(child_st.st_mode):
                yield Entry(name, path, child_st, is_link)
            else:
                problem(path, _not_regular(child_st))


def _stat(path: Path, problem: Problem) -> os.stat_result | None:
    """`path`'s stat through its links; None (after telling `problem`) where there is none."""
    try:
        return os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            problem(path, "a symlink cycle (its links lead back to themselves)")
        elif os.path.islink(path) and exc.errno in (errno.ENOENT, errno.ENOTDIR):
            problem(path, f"a dangling symlink (its target {os.readlink(path)} does not exist)")
        elif exc.errno in (errno.ENOENT, errno.ENOTDIR):
            problem(path, "no such file or folder")
        else:
            problem(path, f"cannot be read ({exc.strerror})")
        return None


def _lstat(child: os.DirEntry, problem: Problem) -> os.stat_result | None:
    try:
        return child.stat(follow_symlinks=False)
    except OSError as exc:  # removed while listed
        problem(Path(child.path), f"cannot be read ({exc.strerror})")
        return None


def _second_time(root: Path, name: str, first: str) -> str:
    if first == "" or name.startswith(first + "/"):
        return f"a symlink cycle (it leads back to {root / first if first else root})"
    return f"reaches the folder already read as {root / first} a second time (link to a folder from one place only)"


def _not_regular(st: os.stat_result) -> str:
    kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device"
    return f"{kind}, not a regular file or folder"


def tree_digest(records: list[FileRecord]) -> str:
    """One digest for a file or folder: names and contents, independent of timestamps.

    A single file's digest is its plain sha256, so it matches `sha256sum` of the artifact.
    """
    if len(records) == 1 and records[0].path == "":
        return records[0].sha256
    digest = hashlib.sha256()
    for record in records:
        digest.update(f"{record.path}\0{record.sha256}\n".encode())
    return digest.hexdigest()


def stat_signature(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What must stay equal for a remembered digest to still hold."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


# SQLite errors that say nothing about the file itself: keep it, use memory for this run.
_TRANSIENT = {"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_NOMEM", "SQLITE_INTERRUPT"}
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS file_digests (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
    "ctime_ns INTEGER, inode INTEGER, dev INTEGER, sha256 TEXT)"
)


class StatCache:
    """sha256 of files, recomputed only when the file's stat signature changed."""

    def __init__(self, db_path: Path):
        self._db_path = db_path
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = self._open(self._db_path)
        return self._db

    @staticmethod
    def _open(where: Path | str) -> sqlite3.Connection:
        if where != ":memory:":
            Path(where).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(where, timeout=30, isolation_level=None)
        try:
            db.execute(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def _execute(self, sql: str, args: tuple) -> list[tuple]:
        for attempt in range(3):
            try:
                return self._conn().execute(sql, args).fetchall()
            except (sqlite3.Error, OSError) as exc:
                self._recover(exc, last_resort=attempt > 0)
        raise AssertionError("unreachable: an in-memory database does not fail")

    def _recover(self, exc: Exception, *, last_resort: bool) -> None:
        """After an error: a database that is itself bad (garbage, a folder, read-only) is moved
        aside and a fresh one made in its place; if that fails too, or the trouble is passing
        (busy, disk full), digests live in memory for the rest of this run."""
        self.close()
        if last_resort or getattr(exc, "sqlite_errorname", None) in _TRANSIENT:
            self._db = self._open(":memory:")
            return
        try:
            _move_aside(self._db_path)
        except OSError:
            self._db = self._open(":memory:")

    def file_digest(self, path: Path, st: os.stat_result | None = None) -> str:
        """sha256 of `path`; `st`, when given, is its stat (links followed) taken just before
        (saves a syscall). Remembered under the path as named (a link's own), with its target's stat."""
        path = Path(os.path.abspath(path))
        st = st or path.stat()
        rows = self._execute(
            "SELECT size, mtime_ns, ctime_ns, inode, dev, sha256 FROM file_digests WHERE path = ?", (str(path),)
        )
        if rows and tuple(rows[0][:5]) == stat_signature(st):
            return rows[0][5]
        digest = sha256_file(path)
        self.remember(path, digest)
        return digest

    def remember(self, path: Path, sha256: str) -> None:
        """Record a digest computed elsewhere (a freshly written cache entry) for this stat."""
        path = Path(os.path.abspath(path))
        st = path.stat()
        if is_racy(st):
            return
        self._execute(
            "INSERT OR REPLACE INTO file_digests VALUES (?, ?, ?, ?, ?, ?, ?)",
            (str(path), *stat_signature(st), sha256),
        )

    def digest(self, path: Path) -> str:
        """The digest of a file or a folder, reading only files whose stat changed; links are
        followed and the rest of the symlink rule enforced (InputPathError)."""
        return tree_digest(tree_files(Path(path), hasher=self.file_digest))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


# File times advance in ticks (a few milliseconds on Linux, 2 s on FAT), so a file written
# again within the tick in which its digest was taken keeps its whole stat ("racy git"). A
# digest is therefore remembered only for a file whose ctime is at least this much in the
# past; a younger file is simply hashed again next time.
RACY_NS = 2_000_000_000


def is_racy(st: os.stat_result) -> bool:
    return time.time_ns() - st.st_ctime_ns < RACY_NS


def _move_aside(path: Path) -> None:
    """Rename a bad database (or whatever stands in its place) away, then delete it."""
    if not (path.exists() or path.is_symlink()):
        return
    aside = path.with_name(f"{path.name}.bad.{uuid.uuid4().hex[:8]}")
    os.rename(path, aside)
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.unlink(missing_ok=True)
    for suffix in ("-journal", "-wal", "-shm"):  # a journal of the old file must not meet the new one
        path.with_name(path.name + suffix).unlink(missing_ok=True)
