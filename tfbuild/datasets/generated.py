"""Inputs made from a model's signature, for `model=file` with `data.source=none`: exports can
still be compared with the model on the same inputs, though there is nothing to score them
against (no targets; `Split.generated` says so, and calibration is refused at planning).

Every part holds the same samples: verification and benchmarks read `test`, other steps may
read `train` or `validation`, and none of them learns from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from ..errors import DataError
from .limits import check_memory, check_sample_values
from .source import CHUNK
from .split import PARTS, ArraySpec, Split, SplitWriter

InputSpecs = Mapping[str, tuple[Sequence[int | None], str]]


def write_generated_split(folder: Path, input_specs: InputSpecs, samples: int, seed: int) -> Split:
    """A split of `samples` seeded samples per input: floats uniform in [0, 1), integers 0 or
    1 (valid ids for any embedding or lookup), booleans. Equal arguments give equal bytes."""
    import numpy as np

    if samples < 1:
        raise DataError(f"data.generated_samples: {samples} is not a positive number of samples")
    specs = {name: _spec(name, shape, dtype) for name, (shape, dtype) in input_specs.items()}
    # A signature states its shapes; CHUNK samples of each are drawn at once (as int64 or
    # float32, then converted): refused here rather than by the allocator.
    need = sum(CHUNK * check_sample_values(spec.shape, f"data.source=none: the model's input '{name}'")
               * (8 + np.dtype(spec.dtype).itemsize) for name, spec in specs.items())
    check_memory(need, f"data.source=none: drawing {CHUNK} samples of the model's inputs "
                       f"({', '.join(f'{n} {list(s.shape)}' for n, s in specs.items())})")
    writer = SplitWriter(folder, specs, {}, {part: samples for part in PARTS}, generated=True,
                         description=f"{samples} samples generated from the model's signature (seed {seed})")  # fmt: skip
    # One generator per input, so adding an input leaves the others' values as they were.
    generators = {name: np.random.default_rng([seed, index]) for index, name in enumerate(specs)}
    for start in range(0, samples, CHUNK):
        count = min(CHUNK, samples - start)
        chunk = {name: _draw(generators[name], spec, count) for name, spec in specs.items()}
        for part in PARTS:
            writer.write(part, np.arange(start, start + count), chunk, {})
    writer.close()
    return Split(folder)


def _spec(name: str, shape: Sequence[int | None], dtype: str) -> ArraySpec:
    import numpy as np

    if any(side is None or side < 0 for side in shape):
        raise DataError(f"data.source=none: the model's input '{name}' has shape {tuple(shape)}, with sizes known "
                        "only from data; give data to verify on (data.source and data.path)")  # fmt: skip
    try:
        kind = np.dtype(dtype).kind
    except TypeError:
        kind = ""
    if not kind or kind not in "fiub":
        raise DataError(f"data.source=none: cannot generate the model's input '{name}' of dtype {dtype} "
                        "(numbers and booleans only); give data to verify on")  # fmt: skip
    return ArraySpec(tuple(int(side) for side in shape), str(np.dtype(dtype)))


def _draw(generator, spec: ArraySpec, count: int):
    import numpy as np

    size = (count, *spec.shape)
    kind = np.dtype(spec.dtype).kind
    if kind == "f":
        return generator.random(size, dtype=np.float32).astype(spec.dtype)
    if kind == "b":
        return generator.integers(0, 2, size).astype(bool)
    return generator.integers(0, 2, size).astype(spec.dtype)
