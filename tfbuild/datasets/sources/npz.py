"""A .npz file of named arrays, one row per sample.

data.features: null -> array `x` is the input "inputs"; a list of array names -> one input
per array, named after it (one name: "inputs"); {input name: [arrays]} -> named inputs, each
array list joined on the last axis. data.label: null -> array `y` is the target "label"; a
name or a list -> one target per array, named after it.

Inputs stream: each array is read from its zip member a chunk at a time (stored or
compressed alike), so a file larger than memory never has to be loaded; labels come whole.

Headers are claims: before anything is allocated, each array's shape and dtype must add up
to no more bytes than its member can hold, and what is held in memory at once (labels whole,
a chunk of inputs) must fit the memory available (limits.py). What a member can hold is
bounded by real bytes, not by the zip directory's word alone: the compressed bytes must lie
in the file, and deflate expands them at most 1032-fold. Python objects (pickles) are never
loaded (allow_pickle=False).
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Iterator

from ...errors import DataError
from ..limits import check_memory, product
from ..source import CHUNK, SourceData
from ..split import ArraySpec
from .common import (INPUT, check_disjoint, check_present, check_real, features_key, input_groups, join, joined_shape,
                     names, source_path)

if TYPE_CHECKING:
    import numpy as np

Header = tuple[tuple[int, ...], bool, "np.dtype"]  # shape, Fortran order, dtype
# Deflate's largest expansion: a 258-byte match in as little as 2 bits.
DEFLATE_RATIO = 1032
# What a broken or foreign file raises while its zip members are read.
UNREADABLE = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError)


def read(params: dict[str, Any], paths: dict[str, Path]) -> SourceData:
    path = source_path(paths, "data.source=npz")
    source = f"data.path {path}"
    headers, held = _headers(path, source)
    default = params.get("features") is None and params.get("label") is None
    if params.get("label") is None:
        targets = {"label": "y"}
    else:
        targets = {n: n for n in names(params["label"], "data.label")}
    groups = {INPUT: ["x"]} if params.get("features") is None else input_groups(params["features"], one_input_per_name=True)
    members = [m for g in groups.values() for m in g]
    present = list(headers)
    if default and not {"x", "y"} <= set(present):
        missing = ", ".join(sorted({"x", "y"} - set(present)))
        raise DataError(f"{source}: has no array named {missing} (it has {', '.join(present) or 'none'}); save x (samples) "
                        f"and y (labels), or name your arrays with data.features and data.label")
    # A name the user did not write is explained: data.label null means the array `y`.
    label_key = "data.label" if params.get("label") is not None else "data.label, null meaning 'y'"
    check_present(list(targets.values()), present, label_key, "array", source)
    for name, group in groups.items():
        key = "data.features, null meaning 'x'" if params.get("features") is None else features_key(params["features"], name)
        check_present(group, present, key, "array", source)
    check_disjoint(list(targets.values()), params.get("features"), groups, source)

    used = [*members, *targets.values()]
    for name in used:
        shape, _, dtype = headers[name]
        if dtype.hasobject:
            raise DataError(f"{source}: array '{name}' holds Python objects (dtype object); save numeric arrays")
        if not shape:
            raise DataError(f"{source}: array '{name}' is a single value (a 0-d array); it must hold one entry per sample")
        _check_claim(name, headers[name], held[name], source)
    count = headers[used[0]][0][0]
    for name in used:
        if headers[name][0][0] != count:
            raise DataError(f"{source}: array '{used[0]}' has {count} samples but '{name}' has {headers[name][0][0]}")
    for name in members:
        check_real(headers[name][2], name, source)
    _check_memory(headers, members, list(targets.values()), source)

    inputs = {
        name: ArraySpec(joined_shape({m: headers[m][0][1:] for m in group}, features_key(params.get("features"), name), source), "float32")
        for name, group in groups.items()
    }
    labels = {target: _whole(path, array, source) for target, array in targets.items()}

    def chunks() -> Iterator[dict[str, np.ndarray]]:
        with _open(path, source) as zf:
            streams = {m: _blocks(zf, m, headers[m], source) for m in members}
            for _ in range(0, count, CHUNK):
                block = {m: next(streams[m]) for m in members}
                yield {name: join([block[m] for m in group]) for name, group in groups.items()}

    return SourceData(description=source, count=count, inputs=inputs, targets=labels, chunks=chunks)


def _open(path: Path, source: str) -> zipfile.ZipFile:
    if path.is_dir():
        raise DataError(f"{source}: is a folder, not a .npz file")
    if not path.exists():
        raise DataError(f"{source}: no such file")
    try:
        return zipfile.ZipFile(path)
    except UNREADABLE as exc:
        raise DataError(f"{source}: not a .npz file NumPy can read ({exc})") from None


def _headers(path: Path, source: str) -> tuple[dict[str, Header], dict[str, int]]:
    """Every array's shape, order and dtype, read from the .npy headers (no data), and the
    most bytes its member can hold after the header (_most_held)."""
    headers, held = {}, {}
    with _open(path, source) as zf:
        size = path.stat().st_size
        try:
            for info in zf.infolist():
                if info.filename.endswith(".npy"):
                    name = info.filename[: -len(".npy")]
                    with zf.open(info) as f:
                        headers[name] = _header(f)
                        held[name] = _most_held(info, size) - f.tell()
            return headers, held
        except UNREADABLE as exc:
            raise DataError(f"{source}: not a .npz file NumPy can read ({exc})") from None


def _header(f: BinaryIO) -> Header:
    """Reads a .npy header, leaving `f` at the first byte of data."""
    from numpy.lib import format as npy

    version = npy.read_magic(f)
    read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
    shape, fortran, dtype = read(f)
    return tuple(shape), bool(fortran), dtype


def _most_held(info: zipfile.ZipInfo, file_size: int) -> int:
    """The most bytes a member can give when read: what the zip's directory says, but no more
    than its compressed bytes (which must fit in the file) can expand to."""
    stored = min(info.compress_size, file_size)
    if info.compress_type == zipfile.ZIP_STORED:
        return min(info.file_size, stored)
    if info.compress_type == zipfile.ZIP_DEFLATED:
        return min(info.file_size, stored * DEFLATE_RATIO + 1024)
    return info.file_size  # bzip2, lzma: NumPy writes neither; zipfile stops at the stated size


def _check_claim(name: str, header: Header, held: int, source: str) -> None:
    """The header's shape and dtype against the bytes its member holds: a header that claims
    more would have NumPy allocate what the file never had (absurd shapes end in a
    MemoryError, negative ones in a traceback)."""
    shape, _, dtype = header
    if any(side < 0 for side in shape):
        raise DataError(f"{source}: array '{name}' has a negative size in its shape {shape}; the file is damaged")
    claimed = product(shape) * dtype.itemsize
    if claimed > held:
        raise DataError(f"{source}: array '{name}' claims shape {shape} of {dtype} ({claimed:,} bytes), but its "
                        f"member holds at most {max(held, 0):,}; the file is damaged or was not written by NumPy")


def _check_memory(headers: dict[str, Header], members: list[str], labels: list[str], source: str) -> None:
    """What read() and chunks() hold at once must fit: every label whole (and its copy as
    the task's type), each input a chunk at a time as read and as float32, or whole where it
    is stored in Fortran order."""
    need = 0
    for name in labels:
        shape, _, dtype = headers[name]
        need += product(shape) * (dtype.itemsize + 8)
    for name in members:
        shape, fortran, dtype = headers[name]
        rows = shape[0] if fortran else min(CHUNK, shape[0])
        need += rows * product(shape[1:]) * (dtype.itemsize + 4)
    check_memory(need, f"{source}: reading arrays {', '.join(dict.fromkeys([*labels, *members]))}")


def _blocks(zf: zipfile.ZipFile, name: str, header: Header, source: str) -> Iterator[np.ndarray]:
    """One array, CHUNK samples at a time, read in order from its zip member."""
    import numpy as np

    shape, fortran, dtype = header
    if fortran:  # samples are not contiguous on disk: NumPy reads it whole
        array = _whole(Path(zf.filename or ""), name, source)
        for start in range(0, shape[0], CHUNK):
            yield array[start : start + CHUNK]
        return
    row = dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
    try:
        with zf.open(name + ".npy") as f:
            _header(f)
            for start in range(0, shape[0], CHUNK):
                rows = min(CHUNK, shape[0] - start)
                data = f.read(rows * row)
                if len(data) != rows * row:
                    raise DataError(f"{source}: array '{name}' is truncated (the file ends inside sample {start + len(data) // max(row, 1)})")
                yield np.frombuffer(data, dtype).reshape(rows, *shape[1:])
    except UNREADABLE as exc:
        raise DataError(f"{source}: not a .npz file NumPy can read ({exc})") from None


def _whole(path: Path, name: str, source: str) -> np.ndarray:
    """One array whole (labels; an array stored in Fortran order)."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as npz:
            array = npz[name]
    except UNREADABLE as exc:
        raise DataError(f"{source}: not a .npz file NumPy can read ({exc})") from None
    return array
