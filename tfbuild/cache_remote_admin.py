"""The remote side of `tfbuild-cache`: move a pinned release's entries, list and gc a remote.

    tfbuild-cache push recipe=pinned/NAME [--remote URL] [--cache DIR]
    tfbuild-cache pull recipe=pinned/NAME [--remote URL] [--cache DIR]
    tfbuild-cache list --remote URL
    tfbuild-cache gc --remote URL --older-than 30d [--include-pinned] [--dry-run]

push uploads exactly the entries a pin's lock names (all must be in the local cache, checked)
and records the pin in the remote; pull downloads exactly those, each checked before it is
committed, and records the pin in the local cache, so that local gc keeps them. Remote gc ages
entries by their upload (a reader cannot touch a remote file): it removes manifests first,
then the files no remaining manifest names, and never what a pin needs: the pins pushed to
the remote and the pinned recipe files here. An upload may run meanwhile, so just before a
file is deleted gc looks again: a manifest written since that names it, or a time refreshed
by an upload that reuses it (remote_cache.RemoteCache.upload), keeps it.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .cache import Cache, Entry
from .human import human_bytes, local_time
from .remote_cache import BLOB_GRACE_S, RemoteCache, RemoteError, check_remote_url
from .remote_sync import RemoteSync, remote_cache

LEFTOVER_AGE_S = 24 * 3600.0  # tmp/ uploads older than this were abandoned
PINNED_NAME = re.compile(r"(?:recipe=)?(?:pinned/)?([^/]+?)(?:\.yaml)?")


def pinned_recipe(text: str, dirs: list[Path]) -> Path:
    """The pinned recipe file `recipe=pinned/NAME` (or `pinned/NAME`, or NAME) names."""
    match = PINNED_NAME.fullmatch(text.strip())
    found = [d / "pinned" / f"{match.group(1)}.yaml" for d in dirs] if match else []
    for path in found:
        if path.is_file():
            return path
    names = sorted({p.stem for d in dirs for p in (d / "pinned").glob("*.yaml")})
    raise ValueError(f"recipe: '{text}' is not a pinned recipe; pinned: {', '.join(names) or '(none yet: tfbuild recipe=R pin=VERSION)'}")


def default_remote(conf_files: list[Path]) -> str | None:
    """cache.remote as the project's conf/config.yaml sets it (a plain URL), if it does."""
    value = _conf_cache(conf_files).get("remote")
    return value if isinstance(value, str) and value.strip() and "${" not in value else None


def _conf_cache(conf_files: list[Path]) -> dict[str, Any]:
    """The `cache` section of the first of `conf_files` that reads and has one."""
    import yaml

    for path in conf_files:
        try:
            config = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        section = config.get("cache") if isinstance(config, dict) else None
        if isinstance(section, dict):
            return section
    return {}


def _remote_settings(conf_files: list[Path]) -> dict[str, Any]:
    """cache.remote_timeout_s and cache.remote_max_entry_bytes as conf/config.yaml sets them
    (plain positive numbers; anything else is left to the defaults)."""
    section = _conf_cache(conf_files)
    return {key: section[key] for key in ("remote_timeout_s", "remote_max_entry_bytes")
            if isinstance(section.get(key), int) and not isinstance(section[key], bool) and section[key] > 0}  # fmt: skip


def remote_url(given: str | None, conf_files: list[Path]) -> str:
    url = given or default_remote(conf_files)
    if not url:
        raise ValueError("--remote: no remote cache given, and conf/config.yaml sets no cache.remote")
    return check_remote_url(url)


