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

A remote may also be hostile or broken in ways that hang or fill a machine, so:
  - only regular files are read: a FIFO, device, link or folder where a manifest or a file
    belongs refuses the entry (a FIFO's open would block for ever);
  - every call to the store runs under a deadline (cache.remote_timeout_s, plus a second per
    MiB it moves): a store that stops answering is a remote failure, never a hung build;
  - a download is capped (cache.remote_max_entry_bytes) by its manifest's claims before any
    file is written, and while streaming; and it must leave the local disk room to spare;
  - an upload refreshes the time of every file it reuses, and gc re-checks each file just
    before deleting it, so a gc and an upload cannot race into a manifest naming a lost file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import queue
import re
import shutil
import stat
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import urlsplit

from .cache import Entry, cache_key, pin_record
from .human import human_bytes
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
# How long one call to the store may take before the store counts as down for this build
# (cache.remote_timeout_s), plus a second per MiB the call moves. A minute: an object store,
# an SFTP server or a network share answers a request in well under a second; one that has not
# answered in a minute is down, or hostile.
TIMEOUT_S = 60.0
SECONDS_PER_MIB = 1.0  # a transfer slower than 1 MiB/s for its whole length is stalled
# The largest entry a download takes (cache.remote_max_entry_bytes). 4 GiB: a billion float32
# weights, beyond the models tfbuild targets (a TFLite flatbuffer and a protobuf model file
# stop at 2 GiB), so a real entry passes, while a forged claim cannot quietly take a laptop's
# disk; a manifest that claims more is refused before a byte is written. Bigger models: raise it.
MAX_ENTRY_BYTES = 4 << 30
# A download must leave this much free on the local cache's disk: filling it would fail this
# build's next step, and every other program on the machine.
DISK_RESERVE_BYTES = 256 << 20
# A file in cas/ younger than this is never deleted by gc, named or not: an upload in flight
# writes (or, reusing it, touches) its files before its manifest.
BLOB_GRACE_S = 3600.0

# (bytes done, bytes in all): what a transfer tells whoever shows its progress.
Progress = Callable[[int, int], None]


class RemoteError(Exception):
    """The remote cannot be used now (unreachable, refused, a back-end missing): one line."""


class RemoteTimeout(RemoteError):
    """A call to the store did not return before its deadline. The call may still be running
    (in a thread of its own): nothing more is asked of that store, not even to clean up."""


class _Stalled(Exception):
    """A call did not return before its deadline."""


class _Worker:
    """A daemon thread that makes the calls to the store, so that the caller can stop waiting
    for one that does not return (a store that stopped answering, a read blocked in the kernel
    on a hung network share) and go on. A worker left behind by such a call is replaced; it
    ends once that call returns, and the process never waits for it (daemon)."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.pid = os.getpid()  # a forked child has the object but not the thread
        threading.Thread(target=self._serve, name="tfbuild-remote", daemon=True).start()

    def _serve(self) -> None:
        while (job := self.jobs.get()) is not None:
            job()


_worker: _Worker | None = None
_worker_lock = threading.Lock()


def _reset_worker() -> None:
    global _worker, _worker_lock
    _worker, _worker_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_reset_worker)


def _within(seconds: float, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """fn(*args, **kwargs) in the worker thread: its result or its exception, or _Stalled
    once `seconds` have passed (the call is left to finish, or not, on its own)."""
    global _worker
    with _worker_lock:
        if _worker is None or _worker.pid != os.getpid():
            _worker = _Worker()
        worker = _worker
    done = threading.Event()
    outcome: list[tuple[bool, Any]] = []

    def job() -> None:
        try:
            outcome.append((True, fn(*args, **kwargs)))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome.append((False, exc))
        finally:
            done.set()

    worker.jobs.put(job)
    if not done.wait(seconds):
        with _worker_lock:
            if _worker is worker:
                _worker = None
        worker.jobs.put(None)  # it ends once the hung call returns
        raise _Stalled
    ok, value = outcome[0]
    if ok:
        return value
    raise value


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
    from fsspec.registry import known_implementations, registry

    protocol = _protocol_of(url)
    # fsspec's own back-ends, and those a plug-in registered (fsspec.register_implementation)
    if protocol not in known_implementations and protocol not in registry and protocol not in fsspec.available_protocols():
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
    a missing file as absent, anything but a regular file where one belongs as Corrupt.

    Every call to the store has a deadline (`timeout_s`, plus a second per MiB it moves);
    a call that misses it is a RemoteError. A download takes at most `max_entry_bytes`."""

    def __init__(self, url: str, *, timeout_s: float = TIMEOUT_S, max_entry_bytes: int = MAX_ENTRY_BYTES):
        self.url = url
        self.timeout_s = float(timeout_s)
        self.max_entry_bytes = int(max_entry_bytes)
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
                protocol = _protocol_of(self.url)
                if protocol in ("sftp", "ssh"):
                    if "known_hosts" not in conf.get(protocol, {}):
                        # sshfs turns host key checking off unless told; () is asyncssh's own
                        # default: ~/.ssh/known_hosts, as ssh itself checks.
                        options["known_hosts"] = ()
                    # sshfs's own bound on connecting, so that the connection attempt ends too.
                    options["timeout"] = conf.get(protocol, {}).get("timeout", self.timeout_s)
                self._fs, self._root = self._call(url_to_fs, self.url, **options)
        return self._fs

    def _call(self, fn: Callable[..., Any], *args: Any, moving: int = 0, **kwargs: Any) -> Any:
        """fn(*args, **kwargs), a call to the store, under its deadline: `timeout_s`, and a
        second more per MiB it moves (`moving` bytes)."""
        seconds = self.timeout_s + SECONDS_PER_MIB * moving / (1 << 20)
        try:
            return _within(seconds, fn, *args, **kwargs)
        except _Stalled:
            name = getattr(fn, "__name__", "")
            what = _DOING.get(name, name or "a call")
            raise RemoteTimeout(f"remote cache {self.url}: no answer in {seconds:g} s ({what}; "
                              "cache.remote_timeout_s sets how long to wait)") from None  # fmt: skip

    @contextlib.contextmanager
    def _talking(self) -> Iterator[None]:
        try:
            yield
        except (FileNotFoundError, Corrupt, RemoteError):
            raise
        except Exception as exc:  # noqa: BLE001 - each back-end has its own errors (asyncssh, botocore, ...)
            text = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise RemoteError(f"remote cache {self.url}: {text}") from None

    def _local(self) -> bool:
        """Whether the store is this machine's file system (file://), where a path can be
        checked and opened without following links or blocking."""
        return _protocol(self.fs) in ("file", "local")

    @contextlib.contextmanager
    def _opened(self, path: str, limit: int, name: str) -> Iterator[Any]:
        """A read handle on `path`, only if it is a regular file of at most `limit` bytes
        (Corrupt otherwise; FileNotFoundError when it is not there). Nothing else is ever
        opened: a FIFO's open blocks until someone writes, a device's data never ends, a link
        may lead anywhere, a folder is not ours. Closed after, unless a call on it stalled
        (closing waits for that call: the store is given up on instead). `name` is what a
        refusal calls the file."""
        with self._talking():
            if self._local():
                handle, size = self._call(_open_regular, self.fs._strip_protocol(path), name)
            else:
                info = self._call(self.fs.info, path)
                if info.get("type") != "file" or info.get("islink"):
                    kind = "a link" if info.get("islink") else {"directory": "a folder"}.get(str(info.get("type")), f"a {info.get('type')}")
                    raise Corrupt(f"cache entry corrupt ({name} is {kind} in the remote, not a regular file)")
                handle, size = self._call(self.fs.open, path, "rb"), int(info.get("size") or 0)
        stalled = False
        try:
            if size > limit:
                raise Corrupt(f"cache entry corrupt ({name} is larger than its record)")
            yield handle
        except RemoteTimeout:
            stalled = True
            raise
        finally:
            if not stalled:
                with self._talking(), contextlib.suppress(OSError):
                    self._call(handle.close)

    def _read(self, path: str, limit: int, name: str | None = None) -> bytes:
        """The bytes of the regular file `path`, at most `limit` of them (a larger file is
        not what we wrote)."""
        name = name or path.rsplit("/", 1)[-1]
        data = b""
        with self._opened(path, limit, name) as handle:
            while len(data) <= limit and (chunk := self._chunk(handle, limit + 1 - len(data))):
                data += chunk
        if len(data) > limit:
            raise Corrupt(f"cache entry corrupt ({name} is larger than its record)")
        return data

    def _chunk(self, handle: Any, most: int) -> bytes:
        """The next bytes of an open remote file, at most `most` (and a MiB) of them."""
        with self._talking():
            return bytes(self._call(handle.read, min(CHUNK, most), moving=min(CHUNK, most)))

    def _write(self, path: str, data: bytes) -> None:
        self._put(path, lambda tmp: self._call(self.fs.pipe_file, tmp, data, moving=len(data)))

    def _put(self, path: str, write: Callable[[str], None]) -> None:
        """Write `path` whole or not at all: where the store can rename, into tmp/ and then into
        place; object stores publish an object only once all of it arrived."""
        with self._talking():
            fs = self.fs
            if _protocol(fs) in WHOLE_OBJECT_WRITES:
                write(path)
                return
            tmp = self._path("tmp", f"{path.rsplit('/', 1)[-1]}.{uuid.uuid4().hex[:12]}")
            self._call(fs.makedirs, path.rsplit("/", 1)[0], exist_ok=True)
            self._call(fs.makedirs, tmp.rsplit("/", 1)[0], exist_ok=True)
            try:
                write(tmp)
                self._call(fs.mv, tmp, path)  # replaces in one step (SFTP: posix-rename; local: rename)
            except RemoteTimeout:
                raise  # a stalled store is asked nothing more; gc removes tmp/ files a day old
            except BaseException:
                with contextlib.suppress(Exception):
                    self._call(fs.rm_file, tmp)
                raise

    def _send(self, local: Path, path: str) -> None:
        """Upload the local file `local` to `path`, whole or not at all. Where the store can
        rename, it is streamed into tmp/ a MiB at a time, each write under its deadline (a
        partial tmp/ file is never renamed into place); an object store takes it in one call
        (a buffered object file, dropped half-written, would publish what it holds)."""
        size = local.stat().st_size
        if _protocol(self.fs) in WHOLE_OBJECT_WRITES:
            self._put(path, lambda tmp: self._call(self.fs.put_file, str(local), tmp, moving=size))
            return

        def stream(tmp: str) -> None:
            remote = self._call(self.fs.open, tmp, "wb")
            try:
                with open(local, "rb") as source:
                    while chunk := source.read(CHUNK):
                        self._call(remote.write, chunk, moving=len(chunk))
            except RemoteTimeout:
                raise  # closing would wait for the stalled call
            except BaseException:
                with contextlib.suppress(Exception):
                    self._call(remote.close)
                raise
            self._call(remote.close)

        self._put(path, stream)

    def _info(self, path: str) -> dict[str, Any] | None:
        try:
            with self._talking():
                return dict(self._call(self.fs.info, path))
        except FileNotFoundError:
            return None

    def _size(self, path: str) -> int | None:
        info = self._info(path)
        return None if info is None else int(info["size"])

    def _touch(self, blob: str) -> bool:
        """Make the file `blob` young again, so that a gc running now keeps it (it deletes no
        file younger than BLOB_GRACE_S): True once done; False when it is not there any more
        or the store cannot set a file's time (the caller uploads it again, which does)."""
        if not self._local():
            return False
        try:
            with self._talking():
                # utime, unlike fsspec's touch, never creates the file: a blob that a gc just
                # deleted is found missing here, and uploaded again.
                self._call(os.utime, self.fs._strip_protocol(blob), follow_symlinks=False)
            return True
        except FileNotFoundError:
            return False

    def _whole(self, blob: str, size: int) -> bool:
        """Whether `blob` is in the remote, a regular file of `size` bytes."""
        info = self._info(blob)
        return info is not None and info.get("type") == "file" and not info.get("islink") and info.get("size") == size

    def _reuse(self, blob: str, size: int) -> bool:
        """Whether `blob` is in the remote, whole, and was made young again (see _touch);
        False: upload it."""
        return self._whole(blob, size) and self._touch(blob)

    # -- entries -------------------------------------------------------------------------------

    def fetch(self, key: str, into: Path, outputs: Mapping[str, str] | None,
              on_found: Callable[[int], Progress] = lambda total: lambda done, all_: None) -> dict[str, Any] | None:  # fmt: skip
        """Download `key`'s entry into the empty private folder `into` (its out/ made), checked
        as a local hit is: its manifest, or None when the remote has no such entry. Raises
        Corrupt when the entry may not be served (the caller discards `into`), RemoteError
        when the store fails, OSError(ENOSPC) when the local disk lacks the room. Before any
        of its files is written, the manifest's sizes are held against max_entry_bytes and
        the disk's free space; while streaming, no file grows past its record.
        `on_found(total bytes)` is called once the manifest is read and returns what follows
        the download's progress."""
        try:
            text = self._read(self._manifest(key), MAX_MANIFEST_BYTES, "its manifest")
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
        self._check_room(total, into)
        progress, done = on_found(total), 0
        for name, record in files.items():
            target = into / OUT / name
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):  # "a" and "a/b" both listed
                raise Corrupt(f"cache entry corrupt ({name} is both a file and a folder)") from None
            done = self._download(self._blob(record.sha256), target, name, record.bytes, done, total, progress)
        check_entry(into, key, _read_digest, outputs)
        return manifest

    def _check_room(self, total: int, into: Path) -> None:
        """Refuse a download its manifest says is over the cap, or that the local disk cannot
        take with DISK_RESERVE_BYTES to spare, before any of its bytes is written."""
        if total > self.max_entry_bytes:
            raise Corrupt(f"cache entry too big (its files claim {human_bytes(total)}, over "
                          f"cache.remote_max_entry_bytes: {human_bytes(self.max_entry_bytes)})")  # fmt: skip
        free = shutil.disk_usage(into).free
        if total + DISK_RESERVE_BYTES > free:
            raise OSError(errno.ENOSPC, f"it needs {human_bytes(total)} and the cache's disk has {human_bytes(free)} free, "
                                        f"{human_bytes(DISK_RESERVE_BYTES)} of which stay free")  # fmt: skip

    def _download(self, blob: str, target: Path, name: str, size: int, done: int, total: int, progress: Progress) -> int:
        try:
            with self._opened(blob, size, name) as remote, open(target, "xb") as local:
                copied = 0
                while chunk := self._chunk(remote, size + 1 - copied):
                    copied += len(chunk)
                    if copied > size:  # a file that grew since it was looked at
                        raise Corrupt(f"cache entry corrupt ({name} is larger than its record)")
                    local.write(chunk)
                    progress(done + copied, total)
        except FileNotFoundError:
            raise Corrupt(f"cache entry incomplete ({name} is missing from the remote)") from None
        return done + size

    def upload(self, entry: Entry, progress: Progress = lambda done, total: None, *, replace: bool = False) -> int:
        """Upload a local entry (already checked: it was just built or served) unless the remote
        has it: its files that the remote lacks, then its manifest. The bytes sent (0: it was
        there, whole). `replace` sends everything again (the remote's copy was refused).

        A file the remote already has is made young again (or sent again) rather than taken as
        it is: a gc that is deleting it, no manifest naming it yet, sees it young and keeps it.
        The manifest is written within BLOB_GRACE_S / 2 of every file it names being sent or
        touched (an upload slower than that touches them all again), so gc keeps them all.
        An entry whose manifest is there is taken as it is only when every file that manifest
        names is there and whole; else this one replaces it: that repairs an entry that a gc
        racing an upload, or a hand, left broken (a reader that met it dropped its uploader's
        note, remote_sync.RemoteSync.download, so the next upload comes here)."""
        manifest_path = self._manifest(entry.key)
        if not replace:
            whole = self._entry_whole(manifest_path)
            if whole:
                return 0
            replace = whole is False  # broken: ours replaces it; None: absent, files are reused
        files = listed_files(entry.manifest["outputs"])
        total = sum(record.bytes for record in files.values())
        sent, started = 0, time.monotonic()
        for name, record in files.items():
            blob = self._blob(record.sha256)
            if replace or not self._reuse(blob, record.bytes):
                self._send(entry.root / OUT / name, blob)
            sent += record.bytes
            progress(sent, total)
        if time.monotonic() - started > BLOB_GRACE_S / 2:
            for name, record in files.items():
                blob = self._blob(record.sha256)
                if not self._reuse(blob, record.bytes):
                    self._send(entry.root / OUT / name, blob)
        self._write(manifest_path, (entry.root / MANIFEST).read_bytes())
        return total

    def _entry_whole(self, manifest_path: str) -> bool | None:
        """Whether the remote's entry at `manifest_path` has every file it names, whole; None
        when it has no such manifest."""
        try:
            manifest = json.loads(self._read(manifest_path, MAX_MANIFEST_BYTES))
            named = [(self._blob(r.sha256), r.bytes) for r in listed_files(manifest["outputs"]).values()]
        except FileNotFoundError:
            return None
        except (Corrupt, ValueError, KeyError, TypeError, AttributeError):
            return False
        return all(self._whole(blob, size) for blob, size in named)

    def entries(self) -> list[RemoteEntry]:
        """Every entry whose manifest reads (the others are listed as problems by gc)."""
        found = []
        with self._talking():
            ac = self._path("ac")
            listing = self._call(self.fs.find, ac, detail=True) if self._call(self.fs.exists, ac) else {}
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
            cas = self._path("cas")
            if not self._call(self.fs.exists, cas):
                return {}
            listing = self._call(self.fs.find, cas, detail=True)
        return {path.rsplit("/", 1)[-1]: _modified(info) for path, info in listing.items()}

    def blob_written(self, sha: str) -> float | None:
        """When the file `sha` in cas/ was last written or touched; None when it is not there."""
        info = self._info(self._blob(sha))
        return None if info is None else _modified(info)

    def leftovers(self) -> dict[str, float]:
        """Uploads in flight or abandoned under tmp/ -> when they were written."""
        with self._talking():
            tmp = self._path("tmp")
            if not self._call(self.fs.exists, tmp):
                return {}
            return {path: _modified(info) for path, info in self._call(self.fs.find, tmp, detail=True).items()}

    def remove_entry(self, key: str) -> None:
        with self._talking(), contextlib.suppress(FileNotFoundError):
            self._call(self.fs.rm_file, self._manifest(key))

    def remove_blob(self, sha: str) -> None:
        with self._talking(), contextlib.suppress(FileNotFoundError):
            self._call(self.fs.rm_file, self._blob(sha))

    def remove_leftover(self, path: str) -> None:
        with self._talking(), contextlib.suppress(FileNotFoundError):
            self._call(self.fs.rm_file, path)

    # -- pins ----------------------------------------------------------------------------------

    def record_pin(self, name: str, keys: list[str]) -> None:
        file_name, record = pin_record(name, keys)  # per content, as locally: pushes from two checkouts both stay
        record["pushed"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._write(self._path("pins", file_name), (json.dumps(record, indent=2) + "\n").encode())

    def pinned_keys(self) -> tuple[dict[str, str], list[str]]:
        """(cache key -> the pin that needs it, one line per pin record that did not read)."""
        keys: dict[str, str] = {}
        problems = []
        with self._talking():
            pins = self._path("pins")
            paths = sorted(self._call(self.fs.glob, self._path("pins", "*.json"))) if self._call(self.fs.exists, pins) else []
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


# What a call that timed out was doing, in the warning's words.
_DOING = {"url_to_fs": "connecting", "info": "looking at a file", "_open_regular": "opening a file",
          "open": "opening a file", "read": "reading", "write": "writing", "close": "closing a file",
          "pipe_file": "writing", "put_file": "writing", "mv": "renaming", "rm_file": "deleting",
          "makedirs": "making a folder", "find": "listing", "glob": "listing", "exists": "looking at a file",
          "utime": "touching a file"}  # fmt: skip
_KINDS = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device",
          stat.S_IFSOCK: "a socket", stat.S_IFLNK: "a link"}  # fmt: skip


def _open_regular(path: str, name: str) -> tuple[Any, int]:
    """A read handle on the local `path` and its size, only if it is a regular file. Anything
    else is refused before it is opened (lstat: a link is refused, not followed). The open
    itself follows no link and cannot block, and its fstat must show a regular file too: a
    FIFO or device swapped in between returns at once and is refused. What the fstat sees is
    what is read: the same open file."""
    try:
        _refuse_unless_regular(os.lstat(path), name)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise FileNotFoundError(path) from None
        if exc.errno == errno.ELOOP:
            raise Corrupt(f"cache entry corrupt ({name} is a link in the remote, not a regular file)") from None
        raise
    try:
        st = os.fstat(fd)
        _refuse_unless_regular(st, name)
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def _refuse_unless_regular(st: os.stat_result, name: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise Corrupt(f"cache entry corrupt ({name} is {_KINDS.get(stat.S_IFMT(st.st_mode), 'a special file')} "
                      "in the remote, not a regular file)")  # fmt: skip


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


__all__ = ["BLOB_GRACE_S", "MAX_ENTRY_BYTES", "MODES", "TIMEOUT_S", "RemoteCache", "RemoteEntry", "RemoteError",
           "RemoteTimeout", "check_remote_url"]
