"""Matching the arrays a caller hands over to a model signature's named inputs.

Every runtime takes `{input name: array}` and answers `{output name: array}`, names as in the
SavedModel's `serving_default` signature (LiteRT's signature runner and TF.js's model.json
keep them). One rule pairs them, the spine's: one array and a one-input model pair whatever
their names (a data source's lone input is called "inputs", a user's model may call its own
"input_1"); otherwise every input is matched by name, and a missing or unknown name is an
error rather than a silently dropped array.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence, Union

from ..errors import DataError

if TYPE_CHECKING:
    import numpy as np

Inputs = Union[Mapping[str, "np.ndarray"], "np.ndarray"]


def match_inputs(given: Inputs, wanted: Sequence[str], model: object) -> dict[str, Any]:
    """`given` keyed by the signature's input names `wanted` (in that order). A bare array
    feeds a one-input model. Raises DataError naming `model` and both sets of names."""
    if not isinstance(given, Mapping):
        given = {"inputs": given}
    if len(given) == 1 and len(wanted) == 1:
        return {wanted[0]: next(iter(given.values()))}
    missing = [name for name in wanted if name not in given]
    unknown = [name for name in given if name not in wanted]
    if missing or unknown:
        detail = "; ".join(
            f"{label} {', '.join(map(repr, names))}" for label, names in (("missing", missing), ("unknown", unknown)) if names
        )
        raise DataError(f"{model} takes inputs {list(wanted)} but was given {list(given)} ({detail})")
    return {name: given[name] for name in wanted}


def sample_count(inputs: Mapping[str, Any], model: object) -> int:
    """The shared first dimension of the inputs (samples); unequal counts are an error."""
    counts = {name: int(array.shape[0]) for name, array in inputs.items()}
    if len(set(counts.values())) > 1:
        raise DataError(f"inputs of {model} have different sample counts: {counts}")
    return next(iter(counts.values()), 0)


# Samples per call: enough to amortize the call, few enough that activations stay small. A
# MobileNetV2 at 224x224 (600 KB of input per sample) runs 27 at a time, an 8x8 digit 256.
BATCH_INPUT_BYTES = 16 * 2**20
MAX_BATCH = 256


def batch_size(inputs: Mapping[str, Any]) -> int:
    """How many samples of `inputs` to run per call (inputs counted as 4-byte values)."""
    per_sample = sum(4 * math.prod(array.shape[1:]) for array in inputs.values())
    return max(1, min(MAX_BATCH, BATCH_INPUT_BYTES // max(per_sample, 1)))


def batches(n: int, size: int) -> list[slice]:
    """Consecutive slices of `size` covering n samples (one empty slice when n is 0, so a
    runtime still reports its outputs' shapes)."""
    return [slice(start, min(start + size, n)) for start in range(0, n, size)] or [slice(0, 0)]


def first_sample(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Batch 1: what latency is timed on."""
    return {name: a[:1] for name, a in inputs.items()}


def tiled(inputs: Mapping[str, Any], n: int) -> dict[str, Any]:
    """Each input's samples repeated up to a batch of `n` (the same rows for every input):
    what throughput is timed on."""
    import numpy as np

    return {name: np.resize(a, (n, *a.shape[1:])) for name, a in inputs.items()}
