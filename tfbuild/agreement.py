"""How close an artifact's outputs are to the reference's, and whether that is close enough.

Every output is compared on its own (max and mean absolute difference, max relative
difference, the smallest per-sample cosine similarity); top-1 agreement only where the
output is a classification. A tolerance bounds every output: the build fails on the worst.
Pure NumPy, so the figures and the tolerance rules are unit-tested without a model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

from .metrics import CLASSIFICATION, per_sample, predicted_classes

if TYPE_CHECKING:
    import numpy as np

# Tolerance key -> (figure it bounds, True when the figure must stay at or below the bound).
BOUNDS = {
    "max_abs_diff": ("max_abs_diff", True),
    "mean_abs_diff": ("mean_abs_diff", True),
    "max_rel_diff": ("max_rel_diff", True),
    "min_cosine": ("min_cosine", False),
    "min_top1_agreement": ("top1_agreement", False),
}
FIGURES = tuple(figure for figure, _ in BOUNDS.values())
LABELS = {"max_abs_diff": "max abs diff", "mean_abs_diff": "mean abs diff", "max_rel_diff": "max rel diff",
          "min_cosine": "min cosine", "top1_agreement": "top-1 agreement"}
# Relative differences are taken against max(|reference|, this): a reference value of 0
# would otherwise make any difference infinite.
REL_FLOOR = 1e-6


def compare(outputs: np.ndarray, reference: np.ndarray, task: str = CLASSIFICATION) -> dict[str, Any]:
    """The figures for one output. NaN or inf in either makes every difference inf and the
    cosine -inf: a NaN compares as "not greater" and would pass any bound."""
    import numpy as np

    if outputs.shape != reference.shape:
        raise ValueError(f"output shape {list(outputs.shape)} differs from the reference's {list(reference.shape)}")
    got, want = per_sample(outputs), per_sample(reference)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN and inf are dealt with below
        diff = np.abs(got - want)
        relative = diff / np.maximum(np.abs(want), REL_FLOOR)
    figures: dict[str, Any] = {
        "task": task,
        "samples": int(len(want)),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "max_rel_diff": float(relative.max()) if diff.size else 0.0,
        "min_cosine": _min_cosine(got, want),
        "top1_agreement": None,
        "non_finite": int(np.size(got) - np.count_nonzero(np.isfinite(got))),
    }
    if task == CLASSIFICATION and len(want):
        figures["top1_agreement"] = float(np.mean(predicted_classes(outputs) == predicted_classes(reference)))
    if figures["non_finite"] or not np.all(np.isfinite(want)):
        figures.update(max_abs_diff=float("inf"), mean_abs_diff=float("inf"), max_rel_diff=float("inf"),
                       min_cosine=float("-inf"))
    return figures


def _min_cosine(got: np.ndarray, want: np.ndarray) -> float:
    """The smallest cosine similarity between a sample's output and its reference. Two zero
    vectors agree (1.0); a zero against a non-zero vector does not (0.0)."""
    import numpy as np

    if not got.size:
        return 1.0
    got_norm, want_norm = np.linalg.norm(got, axis=1), np.linalg.norm(want, axis=1)
    norms = got_norm * want_norm
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.sum(got * want, axis=1) / np.where(norms > 0, norms, 1.0)
    cosine = np.where(norms > 0, cosine, np.where((got_norm == 0) & (want_norm == 0), 1.0, 0.0))
    return float(np.clip(cosine, -1.0, 1.0).min())


def compare_outputs(outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
                    tasks: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """{output name: figures} for every reference output; an artifact missing one, or giving
    one the reference does not have, is an error naming them."""
    if set(outputs) != set(reference):
        raise ValueError(f"the artifact's outputs {sorted(outputs)} are not the SavedModel's {sorted(reference)}")
    return {name: compare(outputs[name], reference[name], tasks.get(name, CLASSIFICATION)) for name in reference}


def worst(figures: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Each figure at its worst over several outputs' (or runtimes') figures; None where
    none of them has it (top-1 agreement of a model with no classification output)."""
    figures = list(figures)
    result: dict[str, Any] = {}
    for figure, at_most in BOUNDS.values():
        values = [f[figure] for f in figures if f.get(figure) is not None]
        result[figure] = (max(values) if at_most else min(values)) if values else None
    return result


def violations(per_output: Mapping[str, Mapping[str, Any]], tolerance: Mapping[str, Any]) -> list[str]:
    """One phrase per output and bound it breaks, e.g. 'top-1 agreement 0.912 < min_top1_agreement
    0.95', prefixed with the output's name when the model has several ("'age': max abs diff ...").
    Top-1 agreement bounds classification outputs only: regression outputs have no classes."""
    broken = []
    for name, figures in per_output.items():
        prefix = f"{name!r}: " if len(per_output) > 1 else ""
        first = len(broken)
        for bound, (figure, at_most) in BOUNDS.items():
            limit, value = tolerance.get(bound), figures.get(figure)
            if limit is None or (figure == "top1_agreement" and figures.get("task") != CLASSIFICATION):
                continue
            if value is None:
                broken.append(f"{prefix}{LABELS[figure]} cannot be measured on this output (tolerance {bound}={limit})")
            elif (value > limit) if at_most else (value < limit):
                broken.append(f"{prefix}{LABELS[figure]} {value:.4g} {'>' if at_most else '<'} {bound} {limit:g}")
        if len(broken) > first and figures.get("non_finite"):  # say why once, on the output's first phrase
            count = figures["non_finite"]
            broken[first] += f" ({count} NaN or infinite value{'s' if count != 1 else ''})"
    return broken

