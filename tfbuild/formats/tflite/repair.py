"""Automatic repair of an int8 model that loses too much: keep its worst ops in float.

`export.tflite.int8.max_metric_drop` bounds how far the int8 model's task metric may fall
below the float SavedModel's on the validation split (accuracy: the SavedModel's minus the
model's; MAE: the model's minus the SavedModel's; with several outputs, the worst). A
candidate must also hold the int8 variant's verification tolerance on those samples (a
metric can stay level while top-1 agreement falls: errors that swap places), so the set
chosen is one that verification is likely to pass on the test split.

The search keeps the ops of the per-layer report in float in its order (worst first), as a
prefix: k ops. It tries k = 0 (full int8) and stops there when that meets the target; tries
every op in float, and fails when even that misses (nothing is left to try); otherwise it
bisects between the two for the smallest k that meets the target, assuming that more float
ops do not lose more. Whatever it assumes, every set it answers with was measured. The ops
the user already keeps in float (`float_layers`) stay in float throughout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence

from ...errors import TfbuildError
from ...metrics import CLASSIFICATION, HIGHER_IS_BETTER, METRICS


class RepairFailed(TfbuildError):
    """No float set meets the target: the user's bound, not a bug."""


@dataclass(frozen=True)
class Trial:
    float_ops: int  # how many ops this candidate keeps in float
    added: str  # the last op of the ranked prefix ("" for the user's set alone)
    output: str  # the model output that lost most
    metric: str  # its headline metric: "accuracy" or "mae"
    value: float
    reference: float  # the SavedModel's on the same samples
    drop: float
    bytes: int
    top1_agreement: float | None  # with the SavedModel, worst classification output (None: none)
    within_tolerance: bool  # verify.tolerances.tflite.int8 holds on these samples too
    meets: bool  # the drop is within max_metric_drop, and within_tolerance


Evaluate = Callable[[list[str]], Trial]


def metric_drop(outputs: Mapping[str, Any], reference: Mapping[str, Any], targets: Mapping[str, Any],
                target_tasks: Mapping[str, str]) -> tuple[str, str, float, float, float]:
    """(output, metric, the model's value, the reference's, drop) of the output that lost most
    against the reference on the same targets: a positive drop is worse, whichever way the
    metric runs."""
    from ...metrics import task_metrics

    mine = task_metrics(outputs, targets, target_tasks)
    theirs = task_metrics(reference, targets, target_tasks)
    worst: tuple[str, str, float, float, float] | None = None
    for name, figures in mine.items():
        metric = METRICS[figures.get("task", CLASSIFICATION)][0]
        sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
        drop = round(sign * (theirs[name][metric] - figures[metric]), 6)
        if worst is None or drop > worst[4]:
            worst = (name, metric, figures[metric], theirs[name][metric], drop)
    if worst is None:
        raise RepairFailed("export.tflite.int8.max_metric_drop needs labelled data to score the model on")
    return worst


def search(ranked: Sequence[str], kept: Sequence[str], evaluate: Evaluate, target: float,
           progress: Callable[[str], None] = lambda text: None) -> tuple[list[str], list[Trial]]:
    """(the ops to keep in float, every trial in the order tried). `ranked`: ops worst first,
    without `kept` (the user's float set, always in)."""
    trials: dict[int, Trial] = {}

    def trial(k: int) -> Trial:
        if k not in trials:
            progress(f"{len(kept) + k} ops in float")
            trials[k] = evaluate([*kept, *ranked[:k]])
        return trials[k]

    order = lambda: [trials[k] for k in trials]  # noqa: E731 - insertion order: the order tried
    if trial(0).meets:
        return list(kept), order()
    n = len(ranked)
    if n == 0 or not trial(n).meets:
        best = trials[n]
        raise RepairFailed(
            f"export.tflite.int8.max_metric_drop={target:g}: no set of float ops meets it with the int8 "
            f"tolerance held (full int8 drops {trials[0].metric} by {trials[0].drop:g}; with all {best.float_ops} "
            f"quantized ops in float, {best.drop:g}{'' if best.within_tolerance else ', tolerance missed'}); "
            "raise the bound or choose another variant"
        )
    low, high = 0, n  # low misses, high meets
    while high - low > 1:
        middle = (low + high) // 2
        if trial(middle).meets:
            high = middle
        else:
            low = middle
    return [*kept, *ranked[:high]], order()


def trial_record(trials: Sequence[Trial]) -> list[dict[str, Any]]:
    return [asdict(t) for t in trials]
