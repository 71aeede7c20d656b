"""How close an artifact's outputs are to the reference's, and whether that is close enough.

Pure NumPy, so the figures and the tolerance rules are unit-tested without a model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    import numpy as np

# Tolerance key -> (figure it bounds, True when the figure must stay at or below the bound).
BOUNDS = {
    "max_abs_diff": ("max_abs_diff", True),
    "mean_abs_diff": ("mean_abs_diff", True),
    "min_top1_agreement": ("top1_agreement", False),
}


def compare(outputs: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """max/mean absolute difference and, for (samples, classes) outputs, top-1 agreement."""
    import numpy as np

    if outputs.shape != reference.shape:
        raise ValueError(f"output shape {list(outputs.shape)} differs from the reference's {list(reference.shape)}")
    diff = np.abs(outputs.astype(np.float64) - reference.astype(np.float64))
    figures: dict[str, Any] = {
        "samples": int(len(reference)),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "top1_agreement": None,
    }
    if reference.ndim == 2 and reference.shape[1] > 1:
        figures["top1_agreement"] = float(np.mean(outputs.argmax(axis=1) == reference.argmax(axis=1)))
    if not np.all(np.isfinite(outputs)):  # NaN compares as "not greater": name it instead
        figures["max_abs_diff"] = figures["mean_abs_diff"] = float("inf")
    return figures


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    import numpy as np

    return float(np.mean(outputs.argmax(axis=1) == labels))


def violations(figures: Mapping[str, Any], tolerance: Mapping[str, Any]) -> list[str]:
    """One phrase per bound the figures break, e.g. 'top-1 agreement 0.912 < 0.95'."""
    broken = []
    for bound, (figure, at_most) in BOUNDS.items():
        limit, value = tolerance.get(bound), figures.get(figure)
        if limit is None:
            continue
        if value is None:
            broken.append(f"{figure} cannot be measured on these outputs (tolerance {bound}={limit})")
        elif (value > limit) if at_most else (value < limit):
            label = figure.replace("_", " ").replace("top1", "top-1")
            broken.append(f"{label} {value:.4g} {'>' if at_most else '<'} {bound} {limit:g}")
    return broken
