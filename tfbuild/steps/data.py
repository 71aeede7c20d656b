"""`data`: a deterministic train/validation/test split, saved as plain .npy arrays.

.npy files (unlike .npz, whose zip entries carry timestamps) are byte-identical for identical
content, so the split's digest, and every key downstream, is stable across rebuilds.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..datasets.checks import check_samples, split_sizes
from ..errors import DataError
from .base import StepContext

if TYPE_CHECKING:  # NumPy is imported when a step runs, not when a cached build plans
    import numpy as np

SPLITS = ("train", "validation", "test")


def load_source(params: dict[str, Any], files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray]:
    """The samples and labels, checked (datasets.check_samples) before anything is split."""
    import numpy as np

    if params["source"] == "sklearn" and params["name"] == "digits":
        x, y = _sklearn_digits()
        source = "sklearn digits"
    elif params["source"] == "sklearn":
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{params['name']}")()
        x, y = bunch.data, bunch.target
        source = f"sklearn {params['name']}"
    else:
        source = f"data.path {files['source']}"
        x, y = _load_npz(files["source"], source)
    y = check_samples(x, y, params, source)
    return x.astype(np.float32), y


def _load_npz(path: Path, source: str) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {"x", "y"} - set(npz.files)
            if missing:
                raise DataError(f"{source}: has no array named {', '.join(sorted(missing))} (it has {', '.join(npz.files) or 'none'}); save x (samples) and y (labels)")
            return npz["x"], npz["y"]
    except DataError:
        raise
    except ValueError as exc:  # NumPy refuses pickled (object) arrays when allow_pickle=False
        if "allow_pickle" in str(exc):
            raise DataError(f"{source}: holds Python objects (dtype object); save x and y as numeric arrays") from None
        raise DataError(f"{source}: not a .npz file NumPy can read ({exc})") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{source}: not a .npz file NumPy can read ({exc})") from None


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """The same file `sklearn.datasets.load_digits` reads, without importing scikit-learn
    (about 1 s of SciPy imports on a cold build, for a 0.02 s read)."""
    import importlib.util

    import numpy as np

    package = importlib.util.find_spec("sklearn")
    assert package is not None and package.submodule_search_locations
    path = Path(package.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    table = np.loadtxt(path, delimiter=",")
    return (table[:, :-1] / 16.0).reshape(-1, 8, 8, 1).astype(np.float32), table[:, -1].astype(np.int64)


def split(x: np.ndarray, y: np.ndarray, params: dict[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    import numpy as np

    order = np.random.RandomState(params["seed"]).permutation(len(x))
    if params["limit"]:
        order = order[: params["limit"]]
    sizes = split_sizes(len(x), params)
    n_test, n_val = sizes["test"], sizes["validation"]
    parts = {"test": order[:n_test], "validation": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    return {name: (x[idx], y[idx]) for name, idx in parts.items()}


def load_split(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    return np.load(folder / f"x_{name}.npy"), np.load(folder / f"y_{name}.npy")


class DataStep:
    kind = "data"
    version = 1
    tools = ("numpy", "scikit-learn")

    def run(self, ctx: StepContext) -> dict[str, Any]:
        import numpy as np

        x, y = load_source(dict(ctx.params), dict(ctx.files))
        parts = split(x, y, dict(ctx.params))
        out = ctx.outputs["split"]
        out.mkdir(parents=True)
        for name, (xs, ys) in parts.items():
            np.save(out / f"x_{name}.npy", xs)
            np.save(out / f"y_{name}.npy", ys)
        return {
            "samples": {name: int(len(ys)) for name, (_, ys) in parts.items()},
            "input_shape": list(x.shape[1:]),
            "num_classes": int(y.max()) + 1,
        }
