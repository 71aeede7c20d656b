"""`tfbuild-cache`: list the step cache, and garbage-collect it by age or size.

    tfbuild-cache list [--cache DIR]
    tfbuild-cache gc [--cache DIR] [--older-than 30d] [--max-size 2GB] [--include-pinned] [--dry-run]

An entry's "last used" is when a build last took it from the cache (its manifest's mtime).
gc never deletes an entry that a pinned recipe (recipes/pinned/*.yaml, in ./recipes and the
project's) needs to rebuild without retraining, unless --include-pinned is given. Entries are
renamed away before they are deleted, so a build running meanwhile never sees half of one.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from .cache import MANIFEST
from .recipes import recipe_dirs

UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
AGES = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass
class CacheEntry:
    key: str
    name: str
    bytes: int
    created: str
    last_used: float  # epoch seconds
    folder: Path


def list_entries(root: Path) -> list[CacheEntry]:
    found = []
    for manifest_path in sorted((root / "entries").glob(f"*/*/{MANIFEST}")):
        try:
            manifest = json.loads(manifest_path.read_text())
            size = sum(output["bytes"] for output in manifest["outputs"].values())
        except (OSError, ValueError, KeyError):
            continue  # incomplete: a build will discard it when it meets it
        found.append(CacheEntry(manifest_path.parent.name, manifest.get("name", "?"), size,
                                manifest.get("created", "?"), manifest_path.stat().st_mtime, manifest_path.parent))  # fmt: skip
    return found


def pinned_keys(dirs: list[Path]) -> dict[str, str]:
    """cache key -> the pin that needs it."""
    keys: dict[str, str] = {}
    for folder in dirs:
        for pin in sorted((folder / "pinned").glob("*.yaml")):
            try:
                lock = OmegaConf.to_container(OmegaConf.load(pin).get("lock") or {})
            except Exception:  # noqa: BLE001 - an unreadable pin protects nothing; builds report it
                continue
            for key in (lock or {}).get("steps", {}).values():  # type: ignore[union-attr]
                keys.setdefault(key, pin.stem)
    return keys


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


def remove(root: Path, entry: CacheEntry) -> None:
    trash = root / "tmp" / f"gc.{entry.key}.{uuid.uuid4().hex[:8]}"
    trash.parent.mkdir(parents=True, exist_ok=True)
    entry.folder.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?B)?\s*", text.upper())
    if not match:
        raise ValueError(f"--max-size: '{text}' is not a size like 500MB or 2GB")
    return int(float(match.group(1)) * UNITS[match.group(2) or "B"])


def parse_age(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text.lower())
    if not match:
        raise ValueError(f"--older-than: '{text}' is not an age like 30d, 12h or 90m")
    return float(match.group(1)) * AGES[match.group(2)]


def _human(n: int) -> str:
    from .console import human_bytes

    return human_bytes(n)


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tfbuild-cache", description="List or garbage-collect the tfbuild step cache.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("list", "every entry: step, size, created, last used, pinned by"),
                       ("gc", "delete entries unused for a while, or the least recently used beyond a size")):
        command = sub.add_parser(name, help=text)
        command.add_argument("--cache", type=Path, default=Path("outputs/cache"), help="the cache folder (default: outputs/cache)")
    gc = sub.choices["gc"]
    gc.add_argument("--older-than", help="delete entries not used for this long (30d, 12h, 90m)")
    gc.add_argument("--max-size", help="then delete least recently used entries until the cache fits (500MB, 2GB)")
    gc.add_argument("--include-pinned", action="store_true", help="also delete entries that pinned recipes need")
    gc.add_argument("--dry-run", action="store_true", help="say what would be deleted; delete nothing")
    args = parser.parse_args(argv)
    try:
        if not (args.cache / "entries").is_dir():
            raise ValueError(f"{args.cache} is not a tfbuild cache (no entries/ folder)")
        entries = list_entries(args.cache)
        pinned = pinned_keys(recipe_dirs())
        if args.command == "list":
            _print_list(entries, pinned)
            return
        if args.older_than is None and args.max_size is None:
            raise ValueError("gc needs --older-than AGE and/or --max-size SIZE")
        chosen = choose_garbage(
            entries, pinned,
            older_than=parse_age(args.older_than) if args.older_than else None,
            max_bytes=parse_size(args.max_size) if args.max_size else None,
            include_pinned=args.include_pinned, now=time.time(),
        )  # fmt: skip
    except ValueError as exc:
        print(f"tfbuild-cache: error: {exc}", file=sys.stderr)
        sys.exit(2)
    for entry in chosen:
        if not args.dry_run:
            remove(args.cache, entry)
        print(f"{'would delete' if args.dry_run else 'deleted'} {entry.key[:12]} {entry.name} ({_human(entry.bytes)}, "
              f"last used {_when(entry.last_used)})")
    kept_pinned = sum(1 for e in entries if e.key in pinned and e not in chosen)
    freed = sum(e.bytes for e in chosen)
    print(f"{len(chosen)} of {len(entries)} entries, {_human(freed)} {'to free' if args.dry_run else 'freed'}; "
          f"{kept_pinned} kept for pinned recipes")


def _print_list(entries: list[CacheEntry], pinned: dict[str, str]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{len(entries)} entries, {_human(sum(e.bytes for e in entries))}", title_justify="left")
    for column in ("key", "step", "size", "created", "last used", "pinned by"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for e in sorted(entries, key=lambda e: e.last_used, reverse=True):
        table.add_row(e.key[:12], escape(e.name), _human(e.bytes), e.created, _when(e.last_used), pinned.get(e.key, ""))
    Console(highlight=False, width=None if sys.stdout.isatty() else 140).print(table)


if __name__ == "__main__":
    main()
