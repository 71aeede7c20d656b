"""`tfbuild-cache`: list the step cache, and garbage-collect it by age or size; push and pull
a pinned release's entries to and from a remote cache (cache_remote_admin.py).

    tfbuild-cache list [--cache DIR | --remote URL]
    tfbuild-cache gc [--cache DIR | --remote URL] [--older-than 30d] [--max-size 2GB] [--include-pinned] [--dry-run]
    tfbuild-cache push|pull recipe=pinned/NAME [--remote URL] [--cache DIR]

An entry's "last used" is when a build last took it from the cache (its manifest's mtime).
gc never deletes an entry that a pinned release needs to rebuild without retraining, unless
--include-pinned is given: the pins the cache recorded itself (`pin=` builds and pinned
rebuilds), and those in recipes/pinned/*.yaml (in ./recipes and the project's). A pinned file
gc cannot read stops it (it cannot know what that pin protects) unless --include-pinned.

gc never deletes an entry a running build uses or builds (it skips those and says so), and it
also reclaims tmp/: trash, and the folders of builds that were killed. Entries are renamed away
before they are deleted, so a build running meanwhile never sees half of one.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path

from .cache import Cache, CacheEntry, Leftover, Pins
from .human import human_bytes, local_time
from .recipes import recipe_dirs

KEY = re.compile(r"[0-9a-f]{64}")  # a cache key; it becomes part of a path
UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
AGES = {"s": 1, "m": 60, "h": 3600, "d": 86400}


MAX_BYTES = 1 << 63  # far beyond any disk: a larger size is a typo, not a wish
MAX_AGE = 1000 * 365 * 86400.0


def list_entries(root: Path) -> list[CacheEntry]:
    return Cache(root).entries()


def pinned_keys(dirs: list[Path]) -> dict[str, str]:
    """cache key -> the pin that needs it, from the pinned recipe files in `dirs`."""
    return read_pinned_files(dirs).keys


def read_pinned_files(dirs: list[Path]) -> Pins:
    """The keys pinned recipe files need; a file that cannot be read is a problem, not a crash."""
    keys: dict[str, str] = {}
    problems = []
    for folder in dirs:
        for pin in sorted((folder / "pinned").glob("*.yaml")):
            try:
                steps = pin_steps(pin)
            except Exception as exc:  # noqa: BLE001 - YAML and OS errors alike: report, never crash
                problems.append(f"{pin}: unreadable pin ({' '.join(str(exc).split())[:200]})")
                continue
            for key in steps.values():
                keys.setdefault(key, pin.stem)
    return Pins(keys, problems)


def pin_steps(pin: Path) -> dict[str, str]:
    """step name -> cache key, from a pinned recipe file's lock. Read under the same limits as
    any recipe (size, alias budget): a hostile pinned file must not hang gc."""
    from omegaconf import OmegaConf

    from .recipes import load_recipe_file

    document = OmegaConf.to_container(load_recipe_file(pin), resolve=False)
    lock = document.get("lock") if isinstance(document, dict) else None
    steps = lock.get("steps") if isinstance(lock, dict) else None
    if not isinstance(steps, dict) or not all(isinstance(k, str) and isinstance(v, str) and KEY.fullmatch(v)
                                              for k, v in steps.items()):  # fmt: skip
        raise ValueError("lock.steps is not a mapping of step names to cache keys (sha256)")
    return steps


def all_pins(cache: Cache, dirs: list[Path]) -> Pins:
    """The cache's own pin records and the pinned recipe files, together."""
    recorded, files = cache.pins(), read_pinned_files(dirs)
    return Pins({**files.keys, **recorded.keys}, recorded.problems + files.problems)


def choose_garbage(entries: list[CacheEntry], pinned: dict[str, str], *, older_than: float | None,
                   max_bytes: int | None, include_pinned: bool, now: float) -> list[CacheEntry]:
    """Entries to delete: unused for longer than `older_than` seconds, then the least recently
    used until the cache fits in `max_bytes`; pinned entries only with include_pinned."""
    candidates = sorted((e for e in entries if include_pinned or e.key not in pinned), key=lambda e: e.last_used)
    chosen = [e for e in candidates if older_than is not None and now - e.last_used > older_than]
    if max_bytes is not None:
        total = sum(e.bytes for e in entries) - sum(e.bytes for e in chosen)
        for entry in candidates:
            if total <= max_bytes:
                break
            if entry not in chosen:
                chosen.append(entry)
                total -= entry.bytes
    return chosen


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?B)?\s*", text.upper())
    if not match or len(match.group(1)) > 30:
        raise ValueError(f"--max-size: '{text}' is not a size like 500MB or 2GB")
    size = int(Decimal(match.group(1)) * UNITS[match.group(2) or "B"])
    if size > MAX_BYTES:
        raise ValueError(f"--max-size: '{text}' is larger than any disk (at most 8 EiB)")
    return size


