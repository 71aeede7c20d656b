"""TFRecord files of tf.train.Example records, parsed as data.spec says:
{feature: {dtype: float32|int64, shape: [...]}} (fixed-length features).

data.label (required): a feature or a list of them, one target each, named after it.
data.features: null -> every other spec feature, one input each, named after it (a single
one is "inputs"); a list -> one input per feature; {input name: [features]} -> named inputs,
features joined on the last axis. Files (data.path, a file or a glob) are read in sorted order
("source.0", "source.1", ...); names ending in .gz are GZIP-compressed.

A first pass parses every record (so a bad one is named before anything is written) and keeps
the labels and the count; chunks() parses again, CHUNK records at a time. TensorFlow allocates
what data.spec says for each of those records, so a shape is checked first against a fixed
limit and against the memory available (limits.py).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from ...errors import DataError, did_you_mean
from ..limits import check_memory, check_sample_values, product
from ..source import CHUNK, SourceData
from ..split import ArraySpec
from .common import INPUT, check_disjoint, features_key, input_groups, join, joined_shape, names, tf_reason

if TYPE_CHECKING:
    import numpy as np

DTYPES = ("float32", "int64")
DTYPE_BYTES = {"float32": 4, "int64": 8}
SPEC_KEYS = ("dtype", "shape")
FORM = "{feature: {dtype: float32|int64, shape: [...]}}"
Spec = dict[str, tuple[str, tuple[int, ...]]]  # feature -> (dtype, per-sample shape)


def read(params: dict[str, Any], paths: dict[str, Path]) -> SourceData:
    import numpy as np

    files = record_files(paths)
    source = f"data.path {params.get('path') or files[0]}"
    spec = parse_spec(params.get("spec"))
    if params.get("label") is None:
        raise DataError(f"data.label is required for source=tfrecord: the label feature(s) (data.spec has {', '.join(spec)})")
    labels = names(params["label"], "data.label")
    _in_spec(labels, spec, "data.label")
    features = params.get("features")
    if features is None:
        others = [f for f in spec if f not in labels]
        if not others:
            raise DataError(f"data.spec has only labels ({', '.join(labels)}); add the input features to it")
        groups = {INPUT: others} if len(others) == 1 else {f: [f] for f in others}
    else:
        groups = input_groups(features, one_input_per_name=True)
        for name, members in groups.items():
            _in_spec(members, spec, features_key(features, name))
    check_disjoint(labels, features, groups, source)
    inputs = {
        name: ArraySpec(joined_shape({m: spec[m][1] for m in members}, features_key(features, name), source), "float32")
        for name, members in groups.items()
    }
    used = [*labels, *(m for members in groups.values() for m in members)]
    # Parsed CHUNK records at a time (float32 or int64), then joined as float32.
    need = CHUNK * sum(product(spec[f][1]) * (DTYPE_BYTES[spec[f][0]] + 4) for f in dict.fromkeys(used))
    check_memory(need, f"data.spec ({', '.join(f'{f} {list(spec[f][1])}' for f in dict.fromkeys(used))}), parsed {CHUNK} records at a time,")
    parse = _parser({f: spec[f] for f in used})
    values = _first_pass(files, parse, labels, source)
    if not values[labels[0]]:
        raise DataError(f"{source}: holds no records")
    targets = {name: np.concatenate(values[name]) for name in labels}
    count = len(targets[labels[0]])

    def chunks() -> Iterator[dict[str, np.ndarray]]:
        tf = _tf()
        batches = iter(_dataset(tf, files).batch(CHUNK).map(parse).prefetch(1))
        while True:
            try:
                parsed = next(batches)
            except StopIteration:
                return
            except tf.errors.OpError as exc:  # the first pass read them all: they changed since
                raise DataError(f"{source}: the files changed while they were read ({tf_reason(exc)})") from None
            yield {name: join([parsed[m].numpy() for m in members]) for name, members in groups.items()}

    return SourceData(description=source, count=count, inputs=inputs, targets=targets, chunks=chunks)


def record_files(paths: Mapping[str, Path]) -> list[Path]:
    """The files, in order: role "source", or "source.0", "source.1", ... for a glob."""
    if "source" in paths:
        return [Path(paths["source"])]
    numbered = sorted((int(role.split(".", 1)[1]), Path(p)) for role, p in paths.items() if role.startswith("source."))
    if not numbered:
        raise DataError("data.path is required for source=tfrecord: a file or a glob (data/*.tfrecord)")
    return [p for _, p in numbered]


def glob_folders(pattern: str) -> list[str]:
    """Every folder whose entries decide what the glob `pattern` (data.path) matches: those it
    lists for a wildcard part and those it looks a literal part up in. A file that starts to
    match is an entry added to one of them, which changes that folder's stat (the no-op stamp
    watches them). Reads folder listings only."""
    parts = Path(os.path.expanduser(pattern)).parts
    fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    folders = [os.path.join(*parts[:fixed]) if fixed else "."]
    watched: list[str] = []
    for depth, part in enumerate(parts[fixed:], start=fixed):
        watched += folders
        if depth == len(parts) - 1:
            break
        if glob.has_magic(part):
            found = [m for f in folders for m in glob.glob(os.path.join(glob.escape(f), part))]
        else:
            found = [os.path.join(f, part) for f in folders]
        folders = [f for f in found if os.path.isdir(f)]
    return sorted({os.path.abspath(f) for f in watched})


def parse_spec(spec: Any) -> Spec:
    """data.spec checked (no TensorFlow): every feature a dtype tfbuild parses and a shape."""
    if not isinstance(spec, Mapping) or not spec:
        raise DataError(f"data.spec is required for source=tfrecord: {FORM} for every feature and label")
    parsed: Spec = {}
    for name, entry in spec.items():
        key = f"data.spec.{name}"
        if not isinstance(entry, Mapping):
            raise DataError(f"{key} must be {{dtype: float32|int64, shape: [...]}}, got {entry!r}")
        for k in entry:
            if k not in SPEC_KEYS:
                raise DataError(f"{key} has an unknown key '{k}' (allowed: {', '.join(SPEC_KEYS)}){did_you_mean(k, SPEC_KEYS)}")
        dtype = entry.get("dtype")
        if dtype not in DTYPES:
            raise DataError(f"{key}.dtype must be one of {', '.join(DTYPES)}, got {dtype!r}{did_you_mean(str(dtype), DTYPES)}")
        shape = entry.get("shape")
        if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise DataError(f"{key}.shape must be a list of positive sizes ([] for one value per record), got {shape!r}")
        check_sample_values(shape, f"{key}.shape")
        parsed[str(name)] = (dtype, tuple(shape))
    return parsed


def _in_spec(wanted: list[str], spec: Spec, key: str) -> None:
    for name in wanted:
        if name not in spec:
            raise DataError(f"{key} names '{name}', which is not in data.spec (it has {', '.join(spec)}){did_you_mean(name, spec)}")


def _tf() -> Any:
    from ...tfenv import import_tensorflow

    return import_tensorflow()


def _dataset(tf: Any, files: list[Path]) -> Any:
    compressed = {f.name.endswith(".gz") for f in files}
    return tf.data.TFRecordDataset([str(f) for f in files], compression_type="GZIP" if compressed == {True} else "")


def _parser(spec: Spec) -> Any:
    tf = _tf()
    features = {name: tf.io.FixedLenFeature(shape, getattr(tf, dtype)) for name, (dtype, shape) in spec.items()}
    return lambda serialized: tf.io.parse_example(serialized, features)


def _first_pass(files: list[Path], parse: Any, labels: list[str], source: str) -> dict[str, list[np.ndarray]]:
    """Every record parsed, file by file (so a failure can be placed); labels kept."""
    tf = _tf()
    values: dict[str, list[np.ndarray]] = {name: [] for name in labels}
    for file in files:
        if not file.is_file():
            raise DataError(f"{source}: {file} is not a file")
        batches = iter(_dataset(tf, [file]).batch(CHUNK).map(parse))
        done = 0
        while True:
            try:
                parsed = next(batches)
            except StopIteration:
                break
            except tf.errors.OpError:
                raise _blame(tf, file, parse, done, source) from None
            for name in labels:
                values[name].append(parsed[name].numpy())
            done += len(parsed[labels[0]])
    return values


def _blame(tf: Any, file: Path, parse: Any, start: int, source: str) -> DataError:
    """The record of `file` (from index `start` on) that cannot be read or parsed."""
    where = "" if source.endswith(f" {file}") else f" of {file}"
    records = iter(_dataset(tf, [file]))
    index = 0
    while True:
        try:
            record = next(records)
        except StopIteration:
            return DataError(f"{source}: {file} cannot be read as TFRecords")
        except tf.errors.OpError as exc:
            return DataError(f"{source}: record {index}{where} cannot be read: the file is corrupt or not TFRecords ({tf_reason(exc)})")
        if index >= start:
            try:
                parse(record[None])
            except tf.errors.OpError as exc:
                return DataError(f"{source}: record {index}{where} does not parse as data.spec says ({tf_reason(exc)})")
        index += 1

