"""A content-addressed store of step results.

Layout under the cache folder:
  entries/ab/abcd.../manifest.json   what the step was (its key material), info, output digests
  entries/ab/abcd.../out/...         the step's output files
  tmp/                               entries being written; renamed into entries/ when complete
  locks/ab/abcd....lock              one build of a key at a time, across processes and machines
  index/<scope>/<step>.json          the key material a step was last built or reused with,
                                     so a rebuild can say *why* it runs ("params changed: ...")
  state.db                           remembered file digests (see digests.StatCache)

An entry exists only once its folder, manifest written last, is renamed into place. A folder
that is missing, has no readable manifest, or whose files do not match the manifest's digests
is a miss (and is discarded), never a hit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from .digests import StatCache

MANIFEST = "manifest.json"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def cache_key(material: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(material).encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    key: str
    root: Path
    manifest: dict[str, Any]

    def output_path(self, role: str) -> Path:
        return self.root / "out" / self.manifest["outputs"][role]["path"]


def _touch(path: Path) -> None:
    """The manifest's mtime is the entry's "last used" (cache housekeeping reads it)."""
    try:
        os.utime(path)
    except OSError:
        pass  # a read-only cache still serves; it just cannot say when


class Cache:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.state = StatCache(self.root / "state.db")

    def entry_dir(self, key: str) -> Path:
        return self.root / "entries" / key[:2] / key

    def lookup(self, key: str) -> tuple[Entry | None, str | None]:
        """The complete, intact entry for `key`; or None and why an existing one was refused."""
        folder = self.entry_dir(key)
        if not folder.exists():
            return None, None
        problem = self._check(folder)
        if problem is None:
            _touch(folder / MANIFEST)
            return Entry(key, folder, json.loads((folder / MANIFEST).read_text())), None
        self._discard(folder)
        return None, problem

    def _check(self, folder: Path) -> str | None:
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
            outputs = manifest["outputs"]
        except (OSError, ValueError, KeyError, TypeError):
            return "cache entry incomplete"
        for output in outputs.values():
            for record in output["files"]:
                name = (Path(output["path"]) / record["path"]).as_posix()
                path = folder / "out" / name
                try:
                    if path.stat().st_size != record["bytes"] or self.state.file_digest(path) != record["sha256"]:
                        return f"cache entry corrupt ({name} changed)"
                except OSError:
                    return f"cache entry corrupt ({name} missing)"
        return None

    @contextlib.contextmanager
    def locked(self, key: str, on_wait: Callable[[], None] = lambda: None) -> Iterator[None]:
        """Hold `key`'s build lock: one process builds a key at a time, the others wait and then
        find its result. The lock is the OS's (flock/fcntl, through filelock): a killed
        process's lock goes with it, so no lock outlives its holder, whichever machine it ran
        on, and no PID bookkeeping is needed."""
        from filelock import FileLock, Timeout

        path = self.root / "locks" / key[:2] / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            on_wait()
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def begin(self, key: str) -> Path:
        """A fresh private folder to build `key` in (the caller holds `key`'s lock); its `out/`
        is where outputs go. Folders an earlier, killed build of `key` left are removed."""
        for stale in (self.root / "tmp").glob(f"{key}.*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = self.root / "tmp" / f"{key}.{uuid.uuid4().hex[:12]}"
        (tmp / "out").mkdir(parents=True)
        return tmp

    def commit(self, tmp: Path, key: str, manifest: dict[str, Any]) -> Entry:
        """Seal `tmp` with its manifest and move it into place in one rename."""
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        final = self.entry_dir(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, final)
        except OSError:
            # Someone else committed the same key first; same inputs, so keep theirs.
            existing, _ = self.lookup(key)
            if existing is not None:
                shutil.rmtree(tmp, ignore_errors=True)
                return existing
            os.rename(tmp, final)
        # The digests were just computed; remember them for the new paths so that the next
        # lookup's integrity check costs a stat per file, not a re-read.
        for output in manifest["outputs"].values():
            for record in output["files"]:
                self.state.remember(final / "out" / output["path"] / record["path"], record["sha256"])
        return Entry(key, final, manifest)

    def abort(self, tmp: Path) -> None:
        shutil.rmtree(tmp, ignore_errors=True)

    def _discard(self, folder: Path) -> None:
        # Renamed away first so that no reader sees a half-deleted entry.
        trash = self.root / "tmp" / f"discarded.{folder.name}.{uuid.uuid4().hex[:8]}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(folder, trash)
        except OSError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    # -- why a step runs: the key material it was last seen with -----------------------------

    def _index_path(self, scope: str, step: str) -> Path:
        safe = hashlib.sha256(f"{scope}\0{step}".encode()).hexdigest()[:32]
        return self.root / "index" / f"{safe}.json"

    def previous_material(self, scope: str, step: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._index_path(scope, step).read_text())
        except (OSError, ValueError):
            return None

    def remember_material(self, scope: str, step: str, material: dict[str, Any]) -> None:
        path = self._index_path(scope, step)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(canonical_json(material))
        os.replace(tmp, path)

    def close(self) -> None:
        self.state.close()
