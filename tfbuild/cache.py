"""A content-addressed store of step results; the one owner of the cache folder's layout.

Layout under the cache folder:
  entries/ab/abcd.../manifest.json   the key, what the step was (its key material), info, and
                                     each output's digest, size and file records
  entries/ab/abcd.../out/...         the step's output files, read-only (0444)
  tmp/<key>.<id>/                    an entry being built; renamed into entries/ when complete
  tmp/discarded.* tmp/gc.*           entries renamed away before deletion (trash)
  locks/ab/<key>.lock                the build lock: one build of a key at a time, across
                                     processes and machines (exclusive)
  locks/ab/<key>.use                 the use lock: every build holds it shared on each entry it
                                     uses, until it ends; gc removes only what it can take
                                     exclusively, together with the build lock
  pins/<name>.<digest>.json          the keys a pinned release needs (gc keeps them): one record
                                     per pin content, so checkouts sharing the cache add theirs
  index/<hash>.json                  the key material a step was last built or reused with,
                                     so a rebuild can say *why* it runs ("params changed: ...")
  state.db                           remembered file digests (see digests.StatCache)
  stamps/<name>.json                 what a command's last good build was composed from and
                                     planned to (the no-op shortcut, stamp.py)
  remote/<url hash>/ab/<key>         this machine uploaded `key` to that remote cache (when:
                                     the file's mtime), so a build need not ask the remote

An entry exists only once its folder, manifest written last, is renamed into place. An entry
is served only when it is exactly what its manifest says and the manifest holds together (see
integrity.py); anything else is a miss, and the entry is discarded, never served.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from .digests import StatCache
from .discovered import stale
from .integrity import MANIFEST, OUT, Corrupt, check_entry

__all__ = ["MANIFEST", "Cache", "CacheEntry", "Entry", "Leftover", "Pins", "cache_key", "canonical_json"]

READ_ONLY = 0o444
_BUILD_FOLDER = re.compile(r"([0-9a-f]{64})\.[0-9a-f]+")  # tmp/<key>.<id>, made by Cache.begin
MAX_PIN_BYTES = 1 << 20
MAX_STAMP_BYTES = 64 << 20  # a stamp is tens of KB; a bigger file is not one


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
        return self.root / OUT / self.manifest["outputs"][role]["path"]


@dataclass
class CacheEntry:
    """An entry as housekeeping sees it (its manifest read, its files not checked)."""

    key: str
    name: str
    bytes: int
    created: str
    last_used: float  # epoch seconds: the manifest's mtime
    folder: Path


@dataclass
class Leftover:
    """A folder under tmp/: a killed build's private folder, or trash not yet deleted."""

    folder: Path
    bytes: int
    key: str | None  # the key it was building; None for trash


