"""A train/validation/test split on disk: what the `data` step writes and every later step reads.

    split/meta.json            names, shapes, dtypes and tasks of the inputs and targets
    split/train/x0.npy ...     one .npy per input, in meta's order (names can be anything a
    split/train/y0.npy ...     model calls its tensors, so files are numbered, not named)

Arrays are written and read through memory maps: a split larger than memory is written a
chunk at a time and read a batch at a time, and taking the first N calibration samples reads
N samples, not the split. .npy bytes are a pure function of the content (unlike .npz, whose
zip entries carry dates), so equal data gives equal digests downstream.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

if TYPE_CHECKING:
    import numpy as np

PARTS = ("train", "validation", "test")
FORMAT = 1

CLASSIFICATION = "classification"
REGRESSION = "regression"


@dataclass(frozen=True)
class ArraySpec:
    """One named input or target: per-sample shape and dtype; targets also carry their task
    (and, for classification, how many classes)."""

    shape: tuple[int, ...]
    dtype: str
    task: str | None = None
    classes: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: (list(v) if k == "shape" else v) for k, v in asdict(self).items() if v is not None}

    @staticmethod
    def from_json(value: Mapping[str, Any]) -> ArraySpec:
        return ArraySpec(tuple(int(d) for d in value["shape"]), value["dtype"], value.get("task"), value.get("classes"))


Arrays = dict[str, "np.ndarray"]


class Split:
    """Read access to a split folder. Arrays come back memory-mapped (read-only)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        meta = json.loads((self.folder / "meta.json").read_text())
        self.meta = meta
        self.inputs_spec = {n: ArraySpec.from_json(v) for n, v in meta["inputs"].items()}
        self.targets_spec = {n: ArraySpec.from_json(v) for n, v in meta["targets"].items()}
        self.samples: dict[str, int] = {p: int(n) for p, n in meta["samples"].items()}
        # True when the inputs were generated from a model's signature (no data was given):
        # outputs can be compared, but there is nothing to score them against.
        self.generated = bool(meta.get("generated"))

    @property
    def input_names(self) -> list[str]:
        return list(self.inputs_spec)

    @property
    def target_names(self) -> list[str]:
        return list(self.targets_spec)

    def tasks(self) -> dict[str, str]:
        return {name: spec.task or CLASSIFICATION for name, spec in self.targets_spec.items()}

    def count(self, part: str) -> int:
        return self.samples[part]

    def inputs(self, part: str, limit: int | None = None) -> Arrays:
        return {name: self._array(part, "x", i, limit) for i, name in enumerate(self.inputs_spec)}

    def targets(self, part: str, limit: int | None = None) -> Arrays:
        return {name: self._array(part, "y", i, limit) for i, name in enumerate(self.targets_spec)}

    def _array(self, part: str, kind: str, index: int, limit: int | None) -> np.ndarray:
        import numpy as np

        array = np.load(self.folder / part / f"{kind}{index}.npy", mmap_mode="r")
        return array if limit is None else array[:limit]

    def batches(self, part: str, batch_size: int, seed: int | None = None) -> Iterator[tuple[Arrays, Arrays]]:
        """One pass in batches, in a seeded random order (seed None: stored order). Only the
        batch being handed out is read from disk."""
        import numpy as np

        n = self.count(part)
        order = np.arange(n) if seed is None else np.random.RandomState(seed).permutation(n)
        inputs, targets = self.inputs(part), self.targets(part)
        for start in range(0, n, batch_size):
            # Sorted indices read the memory map forwards; the batch is then put back in order.
            index = order[start : start + batch_size]
            ascending = np.argsort(index, kind="stable")
            back = np.argsort(ascending, kind="stable")
            rows = index[ascending]
            yield (
                {k: np.asarray(v[rows])[back] for k, v in inputs.items()},
                {k: np.asarray(v[rows])[back] for k, v in targets.items()},
            )


class SplitWriter:
    """Writes a split a chunk at a time into preallocated memory-mapped .npy files."""

    def __init__(self, folder: Path, inputs: Mapping[str, ArraySpec], targets: Mapping[str, ArraySpec],
                 samples: Mapping[str, int], **extra_meta: Any):
        import numpy as np
        from numpy.lib.format import open_memmap

        from .limits import check_disk, product

        self.folder = Path(folder)
        self.inputs, self.targets = dict(inputs), dict(targets)
        # The maps below are sparse until written: a split larger than the disk would only
        # fail part way, with a bare OSError. Sizes come from the data, so it is checked first.
        size = sum(int(samples[part]) * product(spec.shape) * np.dtype(spec.dtype).itemsize
                   for part in PARTS for spec in (*self.inputs.values(), *self.targets.values()))
        check_disk(size, self.folder, f"{extra_meta.get('source') or extra_meta.get('description') or 'data'}: the split")
        self.folder.mkdir(parents=True)
        self._maps: dict[tuple[str, str, int], Any] = {}
        for part in PARTS:
            (self.folder / part).mkdir()
            for kind, specs in (("x", self.inputs), ("y", self.targets)):
                for i, spec in enumerate(specs.values()):
                    self._maps[part, kind, i] = open_memmap(
                        self.folder / part / f"{kind}{i}.npy", mode="w+", dtype=spec.dtype,
                        shape=(int(samples[part]), *spec.shape),
                    )
        meta = {
            "format": FORMAT,
            "inputs": {n: s.as_json() for n, s in self.inputs.items()},
            "targets": {n: s.as_json() for n, s in self.targets.items()},
            "samples": {p: int(samples[p]) for p in PARTS},
            **extra_meta,
        }
        (self.folder / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=False) + "\n")

    def write(self, part: str, positions: np.ndarray, inputs: Mapping[str, np.ndarray],
              targets: Mapping[str, np.ndarray]) -> None:
        """Put samples at `positions` of `part`; inputs and targets are keyed by name (either
        may be left out: inputs stream in chunks, targets are written whole)."""
        for kind, specs, arrays in (("x", self.inputs, inputs), ("y", self.targets, targets)):
            for i, name in enumerate(specs):
                if name in arrays:
                    self._maps[part, kind, i][positions] = arrays[name]

    def close(self) -> None:
        for array in self._maps.values():
            array.flush()
        self._maps.clear()
