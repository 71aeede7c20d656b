"""A CSV file: a header row of column names, then one row of numbers per sample.

data.label: a column or a list of them (one target each, named after its column; values as
float, the data step makes integer-valued labels classes for classification).
data.features: null -> every other column, side by side, as the input "inputs"; a list of
columns -> the input "inputs"; {input name: [columns]} -> several named inputs.

The file is read twice, as a stream: once to check every value and collect the labels (small),
once per chunks() call to hand out inputs CHUNK rows at a time. Features are never held whole.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ...errors import DataError
from ..source import CHUNK, SourceData
from ..split import ArraySpec
from .common import INPUT, check_disjoint, check_present, features_key, input_groups, names, source_path

if TYPE_CHECKING:
    import numpy as np

Row = tuple[int, list[str]]  # line number in the file (the header is line 1), fields


def read(params: dict[str, Any], paths: dict[str, Path]) -> SourceData:
    import numpy as np

    path = source_path(paths, "data.source=csv")
    source = f"data.path {path}"
    header = _header(path, source)
    if params.get("label") is None:
        raise DataError(f"{source}: data.label is required for source=csv: the target column, or a list of them "
                        f"(the file has {', '.join(header)})")
    labels = names(params["label"], "data.label")
    check_present(labels, header, "data.label", "column", source)
    if params.get("features") is None:
        groups = {INPUT: [c for c in header if c not in labels]}
        if not groups[INPUT]:
            raise DataError(f"{source}: every column is a label (data.label); there are no feature columns left")
    else:
        groups = input_groups(params["features"], one_input_per_name=False)
        for name, columns in groups.items():
            check_present(columns, header, features_key(params["features"], name), "column", source)
    check_disjoint(labels, params.get("features"), groups, source)

    index = {c: i for i, c in enumerate(header)}
    used = sorted({index[c] for c in labels} | {index[c] for g in groups.values() for c in g})
    values: dict[int, list[float]] = {index[c]: [] for c in labels}
    count = 0
    for line, fields in _rows(path, source, len(header)):
        for i in used:
            number = _number(fields[i], line, header[i], source)
            if i in values:
                values[i].append(number)
        count += 1
    if count == 0:
        raise DataError(f"{source}: has a header row but no data rows")

    columns = {name: [index[c] for c in group] for name, group in groups.items()}

    def chunks() -> Iterator[dict[str, np.ndarray]]:
        rows: list[list[str]] = []
        for _, fields in _rows(path, source, len(header)):
            rows.append(fields)
            if len(rows) == CHUNK:
                yield _chunk(rows, columns)
                rows = []
        if rows:
            yield _chunk(rows, columns)

    return SourceData(
        description=source,
        count=count,
        inputs={name: ArraySpec((len(c),), "float32") for name, c in columns.items()},
        targets={c: np.asarray(values[index[c]], dtype=np.float64) for c in labels},
        chunks=chunks,
    )


def _chunk(rows: list[list[str]], columns: dict[str, list[int]]) -> dict[str, np.ndarray]:
    import numpy as np

    # Every value was checked by the first pass; float() is the same parse.
    return {name: np.array([[float(r[i]) for i in c] for r in rows], dtype=np.float32) for name, c in columns.items()}


def _open(path: Path, source: str):  # noqa: ANN202 (a text file)
    if path.is_dir():
        raise DataError(f"{source}: is a folder, not a CSV file")
    if not path.exists():
        raise DataError(f"{source}: no such file")
    # utf-8-sig: spreadsheet programs often start the file with a byte-order mark.
    return open(path, newline="", encoding="utf-8-sig")


def _header(path: Path, source: str) -> list[str]:
    with _open(path, source) as f:
        try:
            first = next((r for r in csv.reader(f) if r), None)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{source}: not a CSV file tfbuild can read ({_reason(exc, 1)})") from None
    if first is None:
        raise DataError(f"{source}: is empty; a CSV needs a header row of column names, then one row per sample")
    header = [c.strip() for c in first]
    if all(_is_number(c) for c in header):
        raise DataError(f"{source}: the first row ({', '.join(header[:5])}{', ...' if len(header) > 5 else ''}) is numbers; "
                        f"a CSV needs a header row of column names")
    for i, name in enumerate(header):
        if not name:
            raise DataError(f"{source}: column {i + 1} has no name in the header row")
        if name in header[:i]:
            raise DataError(f"{source}: column '{name}' appears twice in the header row")
    return header


def _rows(path: Path, source: str, width: int) -> Iterator[Row]:
    """Data rows with their line numbers; blank lines skipped; every row as wide as the header."""
    with _open(path, source) as f:
        reader = csv.reader(f)
        try:
            next(r for r in reader if r)  # the header
            for fields in reader:
                if not fields:  # a blank line
                    continue
                if len(fields) != width:
                    raise DataError(f"{source}: line {reader.line_num} has {len(fields)} value{'s' * (len(fields) != 1)} "
                                    f"but the header has {width} columns")
                yield reader.line_num, fields
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{source}: not a CSV file tfbuild can read ({_reason(exc, reader.line_num)})") from None


def _number(text: str, line: int, column: str, source: str) -> float:
    try:
        value = float(text)
    except ValueError:
        text = text.strip()
        raise DataError(f"{source}: line {line}, column '{column}': {text!r} is not a number"
                        + (" (the value is empty)" if not text else "")) from None
    if not math.isfinite(value):
        raise DataError(f"{source}: line {line}, column '{column}': {text.strip()!r} is not a finite number")
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _reason(exc: Exception, line: int) -> str:
    # Text is decoded ahead of the CSV parser, so a decoding error's line is not known.
    return "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else f"line {line}: {exc}"
