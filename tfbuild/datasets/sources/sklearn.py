"""scikit-learn's bundled sets, read from the files scikit-learn ships, without importing it.

Importing scikit-learn costs about a second of SciPy imports on a cold build, for files that
take milliseconds to read. The arrays equal what `sklearn.datasets.load_NAME()` returns
(tests compare them).
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ...errors import DataError, did_you_mean
from ..source import SourceData
from ..split import ArraySpec
from .common import INPUT, array_chunks

if TYPE_CHECKING:
    import numpy as np

LABEL = "label"


def read(params: dict[str, Any], paths: dict[str, Path]) -> SourceData:
    import numpy as np

    name = params.get("name")
    if name not in READERS:
        raise DataError(f"data.name '{name}' is not one of scikit-learn's bundled sets tfbuild reads "
                        f"({', '.join(READERS)}){did_you_mean(str(name), READERS)}")
    x, targets, class_names = READERS[name](_data_folder())
    x = np.ascontiguousarray(x, dtype=np.float32)
    return SourceData(
        description=f"sklearn {name}",
        count=len(x),
        inputs={INPUT: ArraySpec(tuple(x.shape[1:]), "float32")},
        targets=targets,
        chunks=array_chunks({INPUT: x}, {INPUT: [INPUT]}, len(x)),
        images=name == "digits",
        class_names=class_names,
    )


def _data_folder() -> Path:
    # find_spec of a top-level package locates it without running its __init__.
    package = importlib.util.find_spec("sklearn")
    if package is None or not package.submodule_search_locations:
        raise DataError("data.source=sklearn needs scikit-learn installed (its bundled data files); pip install scikit-learn")
    return Path(next(iter(package.submodule_search_locations))) / "datasets" / "data"


Read = tuple["np.ndarray", dict[str, "np.ndarray"], dict[str, list[str]]]


def _digits(folder: Path) -> Read:
    import numpy as np

    table = np.loadtxt(folder / "digits.csv.gz", delimiter=",")
    x = (table[:, :-1] / 16.0).reshape(-1, 8, 8, 1)  # 0..16 gray levels -> 0..1 images
    return x, {LABEL: table[:, -1].astype(np.int64)}, {LABEL: [str(d) for d in range(10)]}


def _classes_csv(file: str) -> Callable[[Path], Read]:
    """iris, wine, breast_cancer: a first row `n_samples,n_features,class names...`, then
    features and the class index per row (scikit-learn's load_csv_data format)."""

    def load(folder: Path) -> Read:
        import numpy as np

        with open(folder / file, encoding="utf-8") as f:
            head = next(csv.reader(f))
            table = np.loadtxt(f, delimiter=",", ndmin=2)
        features = int(head[1])
        return table[:, :features], {LABEL: table[:, features].astype(np.int64)}, {LABEL: head[2:]}

    return load


def _diabetes(folder: Path) -> Read:
    """Scaled as load_diabetes() does by default: each feature centred, divided by its
    standard deviation times sqrt(n_samples)."""
    import numpy as np

    with gzip.open(folder / "diabetes_data_raw.csv.gz", "rt") as f:
        x = np.loadtxt(f, ndmin=2)
    with gzip.open(folder / "diabetes_target.csv.gz", "rt") as f:
        y = np.loadtxt(f)
    x = x - x.mean(axis=0)
    std = x.std(axis=0)
    x = x / np.where(std == 0, 1.0, std) / len(x) ** 0.5
    return x, {"progression": y.astype(np.float32)}, {}


def _linnerud(folder: Path) -> Read:
    """Three exercise features in; three physiological measures out, one target each."""
    import numpy as np

    def table(file: str) -> tuple[list[str], np.ndarray]:
        with open(folder / file, encoding="utf-8") as f:
            return f.readline().split(), np.loadtxt(f, ndmin=2)

    _, x = table("linnerud_exercise.csv")
    names, y = table("linnerud_physiological.csv")
    return x, {name: y[:, i].astype(np.float32) for i, name in enumerate(names)}, {}


READERS: dict[str, Callable[[Path], Read]] = {
    "digits": _digits,
    "iris": _classes_csv("iris.csv"),
    "wine": _classes_csv("wine_data.csv"),
    "breast_cancer": _classes_csv("breast_cancer.csv"),
    "diabetes": _diabetes,
    "linnerud": _linnerud,
}