@dataclass
class Pins:
    keys: dict[str, str]  # cache key -> the pin that needs it
    problems: list[str]  # one line per pin record that could not be read


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

    @staticmethod
    def stamp_file(root: Path, name: str) -> Path:
        return Path(root) / "stamps" / f"{name}.json"

    @staticmethod
    def read_stamp(root: Path, name: str) -> str | None:
        """A stamp's text, only from a regular file of this user's that no one else may write
        (a stamp decides what a command builds: in a cache others share, theirs are not
        taken, as ssh takes no key file that others can write)."""
        path = Cache.stamp_file(root, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
                return None
            return os.read(fd, MAX_STAMP_BYTES + 1).decode("utf-8", errors="replace")
        except OSError:
            return None
        finally:
            os.close(fd)

    @staticmethod
    def write_stamp(root: Path, name: str, text: str) -> None:
        """Replace a stamp in one rename (a reader finds the old one or the new one, whole),
        readable and writable by this user only."""
        path = Cache.stamp_file(root, name)
        path.parent.mkdir(exist_ok=True)
        if path.is_dir() and not path.is_symlink():  # whatever stands in its place goes
            shutil.rmtree(path)
        staging = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        try:
            fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as file:
                file.write(text)
            os.replace(staging, path)
        finally:
            staging.unlink(missing_ok=True)

    # -- what this machine uploaded to a remote cache ------------------------------------------

    def _upload_mark(self, remote: str, key: str) -> Path:
        return self.root / "remote" / hashlib.sha256(remote.encode()).hexdigest()[:16] / key[:2] / key

    def uploaded_within(self, remote: str, key: str, seconds: float) -> bool:
        """Whether this machine uploaded (or found) `key` in `remote` in the last `seconds`."""
        try:
            return time.time() - self._upload_mark(remote, key).stat().st_mtime < seconds
        except OSError:
            return False

    def mark_uploaded(self, remote: str, key: str) -> None:
        """Best effort, like the index: a mark only saves asking the remote again."""
        mark = self._upload_mark(remote, key)
        with contextlib.suppress(OSError):
            mark.parent.mkdir(parents=True, exist_ok=True)
            mark.touch()

    def forget_uploaded(self, remote: str, key: str) -> None:
        """Drop the mark: `remote`'s copy of `key` was found broken or refused, so the next
        build that may write uploads it again instead of trusting the mark for a day."""
        with contextlib.suppress(OSError):
            self._upload_mark(remote, key).unlink(missing_ok=True)

    def entry_dir(self, key: str) -> Path:
        return self.root / "entries" / key[:2] / key

    def lookup(self, key: str, outputs: Mapping[str, str] | None = None) -> tuple[Entry | None, str | None]:
        """The complete, intact entry for `key`; or None and why an existing one was refused.

        `outputs` (role -> path) is what the asking step declares; an entry with other outputs
        is refused too.
        """
        folder = self.entry_dir(key)
        if not os.path.lexists(folder):
            return None, None
        try:
            manifest = check_entry(folder, key, self.state.file_digest, outputs)
        except Corrupt as problem:
            self._discard(folder)
            return None, str(problem)
        # What the step read besides its key (discovered.py) must still be as it was; if not,
        # the entry is another version's: a miss, kept until its rebuild replaces it (commit).
        changed = stale(manifest, self.state.file_digest)
        if changed is not None:
            return None, changed
        _touch(folder / MANIFEST)
        return Entry(key, folder, manifest), None

    # -- locks ---------------------------------------------------------------------------------

    def _lock_path(self, key: str, kind: str) -> Path:
        path = self.root / "locks" / key[:2] / f"{key}.{kind}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    @contextlib.contextmanager
    def locked(self, key: str, on_wait: Callable[[], None] = lambda: None) -> Iterator[None]:
        """Hold `key`'s build lock: one process builds a key at a time, the others wait and then
        find its result. The lock is the OS's (flock/fcntl, through filelock): a killed
        process's lock goes with it, so no lock outlives its holder, whichever machine it ran
        on, and no PID bookkeeping is needed."""
        from filelock import FileLock, Timeout

        lock = FileLock(self._lock_path(key, "lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            on_wait()
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    @contextlib.contextmanager
    def using(self, key: str) -> Iterator[None]:
        """Hold `key`'s use lock shared: gc leaves the entry alone while it is held. Taken
        before the lookup, so an entry gc is removing right now is a plain miss, never a
        half-gone hit. In a cache this user cannot write, it is taken where the lock file
        exists, and skipped where it cannot be: such a cache only serves."""
        try:
            fd = os.open(self._lock_path(key, "use"), os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            try:
                fd = os.open(self.root / "locks" / key[:2] / f"{key}.use", os.O_RDONLY)
            except OSError:
                yield
                return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    @contextlib.contextmanager
    def _unused(self, key: str) -> Iterator[bool]:
        """True while this process holds both of `key`'s locks exclusively; False (at once) if a
        build holds either."""
        from filelock import FileLock, Timeout

        build = FileLock(self._lock_path(key, "lock"))
        try:
            build.acquire(timeout=0)
        except Timeout:
            yield False
            return
        fd = os.open(self._lock_path(key, "use"), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)
            build.release()

    # -- writing an entry ----------------------------------------------------------------------

    def begin(self, key: str) -> Path:
        """A fresh private folder to build `key` in (the caller holds `key`'s lock); its `out/`
        is where outputs go. Folders an earlier, killed build of `key` left are removed."""
        for stale in (self.root / "tmp").glob(f"{key}.*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = self.root / "tmp" / f"{key}.{uuid.uuid4().hex[:12]}"
        (tmp / OUT).mkdir(parents=True)
        return tmp

    def commit(self, tmp: Path, key: str, manifest: dict[str, Any], *, replace: bool = False) -> Entry:
        """Seal `tmp` with its manifest and move it into place in one rename (the caller holds
        `key`'s build lock).

        An entry already there is kept (same key, same inputs) when it passes the integrity
        check, unless `replace`: a forced build replaces the entry it rebuilt, which may be
        the very reason it was forced."""
        _make_read_only(tmp / OUT)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        final = self.entry_dir(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(final):
            if not replace:
                expected = {role: out["path"] for role, out in manifest["outputs"].items()}
                existing, _ = self.lookup(key, expected)  # a corrupt one is discarded here
                if existing is not None:
                    shutil.rmtree(tmp, ignore_errors=True)
                    return existing
            self._discard(final)
        os.rename(tmp, final)
        # The digests were just computed; remember them for the new paths so that the next
        # lookup's integrity check costs a stat per file, not a re-read.
        for output in manifest["outputs"].values():
            for record in output["files"]:
                self.state.remember(final / OUT / output["path"] / record["path"], record["sha256"])
        return Entry(key, final, manifest)

    def abort(self, tmp: Path) -> None:
        shutil.rmtree(tmp, ignore_errors=True)

    def _discard(self, folder: Path, prefix: str = "discarded") -> bool:
        # Renamed away first so that no reader sees a half-deleted entry.
        trash = self.root / "tmp" / f"{prefix}.{folder.name}.{uuid.uuid4().hex[:8]}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(folder, trash)
        except OSError:
            return False
        _remove_tree(trash)
        return True

    # -- housekeeping --------------------------------------------------------------------------

    def entries(self) -> list[CacheEntry]:
        """Every entry whose manifest reads (a build discards the others when it meets them)."""
        found = []
        for manifest_path in sorted((self.root / "entries").glob(f"*/*/{MANIFEST}")):
            try:
                manifest = json.loads(manifest_path.read_text())
                size = sum(int(output["bytes"]) for output in manifest["outputs"].values())
                last_used = manifest_path.stat().st_mtime
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
            found.append(CacheEntry(manifest_path.parent.name, str(manifest.get("name", "?")), size,
                                    str(manifest.get("created", "?")), last_used, manifest_path.parent))  # fmt: skip
        return found

    def remove_if_unused(self, entry: CacheEntry) -> bool:
        """Delete `entry` unless a build holds it (uses it, or is building its key): False then."""
        with self._unused(entry.key) as free:
            return free and self._discard(entry.folder, prefix="gc")

    def leftovers(self) -> list[Leftover]:
        """Folders under tmp/: killed builds' private folders and undeleted trash."""
        found = []
        for folder in sorted((self.root / "tmp").glob("*")):
            if not (folder.is_dir() or folder.is_symlink()):
                continue
            building = _BUILD_FOLDER.fullmatch(folder.name)  # from begin(); anything else in tmp/ is trash
            found.append(Leftover(folder, _tree_bytes(folder), building.group(1) if building else None))
        return found

    def remove_leftover(self, leftover: Leftover) -> bool:
        """Delete trash, or a build folder whose key no live build holds; False if one does."""
        if leftover.key is None:
            _remove_tree(leftover.folder)
            return True
        with self._unused(leftover.key) as free:
            if free:
                _remove_tree(leftover.folder)
            return free

    # -- pinned releases -----------------------------------------------------------------------

    def record_pin(self, name: str, keys: Iterable[str]) -> None:
        """Remember that pinned release `name` needs the entries `keys` (gc keeps them).

        One record per pin content (its name and keys), never per name alone: two checkouts
        that share this cache and each pin `name` differently keep both records, and gc keeps
        the union. Writing the same content again (a pinned rebuild) changes nothing."""
        file_name, record = pin_record(name, keys)
        path = self.root / "pins" / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, path)

    def pinned_keys(self) -> dict[str, str]:
        """cache key -> the pinned release that needs it, from the cache's own pin records."""
        return self.pins().keys

    def pins(self) -> Pins:
        keys: dict[str, str] = {}
        problems = []
        for path in sorted((self.root / "pins").glob("*.json")):
            try:
                if path.stat().st_size > MAX_PIN_BYTES:
                    raise ValueError("too large")
                record = json.loads(path.read_text())
                if not (isinstance(record, dict) and isinstance(record.get("keys"), list)
                        and all(isinstance(k, str) for k in record["keys"])):  # fmt: skip
                    raise ValueError("not a pin record")
            except (OSError, ValueError) as exc:
                problems.append(f"{path}: unreadable pin record ({exc})")
                continue
            for key in record["keys"]:
                keys.setdefault(key, str(record.get("name", path.stem)))
        return Pins(keys, problems)

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
        """Best effort: the index only explains rebuilds, so a full disk must not fail a build."""
        path = self._index_path(scope, step)
        text = canonical_json(material)
        with contextlib.suppress(OSError):
            if path.read_text() == text:  # the usual no-op: a read is cheaper than a write and a rename
                return
        tmp = path.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)

    def close(self) -> None:
        self.state.close()


def _make_read_only(folder: Path) -> None:
    """Entry files are 0444 so that a stray write through some other path fails loudly (the
    owner could chmod them back, which is why run folders get copies, never links)."""
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(READ_ONLY)


def _remove_tree(folder: Path) -> None:
    if folder.is_symlink():  # a discarded entry that was a link: remove the link, never its target
        folder.unlink(missing_ok=True)
    else:
        shutil.rmtree(folder, ignore_errors=True)


def _tree_bytes(folder: Path) -> int:
    if folder.is_symlink():
        return 0
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
    return total


def pin_record(name: str, keys: Iterable[str]) -> tuple[str, dict[str, Any]]:
    """A pin record's file name and content, local or remote: one record per pin content (its
    name and keys), so that caches shared by several checkouts keep every checkout's record."""
    record = {"name": name, "keys": sorted(set(keys))}
    digest = hashlib.sha256(canonical_json(record).encode()).hexdigest()[:16]
    return f"{safe_name(name)}.{digest}.json", record


def safe_name(name: str) -> str:
    """A file name for `name`: itself when plain, else its plain letters and a short hash."""
    plain = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100].lstrip(".")
    if plain == name:
        return plain
    return f"{plain}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
