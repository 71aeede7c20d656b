"""A cache that a team shares, at any fsspec URL (cache.remote=URL): s3://, gs://, az://,
sftp://, file://. tfbuild plugs into fsspec rather than speaking any store's protocol; the
store's credentials come from its own configuration (~/.aws, ~/.ssh, FSSPEC_<PROTOCOL>_*
variables), never from a recipe.

Layout under the URL, Bazel's remote cache in spirit (an action cache over content-addressed
files):
  cas/ab/<sha256>      one file's bytes, named by their digest: two machines uploading the same
                       file write the same name with the same bytes, so either upload is harmless
  ac/ab/<key>.json     an entry's manifest, exactly as in the local cache; uploaded after every
                       file it names, so a manifest a reader finds names files that exist
  pins/<name>.json     the keys a pinned release needs (`tfbuild-cache push`); remote gc keeps them
  tmp/<name>.<id>      an upload in flight, on stores that can rename (file, sftp); renamed into
                       place when whole, so no reader sees half a file under its final name

Nothing from the remote is trusted: an entry is downloaded into the local cache's private
temp folder and passes the same integrity check as a local hit (every file's size and digest,
the outputs' digests, no path leaving the entry, nothing unlisted) before it is committed.
What a check cannot catch is a writer who rewrites a manifest and its files consistently: the
remote is as trusted as whoever may write to it (give developers read-only credentials);
pinned builds still compare every artifact with their lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import urlsplit

from .cache import Entry, cache_key, safe_name
from .integrity import MANIFEST, MAX_MANIFEST_BYTES, OUT, Corrupt, check_entry, listed_files, read_manifest

MODES = ("read", "write", "readwrite")
# Back-ends that are not fsspec built-ins: the extra that installs each (pyproject.toml).
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure",
          "adl": "azure", "sftp": "sftp", "ssh": "sftp"}  # fmt: skip
# Object stores write a whole object or nothing, and cannot rename (a copy and a delete).
WHOLE_OBJECT_WRITES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory")
CHUNK = 1 << 20
SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_PIN_BYTES = 1 << 20

# (bytes done, bytes in all): what a transfer tells whoever shows its progress.
Progress = Callable[[int, int], None]


class RemoteError(Exception):
    """The remote cannot be used now (unreachable, refused, a back-end missing): one line."""


def check_remote_url(url: str) -> str:
    """`url` as given, or a one-line error naming the key: a URL fsspec can open with an
    installed back-end, and no credentials in it (they would be in every run's build.json)."""
    parts = urlsplit(url)
    if not (parts.netloc + parts.path).strip("/"):
        raise ValueError(f"cache.remote: '{url}' names no folder; give one, e.g. s3://bucket/tfbuild-cache, "
                         "file:///srv/tfbuild-cache (or null for no remote)")  # fmt: skip
    if parts.password or parts.query:
        raise ValueError("cache.remote: credentials do not belong in the URL (it is written into every build.json); "
                         "configure them the back-end's usual way (~/.aws/credentials, ~/.ssh/config, "
                         "FSSPEC_<PROTOCOL>_<OPTION> variables)")  # fmt: skip
    import fsspec
    from fsspec.registry import known_implementations

    protocol = _protocol_of(url)
    if protocol not in known_implementations and protocol not in fsspec.available_protocols():
        raise ValueError(f"cache.remote: '{url}' has no protocol fsspec knows (s3://, gs://, az://, sftp://, file://, ...)")
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError:
        extra = EXTRAS.get(protocol)
        how = f"pip install 'tfbuild[{extra}]'" if extra else f"install the fsspec back-end for {protocol}://"
        raise ValueError(f"cache.remote: '{url}' needs fsspec's {protocol} back-end: {how}") from None
    return url


@dataclass(frozen=True)
class RemoteEntry:
    key: str
    name: str
    bytes: int
    blobs: tuple[str, ...]
    uploaded: float  # epoch seconds: when its manifest was written


class RemoteCache:
    """One remote store. Connects at the first call that needs it (a build that finds every
    step in the local cache never imports fsspec); every store error comes out as RemoteError,
    a missing file as absent."""

    def __init__(self, url: str):
        self.url = url
        self._fs: Any = None
        self._root = ""

    # -- paths ---------------------------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        root = self.fs and self._root.rstrip("/")  # the root is known once the store is open
        return "/".join([root, *parts]) if root else "/".join(parts)

    def _manifest(self, key: str) -> str:
        return self._path("ac", key[:2], f"{key}.json")

    def _blob(self, sha: str) -> str:
        if not SHA256.fullmatch(sha):  # a name from a manifest becomes part of a path
            raise Corrupt(f"cache entry corrupt (file digest '{sha[:80]}' is not a sha256)")
        return self._path("cas", sha[:2], sha)

    # -- talking to the store ------------------------------------------------------------------

    @property
    def fs(self) -> Any:
        if self._fs is None:
            with self._talking():
                from fsspec.config import conf
                from fsspec.core import url_to_fs

                # asyncssh logs each connection at INFO, which Hydra's logging would print.
                logging.getLogger("asyncssh").setLevel(logging.WARNING)

                options: dict[str, Any] = {}
                if _protocol_of(self.url) in ("sftp", "ssh") and "known_hosts" not in conf.get(_protocol_of(self.url), {}):
                    # sshfs turns host key checking off unless told; () is asyncssh's own
                    # default: ~/.ssh/known_hosts, as ssh itself checks.
                    options["known_hosts"] = ()
                self._fs, self._root = url_to_fs(self.url, **options)
        return self._fs

    @contextlib.contextmanager
    def _talking(self) -> Iterator[None]:
        try:
            yield
        except (FileNotFoundError, Corrupt, RemoteError):
            raise
        except Exception as exc:  # noqa: BLE001 - each back-end has its own errors (asyncssh, botocore, ...)
            text = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise RemoteError(f"remote cache {self.url}: {text}") from None

    def _read(self, path: str, limit: int) -> bytes:
        """The bytes of `path`, at most `limit` of them (a larger file is not what we wrote)."""
        with self._talking(), self.fs.open(path, "rb") as remote:
            data = remote.read(limit + 1)
        if len(data) > limit:
            raise Corrupt(f"cache entry corrupt ({path.rsplit('/', 1)[-1]} is larger than its record)")
        return data

    def _write(self, path: str, data: bytes) -> None:
        self._put(path, lambda tmp: self.fs.pipe_file(tmp, data))

    def _put(self, path: str, write: Callable[[str], None]) -> None:
        """Write `path` whole or not at all: where the store can rename, into tmp/ and then into
        place; object stores publish an object only once all of it arrived."""
        with self._talking():
            fs = self.fs
            if _protocol(fs) in WHOLE_OBJECT_WRITES:
                write(path)
                return
            tmp = self._path("tmp", f"{path.rsplit('/', 1)[-1]}.{uuid.uuid4().hex[:12]}")
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            fs.makedirs(tmp.rsplit("/", 1)[0], exist_ok=True)
            try:
                write(tmp)
                fs.mv(tmp, path)  # replaces in one step (SFTP: posix-rename; local: rename)
            except BaseException:
                with contextlib.suppress(Exception):
                    fs.rm_file(tmp)
                raise

    def _size(self, path: str) -> int | None:
        try:
            with self._talking():
                return int(self.fs.info(path)["size"])
        except FileNotFoundError:
            return None

    # -- entries -------------------------------------------------------------------------------

    def fetch(self, key: str, into: Path, outputs: Mapping[str, str] | None,
              on_found: Callable[[int], Progress] = lambda total: lambda done, all_: None) -> dict[str, Any] | None:  # fmt: skip
        """Download `key`'s entry into the empty private folder `into` (its out/ made), checked
        as a local hit is: its manifest, or None when the remote has no such entry. Raises
        Corrupt when the entry may not be served (the caller discards `into`), RemoteError
        when the store fails. `on_found(total bytes)` is called once the manifest is read and
        returns what follows the download's progress."""
        try:
            text = self._read(self._manifest(key), MAX_MANIFEST_BYTES)
        except FileNotFoundError:
            return None
        (into / MANIFEST).write_bytes(text)
        manifest = read_manifest(into, key)  # shape, key and paths, before any file is written
        if outputs is not None and {r: o["path"] for r, o in manifest["outputs"].items()} != dict(outputs):
            raise Corrupt("cache entry does not have the step's outputs")
        if not isinstance(manifest.get("material"), dict) or cache_key(manifest["material"]) != key:
            raise Corrupt("cache entry corrupt (its manifest's key material does not hash to its key)")
        files = listed_files(manifest["outputs"])
        total = sum(record.bytes for record in files.values())
        progress, done = on_found(total), 0
        for name, record in files.items():
            target = into / OUT / name
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):  # "a" and "a/b" both listed
                raise Corrupt(f"cache entry corrupt ({name} is both a file and a folder)") from None
            done = self._download(self._blob(record.sha256), target, record.bytes, done, total, progress)
        check_entry(into, key, _read_digest, outputs)
        return manifest

    def _download(self, blob: str, target: Path, size: int, done: int, total: int, progress: Progress) -> int:
        try:
            with self._talking(), self.fs.open(blob, "rb") as remote, open(target, "xb") as local:
                copied = 0
                while chunk := remote.read(min(CHUNK, size + 1 - copied)):
                    local.write(chunk)
                    copied += len(chunk)
                    progress(done + copied, total)
                    if copied > size:
                        raise Corrupt(f"cache entry corrupt ({target.name} is larger than its record)")
        except FileNotFoundError:
            raise Corrupt(f"cache entry incomplete (a file of {target.name} is missing from the remote)") from None
        return done + size

    def upload(self, entry: Entry, progress: Progress = lambda done, total: None, *, replace: bool = False) -> int:
        """Upload a local entry (already checked: it was just built or served) unless the remote
        has it: its files that the remote lacks, then its manifest. The bytes sent (0: it was
        there). `replace` sends everything again (the remote's copy was refused)."""
        manifest_path = self._manifest(entry.key)
        if not replace and self._size(manifest_path) is not None:
            return 0
        files = listed_files(entry.manifest["outputs"])
        total = sum(record.bytes for record in files.values())
        sent = 0
        for name, record in files.items():
            blob = self._blob(record.sha256)
            if replace or self._size(blob) != record.bytes:
                local = entry.root / OUT / name
                self._put(blob, lambda tmp, local=local: self.fs.put_file(str(local), tmp))
            sent += record.bytes
            progress(sent, total)
        self._write(manifest_path, (entry.root / MANIFEST).read_bytes())
        return total

    def entries(self) -> list[RemoteEntry]:
        """Every entry whose manifest reads (the others are listed as problems by gc)."""
        found = []
        with self._talking():
            listing = self.fs.find(self._path("ac"), detail=True) if self.fs.exists(self._path("ac")) else {}
        for path, info in sorted(listing.items()):
            key = path.rsplit("/", 1)[-1].removesuffix(".json")
            if not SHA256.fullmatch(key):
                continue
            try:
                manifest = json.loads(self._read(path, MAX_MANIFEST_BYTES))
                blobs = tuple(r.sha256 for r in listed_files(manifest["outputs"]).values())
                size = sum(int(o["bytes"]) for o in manifest["outputs"].values())
            except (FileNotFoundError, Corrupt, ValueError, KeyError, TypeError, AttributeError):
                continue
            found.append(RemoteEntry(key, str(manifest.get("name", "?")), size, blobs, _modified(info)))
        return found

    def blobs(self) -> dict[str, float]:
        """sha256 -> when it was written, for every file in cas/."""
        with self._talking():
            if not self.fs.exists(self._path("cas")):
                return {}
            listing = self.fs.find(self._path("cas"), detail=True)
        return {path.rsplit("/", 1)[-1]: _modified(info) for path, info in listing.items()}

    def leftovers(self) -> dict[str, float]:
        """Uploads in flight or abandoned under tmp/ -> when they were written."""
        with self._talking():
            if not self.fs.exists(self._path("tmp")):
                return {}
            return {path: _modified(info) for path, info in self.fs.find(self._path("tmp"), detail=True).items()}

    def remove_entry(self, key: str) -> None:
        with self._talking(), contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._manifest(key))

    def remove_blob(self, sha: str) -> None:
        with self._talking(), contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._blob(sha))

    def remove_leftover(self, path: str) -> None:
        with self._talking(), contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)

    # -- pins ----------------------------------------------------------------------------------

    def record_pin(self, name: str, keys: list[str]) -> None:
        record = {"name": name, "keys": sorted(set(keys)), "pushed": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self._write(self._path("pins", f"{safe_name(name)}.json"), (json.dumps(record, indent=2) + "\n").encode())

    def pinned_keys(self) -> tuple[dict[str, str], list[str]]:
        """(cache key -> the pin that needs it, one line per pin record that did not read)."""
        keys: dict[str, str] = {}
        problems = []
        with self._talking():
            paths = sorted(self.fs.glob(self._path("pins", "*.json"))) if self.fs.exists(self._path("pins")) else []
        for path in paths:
            try:
                record = json.loads(self._read(path, MAX_PIN_BYTES))
                if not (isinstance(record, dict) and isinstance(record.get("keys"), list)
                        and all(isinstance(k, str) for k in record["keys"])):  # fmt: skip
                    raise ValueError("not a pin record")
            except (FileNotFoundError, Corrupt, ValueError) as exc:
                problems.append(f"{self.url}/{path.rsplit('/', 2)[-2]}/{path.rsplit('/', 1)[-1]}: unreadable pin record ({exc})")
                continue
            for key in record["keys"]:
                keys.setdefault(key, str(record.get("name", "?")))
        return keys, problems


def _read_digest(path: Path, st: os.stat_result) -> str:
    """A downloaded file's digest, read from disk (no stat cache: these are new files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _protocol_of(url: str) -> str:
    return urlsplit(url).scheme or "file"


def _protocol(fs: Any) -> str:
    protocol = fs.protocol
    return protocol if isinstance(protocol, str) else protocol[0]


def _modified(info: Mapping[str, Any]) -> float:
    """When a listed file was written, from whichever field its back-end reports."""
    for field in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(field)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return 0.0  # unknown: as old as can be, so gc may take it when nothing else keeps it


__all__ = ["MODES", "RemoteCache", "RemoteEntry", "RemoteError", "check_remote_url"]
