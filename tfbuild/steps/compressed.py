"""Compressed size: what a download costs, and where pruning (zeros) and clustering show."""

from __future__ import annotations

import gzip
from pathlib import Path


def gzip_bytes(path: Path) -> int:
    """gzip -9 size of a file, or the sum over a folder's files (as a web server would send them)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return sum(len(gzip.compress(f.read_bytes(), compresslevel=9, mtime=0)) for f in files)
