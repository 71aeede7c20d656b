"""What a data source must hold to be trained on, checked on NumPy arrays (no TensorFlow).

A bad array would otherwise fail deep inside training (a NaN loss, a 10**9-unit output
layer, an empty validation split) or, worse, train something meaningless. Each problem is
one DataError naming the file and what is wrong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import DataError

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


def check_samples(x: np.ndarray, y: np.ndarray, params: dict[str, Any], source: str) -> np.ndarray:
    """Refuse arrays that cannot make a classifier; returns y as int64 labels."""
    import numpy as np

    for name, array in (("x", x), ("y", y)):
        if array.ndim == 0:
            raise DataError(f"{source}: {name} is a single value (a 0-d array); it must hold one entry per sample")
    if len(x) != len(y):
        raise DataError(f"{source}: x has {len(x)} samples but y has {len(y)}")
    real = x.dtype == np.bool_ or np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
    if not real:  # booleans are taken as 0/1 features
        raise DataError(f"{source}: x must hold real numbers (integers, floats or booleans), got {_dtype(x)}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        raise DataError(
            f"{source}: x holds NaN or infinity in {int(bad.sum())} of {len(x)} samples "
            f"(the first at index {int(np.argmax(bad))}); drop or fix those samples"
        )
    if y.ndim != 1 and y.shape[1:] != (1,):
        raise DataError(f"{source}: y must hold one integer class label per sample (shape ({len(y)},)), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{source}: y must hold integer class labels 0..K-1, got {_dtype(y)}")
    if len(y) and y.min() < 0:
        raise DataError(f"{source}: y holds negative labels (the smallest is {int(y.min())}); labels must be 0..K-1")
    classes = np.unique(y)
    if len(classes) < 2:
        raise DataError(f"{source}: y has {'no labels' if not len(classes) else f'a single class ({int(classes[0])})'}; a classifier needs 2 or more")
    sizes = split_sizes(len(y), params)
    n = sum(sizes.values())
    outputs = int(y.max()) + 1
    if outputs > MANY_CLASSES and outputs > n:
        raise DataError(
            f"{source}: the largest label is {outputs - 1}, which would make a {outputs}-unit output layer for "
            f"{n} samples; labels must be class indices 0..K-1 (at most {MANY_CLASSES}, or no more than the samples)"
        )
    # Every class should be seeable in training, and validation and test need one sample each.
    if sizes["train"] < len(classes):
        raise DataError(
            f"{source}: {n} samples leave {sizes['train']} for training (validation {sizes['validation']}, "
            f"test {sizes['test']}), fewer than the {len(classes)} classes; add samples"
            + (" or raise data.limit" if params.get("limit") and params["limit"] < len(y) else "")
        )
    return y.astype(np.int64)


def _dtype(array: np.ndarray) -> str:
    kind = {"O": "Python objects", "U": "text", "S": "bytes", "c": "complex numbers", "b": "booleans",
            "M": "dates", "m": "time spans", "V": "records"}.get(array.dtype.kind)
    return f"{kind} (dtype {array.dtype})" if kind else f"dtype {array.dtype}"
