"""The remote cache as one build (or `tfbuild-cache push/pull`) uses it: on a local miss, an
entry is downloaded into the local cache's private folder, checked, and committed like a
build's result; after the build, what it built or used is uploaded.

The remote is an accelerator, never a requirement: when it fails (unreachable, refused,
full, or too slow to answer), the build warns once and goes on locally. A remote entry that
fails the integrity check is refused with a warning, rebuilt here, and (in readwrite mode)
uploaded again in place of the refused copy; this machine's note that the remote holds it
is dropped, so that the next build that writes uploads it again too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from .cache import Cache, Entry
from .discovered import stale
from .integrity import Corrupt
from .remote_cache import MAX_ENTRY_BYTES, TIMEOUT_S, RemoteCache, RemoteError

# How long this machine trusts its own note that the remote has an entry. Remote gc ages
# entries by upload, so a writer that still uses an entry uploads it again within this long
# of a gc taking it.
UPLOAD_MARK_TTL_S = 24 * 3600.0

# What follows a transfer: called with (bytes done, bytes in all).
Progress = Callable[[int, int], None]


@dataclass
class Uploaded:
    entries: int = 0
    bytes: int = 0
    present: int = 0  # already in the remote
    seconds: float = 0.0
    failed: str | None = None  # why uploading stopped


@dataclass
class RemoteSync:
    cache: Cache
    remote: RemoteCache
    mode: str  # read | write | readwrite
    warn: Callable[[str], None]
    refused: set[str] = field(default_factory=set)  # keys whose remote copy was refused
    down: str | None = None  # why the remote is not used for the rest of this build

    @property
    def reads(self) -> bool:
        return "read" in self.mode and self.down is None

    @property
    def writes(self) -> bool:
        return "write" in self.mode and self.down is None

    def _fail(self, problem: RemoteError) -> None:
        self.down = str(problem)
        self.warn(f"{problem}; building without the remote cache")

    def download(self, key: str, name: str, outputs: Mapping[str, str] | None,
                 on_found: Callable[[int], Progress]) -> Entry | None:  # fmt: skip
        """`key`'s entry from the remote, checked and committed into the local cache (the
        caller holds `key`'s build lock); None when the remote lacks it, refuses it or fails."""
        if not self.reads:
            return None
        tmp = self.cache.begin(key)
        try:
            manifest = self.remote.fetch(key, tmp, outputs, on_found)
            if manifest is None:
                return None
            if stale(manifest, self.cache.state.file_digest) is not None:
                # Built where what the step read (discovered.py) differs from here: a miss; the
                # copy built here replaces it (readwrite), as it would a refused one.
                self.refused.add(key)
                return None
            entry = self.cache.commit(tmp, key, manifest)
            tmp = None  # committed: the folder is the entry now
            self.cache.mark_uploaded(self.remote.url, key)
            return entry
        except Corrupt as problem:
            self.refused.add(key)
            self.cache.forget_uploaded(self.remote.url, key)
            self.warn(f"remote cache entry for '{name}' refused ({_reason(problem)}); building it here")
            return None
        except RemoteError as problem:
            self._fail(problem)
            return None
        except OSError as exc:  # the local disk (full, read-only): build instead, which says more
            self.warn(f"cannot download '{name}' from the remote cache ({exc.strerror or exc}); building it here")
            return None
        finally:
            if tmp is not None:
                self.cache.abort(tmp)

    def upload(self, entries: Iterable[Entry], progress: Callable[[int], Progress] = lambda total: lambda d, t: None,
               *, trust_marks: bool = True) -> Uploaded:  # fmt: skip
        """Upload every entry the remote may lack: with `trust_marks`, those this machine has no
        recent note of having uploaded; else each one the remote lacks (it is asked).
        `progress(total bytes)` returns what follows the bytes sent."""
        summary = Uploaded()
        if not self.writes:
            return summary
        started = time.perf_counter()
        todo = {e.key: e for e in entries if not trust_marks or e.key in self.refused
                or not self.cache.uploaded_within(self.remote.url, e.key, UPLOAD_MARK_TTL_S)}  # fmt: skip
        total = sum(_entry_bytes(e) for e in todo.values())
        follow = progress(total) if todo else (lambda done, all_: None)
        done = 0
        for key, entry in todo.items():
            try:
                sent = self.remote.upload(entry, lambda d, t, base=done: follow(base + d, total), replace=key in self.refused)
            except (RemoteError, Corrupt, OSError) as problem:
                summary.failed = str(problem)
                self.warn(f"{problem}; {len(todo) - summary.entries - summary.present} entries not uploaded (the next build tries again)")
                break
            self.cache.mark_uploaded(self.remote.url, key)
            summary.entries += 1 if sent else 0
            summary.present += 0 if sent else 1
            summary.bytes += sent
            done += _entry_bytes(entry)
            follow(done, total)
        summary.seconds = time.perf_counter() - started
        return summary


def _entry_bytes(entry: Entry) -> int:
    return sum(int(output["bytes"]) for output in entry.manifest["outputs"].values())


def _reason(problem: Corrupt) -> str:
    """"cache entry corrupt (x changed)" -> "x changed"."""
    text = str(problem)
    return text[text.index("(") + 1 : -1] if text.endswith(")") and "(" in text else text


def open_remote(cache: Cache, settings: Mapping[str, Any], warn: Callable[[str], None]) -> RemoteSync | None:
    """The build's remote cache from the config's `cache` section, or None."""
    url = settings.get("remote")
    if not url:
        return None
    return RemoteSync(cache, remote_cache(str(url), settings), str(settings.get("remote_mode") or "read"), warn)


def remote_cache(url: str, settings: Mapping[str, Any]) -> RemoteCache:
    """The remote at `url`, with the deadline and the download cap of the `cache` settings."""
    timeout = settings.get("remote_timeout_s")
    cap = settings.get("remote_max_entry_bytes")
    return RemoteCache(url, timeout_s=TIMEOUT_S if timeout is None else float(timeout),
                       max_entry_bytes=MAX_ENTRY_BYTES if cap is None else int(cap))  # fmt: skip
