"""Content digests of files and folders, remembered by the file's full stat.

Like DVC's state database: a file whose stat is unchanged is not read again, so keying a step
on a 100 MB input costs a stat, not a hash. The stat compared is (size, mtime_ns, ctime_ns,
inode, device): mtime can be set back by anyone (`touch -r`), ctime cannot, so a file edited in
place with its size and mtime restored is read again. The memory is a small SQLite table in the
cache; it is only a memory, so a broken, unwritable or full database never fails a build (it
is moved aside and rebuilt, or digests are kept in memory for this run).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

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


def tree_files(root: Path, hasher=sha256_file) -> list[FileRecord]:
    """Every file under `root` (or `root` itself), sorted, with its digest and size."""
    if root.is_file():
        return [FileRecord("", hasher(root), root.stat().st_size)]
    records = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        records.append(FileRecord(path.relative_to(root).as_posix(), hasher(path), path.stat().st_size))
    return records


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
        """sha256 of `path`; `st`, when given, is its lstat taken just before (saves a syscall)."""
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
        """The digest of a file or a folder, reading only files whose stat changed."""
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
