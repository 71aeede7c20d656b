"""Is a cache entry exactly what its manifest says, and does the manifest hold together?

A cache hit serves an entry's files as the outputs its key names, so before one is served:

- the manifest is a JSON object with every field the build reads, of the right type, and its
  `key` is the key of the folder it sits in;
- each output's `sha256` is the tree digest of its file records and its `bytes` their sum (a
  file swapped together with its own record still changes the output's digest, which is what
  downstream keys and build.json use);
- every path is a plain relative path that stays inside the entry (no `..`, no absolute or
  empty parts), and nothing under the entry is a symlink;
- every listed file exists with its recorded size and digest (the digest through the stat
  cache: a stat per file, a read only when the stat changed), and nothing else is under out/;
- what the step read besides its declared inputs (`discovered`, see discovered.py) names
  plain paths inside the project; whether those files still match is the cache's check
  (`discovered.stale`): a mismatch is a miss, not damage.

Each check is a stat or in-memory arithmetic, so a hit stays cheap; `problem` names the first
check that failed, which becomes the rebuild's reason.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Mapping

from .digests import FileRecord, tree_digest

MANIFEST = "manifest.json"
OUT = "out"
MAX_MANIFEST_BYTES = 16 << 20  # a manifest lists digests; anything this big is not one of ours


class Corrupt(Exception):
    """Why an entry may not be served."""


def check_entry(
    folder: Path,
    key: str,
    file_digest: Callable[[Path, os.stat_result], str],
    expected_outputs: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The manifest of the entry in `folder`, once every check holds; else raises Corrupt.

    `expected_outputs` (role -> path), when given, is what the step that asks declares: an
    entry with other outputs cannot stand for it.
    """
    manifest = read_manifest(folder, key)
    outputs = manifest["outputs"]
    if expected_outputs is not None and {r: o["path"] for r, o in outputs.items()} != dict(expected_outputs):
        raise Corrupt("cache entry does not have the step's outputs")
    listed = listed_files(outputs)
    found = _walk_entry(folder, _parents(listed), _folder_outputs(outputs))
    for name, record in listed.items():
        st = found.pop(name, None)
        if st is None:
            raise Corrupt(f"cache entry corrupt ({name} missing)")
        if st.st_size != record.bytes or file_digest(folder / OUT / name, st) != record.sha256:
            raise Corrupt(f"cache entry corrupt ({name} changed)")
    if found:
        raise Corrupt(f"cache entry corrupt ({sorted(found)[0]} is not in its manifest)")
    return manifest


def read_manifest(folder: Path, key: str) -> dict[str, Any]:
    """The manifest, parsed and checked for shape and self-consistency (no file is looked at)."""
    path = folder / MANIFEST
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_MANIFEST_BYTES:
            raise Corrupt("cache entry incomplete (its manifest is not a plain file)")
        manifest = json.loads(path.read_bytes())
    except (OSError, ValueError):
        raise Corrupt("cache entry incomplete") from None
    if not isinstance(manifest, dict):
        raise Corrupt("cache entry incomplete (its manifest is not a JSON object)")
    _require(manifest, {"key": str, "name": str, "info": dict, "outputs": dict}, "manifest")
    if manifest["key"] != key:
        raise Corrupt("cache entry corrupt (its manifest is for another key)")
    for role, output in manifest["outputs"].items():
        _check_output(role, output)
    if "discovered" in manifest:
        _check_discovered(manifest["discovered"])
    return manifest


def _check_discovered(record: Any) -> None:
    """What the step read (discovered.py): project-relative plain paths, each file with a
    SHA-256; a hit stats (and may hash) each one, so none may leave the project."""
    _require(record, {"read": dict, "absent": list}, "the manifest's 'discovered'")
    for name, digest in record["read"].items():
        _safe_path(name)
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
            raise Corrupt(f"cache entry corrupt (the digest of read file '{name[:80]}' is not a SHA-256)")
    for name in record["absent"]:
        if not isinstance(name, str):
            raise Corrupt("cache entry incomplete (the manifest's 'discovered' has no valid 'absent')")
        _safe_path(name)