def parse_age(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text.lower())
    if not match:
        raise ValueError(f"--older-than: '{text}' is not an age like 30d, 12h or 90m")
    try:
        age = float(Decimal(match.group(1)) * AGES[match.group(2)])
    except InvalidOperation:
        age = math.inf
    if not age <= MAX_AGE:
        raise ValueError(f"--older-than: '{text}' is longer than 1000 years")
    return age


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tfbuild-cache", description="List, garbage-collect, push or pull the tfbuild step cache.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("list", "every entry: step, size, created, last used, pinned by"),
                       ("gc", "delete entries unused for a while, or the least recently used beyond a size"),
                       ("push", "upload the entries a pinned recipe needs to the remote cache"),
                       ("pull", "download the entries a pinned recipe needs from the remote cache")):  # fmt: skip
        command = sub.add_parser(name, help=text)
        command.add_argument("--cache", type=Path, default=Path("outputs/cache"), help="the cache folder (default: outputs/cache)")
        where = "the remote cache's URL (default: cache.remote in conf/config.yaml)"
        command.add_argument("--remote", help=where if name in ("push", "pull") else f"{where.split(' (')[0]}: list or gc it instead")
        if name in ("push", "pull"):
            command.add_argument("recipe", help="the pinned recipe: recipe=pinned/NAME")
    gc = sub.choices["gc"]
    gc.add_argument("--older-than", help="delete entries not used for this long (30d, 12h, 90m); remote: uploaded that long ago")
    gc.add_argument("--max-size", help="then delete least recently used entries until the cache fits (500MB, 2GB)")
    gc.add_argument("--include-pinned", action="store_true", help="also delete entries that pinned recipes need")
    gc.add_argument("--dry-run", action="store_true", help="say what would be deleted; delete nothing")
    args = parser.parse_args(argv)
    if args.command in ("push", "pull") or args.remote:
        from .cache_remote_admin import remote_main

        sys.exit(remote_main(args))
    try:
        if not (args.cache / "entries").is_dir():
            raise ValueError(f"{args.cache} is not a tfbuild cache (no entries/ folder)")
        cache = Cache(args.cache)
        entries, leftovers = cache.entries(), cache.leftovers()
        pins = all_pins(cache, recipe_dirs())
        if args.command == "list":
            for problem in pins.problems:
                print(f"tfbuild-cache: warning: {problem}", file=sys.stderr)
            _print_list(entries, pins.keys)
            print(f"tmp: {len(leftovers)} leftover folders, {human_bytes(sum(t.bytes for t in leftovers))}")
            return
        if args.older_than is None and args.max_size is None:
            raise ValueError("gc needs --older-than AGE and/or --max-size SIZE")
        if pins.problems and not args.include_pinned:
            raise ValueError(f"{pins.problems[0]}; gc cannot know what it protects: fix or remove it, "
                             "or pass --include-pinned")  # fmt: skip
        chosen = choose_garbage(
            entries, pins.keys,
            older_than=parse_age(args.older_than) if args.older_than is not None else None,
            max_bytes=parse_size(args.max_size) if args.max_size is not None else None,
            include_pinned=args.include_pinned, now=time.time(),
        )  # fmt: skip
    except ValueError as exc:
        print(f"tfbuild-cache: error: {exc}", file=sys.stderr)
        sys.exit(2)
    _collect(cache, entries, chosen, leftovers, pins.keys, dry_run=args.dry_run)


def _collect(cache: Cache, entries: list[CacheEntry], chosen: list[CacheEntry], leftovers: list[Leftover],
             pinned: dict[str, str], *, dry_run: bool) -> None:
    """Delete what gc chose, skipping what a running build holds; then the tmp/ leftovers."""
    removed, skipped = [], []
    for entry in chosen:
        if dry_run or cache.remove_if_unused(entry):
            removed.append(entry)
            print(f"{'would delete' if dry_run else 'deleted'} {entry.key[:12]} {entry.name} ({human_bytes(entry.bytes)}, "
                  f"last used {local_time(entry.last_used)})")
        else:
            skipped.append(entry)
            print(f"skipped {entry.key[:12]} {entry.name}: a running build uses it")
    reclaimed = [t for t in leftovers if dry_run or cache.remove_leftover(t)]
    kept_pinned = sum(1 for e in entries if e.key in pinned and e not in chosen)
    freed = sum(e.bytes for e in removed) + sum(t.bytes for t in reclaimed)
    print(f"{len(removed)} of {len(entries)} entries and {len(reclaimed)} of {len(leftovers)} tmp folders, "
          f"{human_bytes(freed)} {'to free' if dry_run else 'freed'}; {kept_pinned} kept for pinned recipes"
          + (f"; {len(skipped)} skipped (in use by a running build)" if skipped else ""))


def _print_list(entries: list[CacheEntry], pinned: dict[str, str]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{len(entries)} entries, {human_bytes(sum(e.bytes for e in entries))}", title_justify="left")
    for column in ("key", "step", "size", "created", "last used", "pinned by"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for e in sorted(entries, key=lambda e: e.last_used, reverse=True):
        table.add_row(e.key[:12], escape(e.name), human_bytes(e.bytes), e.created, local_time(e.last_used), pinned.get(e.key, ""))
    Console(highlight=False, width=None if sys.stdout.isatty() else 140).print(table)


if __name__ == "__main__":
    main()
