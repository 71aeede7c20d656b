"""What a data source must hold to be trained on, checked on NumPy arrays (no TensorFlow).

A bad array would otherwise fail deep inside training (a NaN loss, a 10**9-unit output
layer, an empty validation split) or, worse, train something meaningless. Each problem is
one DataError naming the source, the input or target, and what is wrong. Targets are
checked against their task: classification wants integer class labels 0..K-1, regression
real values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import DataError
from .split import CLASSIFICATION, ArraySpec

if TYPE_CHECKING:
    import numpy as np

# Up to this many classes any labelling is taken (the output layer is at most a few MB for
# the models tfbuild builds). Beyond it, there must be at least one sample per class: a label
# space larger than the data means IDs were given instead of class indices 0..K-1.
MANY_CLASSES = 10_000


def split_sizes(n: int, params: dict[str, Any]) -> dict[str, int]:
    """How many samples each split gets (after data.limit): the one rule the split and its
    check share."""
    n = min(n, params["limit"]) if params.get("limit") else n
    test = max(1, round(n * params["test_fraction"]))
    validation = max(1, round(n * params["validation_fraction"]))
    return {"train": n - test - validation, "validation": validation, "test": test}


def check_input_chunk(name: str, chunk: np.ndarray, source: str, offset: int = 0) -> np.ndarray:
    """A chunk of input `name` (samples offset.. of the source) as float32, or a DataError."""
    import numpy as np

    if chunk.ndim == 0:
        raise DataError(f"{source}: {name} is a single value (a 0-d array); it must hold one entry per sample")
    if not _real(chunk):  # booleans are taken as 0/1 features
        raise DataError(f"{source}: {name} must hold real numbers (integers, floats or booleans), got {_dtype(chunk)}")
    if np.issubdtype(chunk.dtype, np.floating) and not np.isfinite(chunk).all():
        bad = ~np.isfinite(chunk.reshape(len(chunk), -1)).all(axis=1)
        raise DataError(
            f"{source}: {name} holds NaN or infinity in {int(bad.sum())} of {len(chunk)} samples read "
            f"(the first at index {offset + int(np.argmax(bad))}); drop or fix those samples"
        )
    return chunk.astype(np.float32, copy=False)


def check_target(name: str, y: np.ndarray, task: str, count: int, source: str) -> tuple[np.ndarray, ArraySpec]:
    """Target `name` as the task wants it (int64 (n,) labels, or float32 (n, k) values) with
    its spec, or a DataError saying why it cannot be that."""
    import numpy as np

    if y.ndim == 0:
        raise DataError(f"{source}: {name} is a single value (a 0-d array); it must hold one entry per sample")
    if len(y) != count:
        raise DataError(f"{source}: the inputs have {count} samples but {name} has {len(y)}")
    if not _real(y):
        raise DataError(f"{source}: {name} must hold numbers, got {_dtype(y)}")
    if task == CLASSIFICATION:
        labels = _class_labels(name, y, source)
        return labels, ArraySpec((), "int64", task, int(labels.max()) + 1 if len(labels) else 0)
    if y.dtype == np.bool_ or np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{source}: {name} holds integer class labels ({_dtype(y)}) but its task is regression; use "
            f"task=classification (or task.outputs.{name}=classification), or store real-valued targets"
        )
    values = y.astype(np.float32).reshape(len(y), -1)
    if not np.isfinite(values).all():
        bad = ~np.isfinite(values).all(axis=1)
        raise DataError(f"{source}: {name} holds NaN or infinity in {int(bad.sum())} samples (the first at index {int(np.argmax(bad))})")
    return values, ArraySpec((values.shape[1],), "float32", task)


def check_classes_fit(name: str, labels: np.ndarray, sizes: dict[str, int], source: str, limited: bool) -> None:
    """Every class should be seeable in training, and the label space must be class indices."""
    import numpy as np

    classes = np.unique(labels)
    if len(classes) < 2:
        raise DataError(f"{source}: {name} has {'no labels' if not len(classes) else f'a single class ({int(classes[0])})'}; a classifier needs 2 or more")
    n = sum(sizes.values())
    outputs = int(labels.max()) + 1
    if outputs > MANY_CLASSES and outputs > n:
        raise DataError(
            f"{source}: the largest {name} is {outputs - 1}, which would make a {outputs}-unit output layer for "
            f"{n} samples; labels must be class indices 0..K-1 (at most {MANY_CLASSES}, or no more than the samples)"
        )
    if sizes["train"] < len(classes):
        raise DataError(
            f"{source}: {n} samples leave {sizes['train']} for training (validation {sizes['validation']}, "
            f"test {sizes['test']}), fewer than the {len(classes)} classes of {name}; add samples"
            + (" or raise data.limit" if limited else "")
        )


def _class_labels(name: str, y: np.ndarray, source: str) -> np.ndarray:
    import numpy as np

    if y.ndim != 1 and y.shape[1:] != (1,):
        raise DataError(
            f"{source}: {name} must hold one integer class label per sample (shape ({len(y)},)), got shape {y.shape}; "
            f"for several values per sample use task=regression"
        )
    y = y.reshape(len(y))
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or not np.array_equal(y, np.round(y)):
            raise DataError(
                f"{source}: {name} must hold integer class labels 0..K-1, got fractional values (dtype {y.dtype}); "
                f"for real-valued targets use task=regression"
            )
    elif y.dtype == np.bool_:
        raise DataError(f"{source}: {name} must hold integer class labels 0..K-1, got booleans")
    if len(y) and y.min() < 0:
        raise DataError(f"{source}: {name} holds negative labels (the smallest is {int(y.min())}); labels must be 0..K-1")
    return y.astype(np.int64)


def _real(array: np.ndarray) -> bool:
    import numpy as np

    return bool(array.dtype == np.bool_ or np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating))


def _dtype(array: np.ndarray) -> str:
    kind = {"O": "Python objects", "U": "text", "S": "bytes", "c": "complex numbers", "b": "booleans",
            "M": "dates", "m": "time spans", "V": "records"}.get(array.dtype.kind)
    return f"{kind} (dtype {array.dtype})" if kind else f"dtype {array.dtype}"