def _check_output(role: str, output: Any) -> None:
    _require(output, {"path": str, "sha256": str, "bytes": int, "files": list}, f"output '{role}'")
    _safe_path(output["path"])
    records = output["files"]
    if not records:
        raise Corrupt(f"cache entry corrupt (output '{role}' lists no files)")
    for record in records:
        _require(record, {"path": str, "sha256": str, "bytes": int}, f"a file of output '{role}'")
        if record["path"] != "" or len(records) != 1:  # "" is the output itself, when it is one file
            _safe_path(record["path"])
    names = [r["path"] for r in records]
    if len(set(names)) != len(names):
        raise Corrupt(f"cache entry corrupt (output '{role}' lists a file twice)")
    files = [FileRecord(r["path"], r["sha256"], r["bytes"]) for r in records]
    if tree_digest(files) != output["sha256"] or sum(f.bytes for f in files) != output["bytes"]:
        raise Corrupt(f"cache entry corrupt (output '{role}' does not match its file records)")


def _require(value: Any, fields: Mapping[str, type], what: str) -> None:
    if not isinstance(value, dict):
        raise Corrupt(f"cache entry incomplete ({what} is not an object)")
    for name, kind in fields.items():
        field = value.get(name)
        # bool is an int to Python, never a size here
        if not isinstance(field, kind) or (kind is int and (isinstance(field, bool) or field < 0)):
            raise Corrupt(f"cache entry incomplete ({what} has no valid '{name}')")


def _safe_path(text: str) -> None:
    """A relative POSIX path of plain names: nothing that could leave the entry."""
    parts = text.split("/")
    if not text or text.startswith("/") or "\\" in text or "\0" in text or any(p in ("", ".", "..") for p in parts):
        raise Corrupt(f"cache entry corrupt (path '{text[:80]}' leaves its folder or is not plain)")


def listed_files(outputs: Mapping[str, Any]) -> dict[str, FileRecord]:
    """out/-relative name -> record, for every file of every output."""
    listed: dict[str, FileRecord] = {}
    for output in outputs.values():
        for r in output["files"]:
            name = str(PurePosixPath(output["path"], r["path"])) if r["path"] else output["path"]
            if name in listed:
                raise Corrupt(f"cache entry corrupt ({name} is listed twice)")
            listed[name] = FileRecord(r["path"], r["sha256"], r["bytes"])
    return listed


def _parents(names: Mapping[str, Any]) -> set[str]:
    return {str(parent) for name in names for parent in PurePosixPath(name).parents if str(parent) != "."}


def _folder_outputs(outputs: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(o["path"] for o in outputs.values() if [r["path"] for r in o["files"]] != [""])


def _walk_entry(folder: Path, folders: set[str], folder_outputs: tuple[str, ...]) -> dict[str, os.stat_result]:
    """out/-relative name -> lstat of every plain file under out/; raises Corrupt on a symlink,
    on anything that is neither a file nor a folder, or on a folder that holds no listed file
    and is not inside a folder output (a SavedModel's empty assets/ is; it carries no bytes,
    and any file put in it is still caught as unlisted)."""
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            raise Corrupt("cache entry corrupt (its folder is a link)")
    except OSError:
        raise Corrupt("cache entry incomplete") from None
    top = {e.name: e for e in _scan(folder)}
    if set(top) != {MANIFEST, OUT}:
        raise Corrupt("cache entry corrupt (its folder holds other things than manifest.json and out/)")
    if not top[OUT].is_dir(follow_symlinks=False):
        raise Corrupt("cache entry corrupt (out/ is not a folder)")
    found: dict[str, os.stat_result] = {}
    pending = [("", folder / OUT)]
    while pending:
        prefix, here = pending.pop()
        for item in _scan(here):
            name = f"{prefix}{item.name}"
            if item.is_dir(follow_symlinks=False):
                if name not in folders and not name.startswith(tuple(f"{o}/" for o in folder_outputs)):
                    raise Corrupt(f"cache entry corrupt ({name}/ is not in its manifest)")
                pending.append((f"{name}/", Path(item.path)))
            elif item.is_file(follow_symlinks=False):
                found[name] = item.stat(follow_symlinks=False)
            else:
                raise Corrupt(f"cache entry corrupt ({name} is a link or a special file)")
    return found


def _scan(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as items:
            return list(items)
    except OSError as exc:
        raise Corrupt(f"cache entry unreadable ({exc.strerror})") from None
