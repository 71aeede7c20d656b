"""What every reader shares: how data.label and data.features name targets and inputs, and
how named arrays become chunks.

The naming rule (one for all sources): each label is one target, named after it; one input
is named "inputs" unless the user named it with a features dict. No TensorFlow here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from ...errors import DataError, did_you_mean
from ..source import CHUNK

if TYPE_CHECKING:
    import numpy as np

INPUT = "inputs"  # the name of a source's one input, unless a features dict names it


def names(value: Any, key: str) -> list[str]:
    """A name or a list of names (data.label, data.features.NAME) as a list of str."""
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v for v in value):
        if len(set(value)) != len(value):
            twice = next(v for v in value if list(value).count(v) > 1)
            raise DataError(f"{key} names '{twice}' twice")
        return list(value)
    raise DataError(f"{key} must be a name or a non-empty list of names, got {value!r}")


def input_groups(features: Any, *, one_input_per_name: bool) -> dict[str, list[str]]:
    """data.features (not null) -> {input name: the columns/arrays/features it is made of}.

    A list makes one input "inputs" of all its names (csv: columns side by side), or, with
    `one_input_per_name` (npz, tfrecord: arrays may differ in shape), one input per name,
    named after it; a list of one name is still the input "inputs". A dict names the inputs.
    """
    if isinstance(features, Mapping):
        if not features:
            raise DataError("data.features is an empty mapping; give {input name: [names]} or null")
        return {str(k): names(v, f"data.features.{k}") for k, v in features.items()}
    listed = names(features, "data.features")
    if one_input_per_name and len(listed) > 1:
        return {n: [n] for n in listed}
    return {INPUT: listed}


def check_present(wanted: Sequence[str], present: Sequence[str], key: str, what: str, source: str) -> None:
    """Each wanted name must be one the file has: one line listing what it has, and the
    nearest match."""
    for name in wanted:
        if name not in present:
            has = ", ".join(present) or "none"
            raise DataError(f"{source}: has no {what} '{name}' (named by {key}; it has {has}){did_you_mean(name, present)}")


def features_key(features: Any, name: str) -> str:
    """The config key that named input `name`'s members: data.features.NAME for a dict."""
    return f"data.features.{name}" if isinstance(features, Mapping) else "data.features"


def check_disjoint(labels: Sequence[str], features: Any, groups: Mapping[str, Sequence[str]], source: str) -> None:
    """A label that is also a feature would let the model read its own answer."""
    for name, members in groups.items():
        for member in members:
            if member in labels:
                key = features_key(features, name)
                raise DataError(f"{source}: '{member}' is both a label (data.label) and a feature ({key}); a model must not read its own target")


def sample_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """A per-sample scalar becomes a vector of one: a model input needs at least one axis."""
    return tuple(int(d) for d in shape) or (1,)


def joined_shape(shapes: Mapping[str, Sequence[int]], key: str, source: str) -> tuple[int, ...]:
    """The per-sample shape of several arrays put side by side on their last axis; the other
    axes must agree."""
    fixed = {n: sample_shape(s) for n, s in shapes.items()}
    first = next(iter(fixed.values()))
    for name, shape in fixed.items():
        if shape[:-1] != first[:-1]:
            listed = ", ".join(f"{n} {s}" for n, s in fixed.items())
            raise DataError(f"{source}: {key} joins arrays whose shapes differ before the last axis ({listed}); they are joined on the last axis")
    return (*first[:-1], sum(s[-1] for s in fixed.values()))


def join(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Chunks of several arrays side by side on the last axis, as float32 (scalars as (n, 1))."""
    import numpy as np

    columns = [np.asarray(p, dtype=np.float32).reshape(len(p), *sample_shape(np.shape(p)[1:])) for p in parts]
    return columns[0] if len(columns) == 1 else np.concatenate(columns, axis=-1)


def check_real(dtype: Any, name: str, source: str) -> None:
    """Inputs are numbers: booleans, integers or floats (taken as float32)."""
    import numpy as np

    dtype = np.dtype(dtype)
    if not (dtype == np.bool_ or np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise DataError(f"{source}: array '{name}' must hold real numbers (integers, floats or booleans), got dtype {dtype}")


def array_chunks(arrays: Mapping[str, Sequence[Any]], groups: Mapping[str, Sequence[str]],
                 count: int) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
    """chunks() over named (memory-mapped or in-memory) arrays: each input's members sliced
    CHUNK samples at a time and joined, so only one chunk is ever copied into memory."""

    def chunks() -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, count, CHUNK):
            stop = min(start + CHUNK, count)
            yield {name: join([arrays[m][start:stop] for m in members]) for name, members in groups.items()}

    return chunks


def source_path(paths: Mapping[str, Path], source: str) -> Path:
    if "source" not in paths:
        raise DataError(f"{source}: data.path is required for this source")
    return Path(paths["source"])


def tf_reason(exc: Exception) -> str:
    """A TensorFlow error's message on one line, without the internal op names around it."""
    text = " ".join((getattr(exc, "message", None) or str(exc)).split())
    if text.startswith("{{function_node"):
        text = text.split("}}", 1)[-1].strip()
    return text.split(" [Op:")[0].replace("Name: <unknown>, ", "").strip()
