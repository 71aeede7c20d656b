"""From a source to a split on disk: read, check, shuffle, split, preprocess, write.

The split is a pure function of the source's bytes and the data settings: a seeded
permutation puts each sample in test, validation or train (in that order of the permutation,
as tfbuild always has), or the user names one source per part (data.train/validation/test).
Inputs stream through in chunks, so a source larger than memory is never held at once.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import DataError
from .checks import check_classes_fit, check_input_chunk, check_target, split_sizes
from .source import SourceData
from .split import CLASSIFICATION, PARTS, ArraySpec, SplitWriter

if TYPE_CHECKING:
    import numpy as np

USER_PARTS = PARTS  # data.train, data.validation, data.test


def read_source(params: Mapping[str, Any], paths: Mapping[str, Path]) -> SourceData:
    reader = importlib.import_module(f".sources.{params['source']}", __package__)
    return reader.read(dict(params), dict(paths))


def task_of(target: str, params: Mapping[str, Any]) -> str:
    return params["task_outputs"].get(target, params["task"])


def write_split(params: Mapping[str, Any], paths: Mapping[str, Path], folder: Path) -> dict[str, Any]:
    """Write the split into `folder`; returns the step's info."""
    import numpy as np

    if any(part in paths for part in USER_PARTS):
        sources = {part: read_source(params, {"source": paths[part]}) for part in USER_PARTS}
        placements = {part: {part: np.arange(s.count)} for part, s in sources.items()}
    else:
        source = read_source(params, {k: v for k, v in paths.items()})
        sources = {"all": source}
        placements = {"all": _placement(source.count, params)}
    first = next(iter(sources.values()))
    _check_unknown_task_outputs(params, first)
    targets = {key: _targets(s, params) for key, s in sources.items()}
    samples = {part: sum(len(idx) for p in placements.values() for name, idx in p.items() if name == part) for part in PARTS}
    target_specs = _merged_specs(targets, first.description)
    for name, spec in target_specs.items():
        if spec.task == CLASSIFICATION:
            labels = np.concatenate([targets[k][name][0] for k in targets])
            check_classes_fit(name, labels, samples, first.description, bool(params.get("limit")))
    input_specs = {name: ArraySpec(_shape_after(spec.shape, params, first), "float32") for name, spec in first.inputs.items()}
    writer = SplitWriter(folder, input_specs, target_specs, samples, source=first.description,
                         class_names=getattr(first, "class_names", None) or {})
    try:
        for key, source in sources.items():
            _stream_inputs(source, placements[key], writer, params, input_specs)
            for part, idx in placements[key].items():
                writer.write(part, np.arange(len(idx)), {}, {n: v[idx] for n, (v, _) in targets[key].items()})
    finally:
        writer.close()
    return {
        "source": first.description,
        "samples": samples,
        "inputs": {n: s.as_json() for n, s in input_specs.items()},
        "targets": {n: s.as_json() for n, s in target_specs.items()},
        "summary": f"{samples['train']}/{samples['validation']}/{samples['test']} samples",
    }


def _placement(count: int, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """part -> source indices, in the order they are stored in that part."""
    import numpy as np

    order = np.random.RandomState(params["seed"]).permutation(count)
    if params.get("limit"):
        order = order[: params["limit"]]
    sizes = split_sizes(count, params)
    n_test, n_val = sizes["test"], sizes["validation"]
    if sizes["train"] < 1:
        raise DataError(f"data: {count} samples are too few to split into train, validation and test; add samples")
    return {"test": order[:n_test], "validation": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}


def _targets(source: SourceData, params: Mapping[str, Any]) -> dict[str, tuple[np.ndarray, ArraySpec]]:
    if not source.targets:
        raise DataError(f"{source.description}: has no labels (set data.label)")
    return {name: check_target(name, y, task_of(name, params), source.count, source.description)
            for name, y in source.targets.items()}


def _merged_specs(targets: Mapping[str, Mapping[str, tuple[Any, ArraySpec]]], description: str) -> dict[str, ArraySpec]:
    """One spec per target across the user's parts; a classifier's classes are the most any part has."""
    specs: dict[str, ArraySpec] = {}
    for part_targets in targets.values():
        for name, (_, spec) in part_targets.items():
            before = specs.get(name)
            if before is not None and before.shape != spec.shape:
                raise DataError(f"{description}: {name} has {before.shape} values per sample in one part, {spec.shape} in another")
            classes = max(spec.classes or 0, before.classes or 0) if before else spec.classes
            specs[name] = ArraySpec(spec.shape, spec.dtype, spec.task, classes or None)
    return specs


def _check_unknown_task_outputs(params: Mapping[str, Any], source: SourceData) -> None:
    from ..errors import did_you_mean

    for name in params["task_outputs"]:
        if name not in source.targets:
            names = list(source.targets)
            raise DataError(
                f"task.outputs.{name}: the data has no target named '{name}' (its targets: {', '.join(names)})"
                f"{did_you_mean(name, names)}"
            )


def _shape_after(shape: tuple[int, ...], params: Mapping[str, Any], source: SourceData) -> tuple[int, ...]:
    if not (params.get("image_size") or params.get("channels")):
        return tuple(shape)
    from .preprocess import image_shape_after

    return tuple(image_shape_after(tuple(shape), params.get("image_size"), params.get("channels")))


def _stream_inputs(source: SourceData, placement: Mapping[str, np.ndarray], writer: SplitWriter,
                   params: Mapping[str, Any], specs: Mapping[str, ArraySpec]) -> None:
    """Write each input chunk's samples where the placement puts them."""
    import numpy as np

    part_of = np.full(source.count, -1, np.int64)
    position = np.zeros(source.count, np.int64)
    for p, (part, idx) in enumerate(placement.items()):
        part_of[idx] = p
        position[idx] = np.arange(len(idx))
    parts = list(placement)
    # An image folder is resized as it is decoded; this then only converts channels.
    reshape = bool(params.get("image_size") or params.get("channels"))
    offset = 0
    for chunk in source.chunks():
        n = len(next(iter(chunk.values())))
        arrays = {}
        for name, values in chunk.items():
            values = check_input_chunk(name, np.asarray(values), source.description, offset)
            if reshape:
                from .preprocess import apply_image_shape

                values = apply_image_shape(values, params.get("image_size"), params.get("channels"))
            if values.shape[1:] != specs[name].shape:
                raise DataError(f"{source.description}: {name} samples have shape {list(values.shape[1:])}, expected {list(specs[name].shape)}")
            arrays[name] = values
        where = part_of[offset : offset + n]
        for p, part in enumerate(parts):
            mask = where == p
            if mask.any():
                writer.write(part, position[offset : offset + n][mask], {k: v[mask] for k, v in arrays.items()}, {})
        offset += n
    if offset != source.count:
        raise DataError(f"{source.description}: yielded {offset} samples, expected {source.count}")