def push(cache: Cache, sync: RemoteSync, pin: str, steps: dict[str, str],
         progress: Callable[[int], Callable[[int, int], None]]) -> str:  # fmt: skip
    """Upload the entries pin `pin` needs (each checked in the local cache first); the line
    that says what was done."""
    entries: list[Entry] = []
    missing = []
    for name, key in steps.items():
        entry, _ = cache.lookup(key)
        if entry is None:
            missing.append(name)
        else:
            entries.append(entry)
    if missing:
        raise ValueError(f"{len(missing)} of the {len(steps)} entries pin '{pin}' needs are not in the local cache "
                         f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}): build it first "
                         f"(tfbuild recipe=pinned/{pin})")  # fmt: skip
    uploaded = sync.upload(entries, progress, trust_marks=False)
    if uploaded.failed:
        raise RemoteError(uploaded.failed)
    sync.remote.record_pin(pin, list(steps.values()))
    return (f"pushed pin '{pin}': {uploaded.entries} entries uploaded ({human_bytes(uploaded.bytes)}), "
            f"{uploaded.present} already in {sync.remote.url}")  # fmt: skip


def pull(cache: Cache, sync: RemoteSync, pin: str, steps: dict[str, str], say: Callable[[str], None]) -> str:
    """Download the entries pin `pin` needs that the local cache lacks, each checked before it
    is committed; the line that says what was done. Missing or refused entries fail it."""
    pulled, present, failed = 0, 0, []
    for name, key in steps.items():
        with cache.using(key), cache.locked(key):
            if cache.lookup(key)[0] is not None:
                present += 1
                continue
            entry = sync.download(key, name, None, lambda total, name=name: _said(say, f"pulling {name} ({human_bytes(total)})"))
        if sync.down is not None:
            raise RemoteError(sync.down)
        if entry is None:
            failed.append(name)
        else:
            pulled += 1
    cache.record_pin(pin, list(steps.values()))
    if failed:
        raise ValueError(f"{len(failed)} of the {len(steps)} entries pin '{pin}' needs could not be pulled "
                         f"({', '.join(failed[:5])}): missing from {sync.remote.url} or refused")  # fmt: skip
    return f"pulled pin '{pin}': {pulled} entries downloaded and checked, {present} already here"


def _said(say: Callable[[str], None], text: str) -> Callable[[int, int], None]:
    say(text)
    return lambda done, total: None


@dataclass
class RemoteGarbage:
    entries: list[Any]  # RemoteEntry
    blobs: list[str]
    leftovers: list[str]
    bytes: int


def choose_remote_garbage(remote: RemoteCache, pinned: dict[str, str], *, older_than: float,
                          include_pinned: bool, now: float) -> tuple[RemoteGarbage, int]:  # fmt: skip
    """What remote gc deletes, and how many entries it keeps for pins: entries uploaded longer
    ago than `older_than`; then the files only they named, and no file younger than an hour."""
    entries = remote.entries()
    chosen = [e for e in entries if now - e.uploaded > older_than and (include_pinned or e.key not in pinned)]
    gone = {e.key for e in chosen}
    named = {sha for e in entries if e.key not in gone for sha in e.blobs}
    blobs = [sha for sha, written in remote.blobs().items() if sha not in named and now - written > BLOB_GRACE_S]
    leftovers = [path for path, written in remote.leftovers().items() if now - written > LEFTOVER_AGE_S]
    kept_pinned = sum(1 for e in entries if e.key in pinned and e.key not in gone)
    return RemoteGarbage(chosen, blobs, leftovers, sum(e.bytes for e in chosen)), kept_pinned


def collect_remote(remote: RemoteCache, garbage: RemoteGarbage, *, dry_run: bool, say: Callable[[str], None]) -> int:
    """Delete what remote gc chose: manifests first (an entry is gone for readers at once),
    then the files, then abandoned uploads. The number of files deleted (or that would be).

    An upload may have run since the files were chosen: the manifests are read again, and
    each file's time looked at again just before it is deleted, so a file that a manifest
    written since names, or that an upload reusing it made young, is kept."""
    verb = "would delete" if dry_run else "deleted"
    for entry in garbage.entries:
        if not dry_run:
            remote.remove_entry(entry.key)
        say(f"{verb} {entry.key[:12]} {entry.name} ({human_bytes(entry.bytes)}, uploaded {local_time(entry.uploaded)})")
    if dry_run:
        return len(garbage.blobs)
    named = {sha for entry in remote.entries() for sha in entry.blobs}
    deleted = 0
    for sha in garbage.blobs:
        if sha in named:
            continue
        written = remote.blob_written(sha)
        if written is None or time.time() - written <= BLOB_GRACE_S:
            continue
        remote.remove_blob(sha)
        deleted += 1
    for path in garbage.leftovers:
        remote.remove_leftover(path)
    return deleted


