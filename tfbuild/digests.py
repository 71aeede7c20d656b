"""Content digests of files and folders, remembered by (path, size, mtime, inode).

Like DVC's state database: a file whose stat is unchanged is not read again, so keying a step
on a 100 MB input costs a stat, not a hash. The memory is a small SQLite table in the cache.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
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


class StatCache:
    """sha256 of files, recomputed only when (size, mtime_ns, inode) changed."""

    def __init__(self, db_path: Path):
        self._db_path = db_path
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._db_path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self._db_path, timeout=30, isolation_level=None)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER, "
                "mtime_ns INTEGER, inode INTEGER, sha256 TEXT)"
            )
        return self._db

    def file_digest(self, path: Path) -> str:
        path = Path(os.path.abspath(path))
        st = path.stat()
        row = self._conn().execute(
            "SELECT size, mtime_ns, inode, sha256 FROM digests WHERE path = ?", (str(path),)
        ).fetchone()
        if row and tuple(row[:3]) == (st.st_size, st.st_mtime_ns, st.st_ino):
            return row[3]
        digest = sha256_file(path)
        self.remember(path, digest)
        return digest

    def remember(self, path: Path, sha256: str) -> None:
        """Record a digest computed elsewhere (a freshly written cache entry) for this stat."""
        path = Path(os.path.abspath(path))
        st = path.stat()
        self._conn().execute(
            "INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?)",
            (str(path), st.st_size, st.st_mtime_ns, st.st_ino, sha256),
        )

    def digest(self, path: Path) -> str:
        """The digest of a file or a folder, reading only files whose stat changed."""
        return tree_digest(tree_files(Path(path), hasher=self.file_digest))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