def remote_main(args: Any) -> int:
    """`tfbuild-cache push|pull`, and `list|gc --remote`: the exit code (2: bad arguments,
    1: the remote failed or lacked entries)."""
    from .cache_admin import parse_age, pin_steps, read_pinned_files
    from .console import terminal_console, transfer_progress
    from .project import CONF_DIR, recipe_dirs

    def say(text: str) -> None:
        print(text, flush=True)

    def warn(text: str) -> None:
        print(f"tfbuild-cache: warning: {text}", file=sys.stderr, flush=True)

    try:
        conf_files = [Path.cwd() / "conf" / "config.yaml", CONF_DIR / "config.yaml"]
        remote = remote_cache(remote_url(args.remote, conf_files), _remote_settings(conf_files))
        if args.command in ("push", "pull"):
            pin = pinned_recipe(args.recipe, recipe_dirs())
            steps = pin_steps(pin)
            if args.command == "push" and not (args.cache / "entries").is_dir():
                raise ValueError(f"--cache: {args.cache} is not a tfbuild cache (no entries/ folder)")
            cache = Cache(args.cache)
            sync = RemoteSync(cache, remote, "readwrite", warn)
            if args.command == "push":
                with terminal_console() as console, transfer_progress(console, "uploading") as progress:
                    line = push(cache, sync, pin.stem, steps, progress)
                say(line)
            else:
                say(pull(cache, sync, pin.stem, steps, say))
            return 0
        if args.command == "list":
            entries = remote.entries()
            pinned, problems = remote.pinned_keys()
            for entry in sorted(entries, key=lambda e: e.uploaded, reverse=True):
                say(f"{entry.key[:12]}  {entry.name:<28} {human_bytes(entry.bytes):>9}  uploaded {local_time(entry.uploaded)}"
                    + (f"  pinned by {pinned[entry.key]}" if entry.key in pinned else ""))
            for problem in problems:
                warn(problem)
            say(f"{len(entries)} entries, {human_bytes(sum(e.bytes for e in entries))} in {remote.url}")
            return 0
        if args.max_size is not None or args.older_than is None:
            raise ValueError("gc --remote takes --older-than AGE (entries are aged by upload; --max-size is for the local cache)")
        local = read_pinned_files(recipe_dirs())
        pinned, problems = remote.pinned_keys()
        problems += local.problems
        if problems and not args.include_pinned:
            raise ValueError(f"{problems[0]}; gc cannot know what it protects: fix or remove it, or pass --include-pinned")
        pinned = {**local.keys, **pinned}
        garbage, kept = choose_remote_garbage(remote, pinned, older_than=parse_age(args.older_than),
                                              include_pinned=args.include_pinned, now=time.time())  # fmt: skip
        blobs = collect_remote(remote, garbage, dry_run=args.dry_run, say=say)
        say(f"{len(garbage.entries)} entries and {blobs} unreferenced files "
            f"{'would be' if args.dry_run else 'were'} deleted from {remote.url} ({human_bytes(garbage.bytes)}); "
            f"{kept} kept for pinned recipes")  # fmt: skip
        return 0
    except ValueError as exc:
        print(f"tfbuild-cache: error: {exc}", file=sys.stderr)
        return 2
    except RemoteError as exc:
        print(f"tfbuild-cache: error: {exc}", file=sys.stderr)
        return 1
