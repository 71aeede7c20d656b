"""The `data` step of a plan: which source, which files, which settings, checked before any
work. Reads the config and stats files; imports neither NumPy nor TensorFlow.

Each source gets only the settings it reads, so `data.color` on a CSV is refused rather than
silently ignored, and changing a setting a source ignores never re-splits it.
"""

from __future__ import annotations

import glob
import os
from typing import Any

from omegaconf import DictConfig, ListConfig

from .errors import ConfigError, did_you_mean
from .artifacts import DATA
from .datasets.limits import check_sample_values
from .digests import check_tree
from .plan import OutputSpec, StepSpec
from .project import watch_for_planning
from .schema_checks import plain


SKLEARN_DATASETS = {  # name -> the task its targets are for
    "digits": "classification", "iris": "classification", "wine": "classification",
    "breast_cancer": "classification", "diabetes": "regression", "linnerud": "regression",
}
# Settings each source reads besides the split's (seed, fractions, limit) and image_size/channels.
SOURCE_SETTINGS = {
    "sklearn": ("name",),
    "npz": ("path", "features", "label"),
    "csv": ("path", "features", "label"),
    "images": ("path", "color", "max_pixels"),
    "tfrecord": ("path", "spec", "features", "label"),
    "none": ("generated_samples",),
}
ALL_SETTINGS = ("name", "path", "features", "label", "spec", "color", "max_pixels", "generated_samples")
USER_PARTS = ("train", "validation", "test")
TFRECORD_DTYPES = ("float32", "int64")


def data_step(cfg: DictConfig) -> StepSpec:
    data = cfg.data
    source = data.source.value
    params: dict[str, Any] = {
        "source": source,
        "seed": data.seed,
        "validation_fraction": data.validation_fraction,
        "test_fraction": data.test_fraction,
        "limit": data.limit,
        "task": cfg.task.name.value,
        "task_outputs": {k: v.value for k, v in cfg.task.outputs.items()},
    }
    for key in SOURCE_SETTINGS[source]:
        params[key] = plain(data[key])
    files = _source_files(data, source)
    params.pop("path", None)  # the files' bytes are in the key, not where they lie
    _check_labels(data, source)
    if source == "images" and not data.image_size:
        raise ConfigError("data.image_size is required for data=images: [height, width] every image is resized to")
    if source == "images" and data.max_pixels < 1:
        raise ConfigError(f"data.max_pixels must be a positive number of pixels, got {data.max_pixels}")
    if data.image_size is not None or data.channels is not None:
        params["image_size"] = _image_size(data.image_size)
        params["channels"] = _channels(data.channels)
    if source == "sklearn":
        _check_sklearn(data.name, cfg)
    _check_task_outputs(cfg)
    if source == "tfrecord":
        _check_spec(data)
    if source == "csv":
        for role, path in files.items():
            _check_csv_columns(data, path, "data.path" if role == "source" else f"data.{role}")
    return StepSpec(name="data", kind="data", params=params, files=files,
                    outputs=(OutputSpec(role="split", artifact=DATA, path="split"),))


# Per-sample input shapes of the bundled sets, so a network's needs are checked while planning.
SKLEARN_SHAPES = {"digits": (8, 8, 1), "iris": (4,), "wine": (13,), "breast_cancer": (30,), "diabetes": (10,), "linnerud": (3,)}


def planned_input_shape(cfg: DictConfig) -> tuple[int, ...] | None:
    """The input's per-sample shape after preprocessing, where it is known without reading
    the data (bundled sets, image folders); None otherwise."""
    from .datasets.preprocess import image_shape_after

    data = cfg.data
    source = data.source.value
    if source == "sklearn":
        base = SKLEARN_SHAPES.get(data.name)
    elif source == "images" and data.image_size:
        base = (*data.image_size, 1 if data.color.value == "grayscale" else 3)
    else:
        return None
    if base is None:
        return None
    return image_shape_after(base, plain(data.image_size), data.channels, error=ConfigError)


def check_data_settings(cfg: DictConfig, typed_keys: set[str]) -> None:
    """A data setting typed for a source that does not read it is refused (it would be ignored)."""
    source = cfg.data.source.value
    for key in ALL_SETTINGS:
        if f"data.{key}" in typed_keys and key not in SOURCE_SETTINGS[source]:
            readers = [s for s, keys in SOURCE_SETTINGS.items() if key in keys]
            raise ConfigError(f"data.{key} does not apply to data={source} (it is read by data={', data='.join(readers)})")


def _source_files(data: DictConfig, source: str) -> dict[str, str]:
    parts = {part: data[part] for part in USER_PARTS if data[part] is not None}
    if parts:
        if source in ("sklearn", "none"):
            raise ConfigError(f"data.{next(iter(parts))}: data={source} has no files to split by hand; set data.train/validation/test with data=npz, csv, images or tfrecord")
        missing = [p for p in USER_PARTS if p not in parts]
        if missing:
            raise ConfigError(f"data.{missing[0]} must be set too: a split of your own names all three parts (data.train, data.validation, data.test)")
        if data.path is not None:
            raise ConfigError("data.path and data.train/validation/test are both set: give the whole source (a seeded split) or the three parts, not both")
        return {part: _existing(path, f"data.{part}", source) for part, path in parts.items()}
    if source in ("sklearn", "none"):
        return {}
    if not data.path:
        raise ConfigError(f"data.path must be set (data={source} reads {_what(source)}), or data.train/validation/test")
    if source == "tfrecord" and glob.has_magic(data.path):
        return _glob_files(data.path)
    return {"source": _existing(data.path, "data.path", source)}


def _glob_files(pattern: str) -> dict[str, str]:
    """The files a TFRecord glob matches, in order. The folders it reads are watched by the
    no-op stamp: a file that starts to match must send the next command through planning."""
    from .datasets.sources.tfrecord import glob_folders

    watch_for_planning(glob_folders(pattern))
    matches = sorted(glob.glob(os.path.expanduser(pattern)))
    if not matches:
        raise ConfigError(f"data.path: no file matches '{pattern}'")
    for match in matches:
        check_tree(match, "data.path")  # a dangling link that matches is refused, not skipped
        if not os.path.isfile(match):
            raise ConfigError(f"data.path: '{pattern}' matches the folder '{match}'; a TFRecord glob matches files")
    return {f"source.{i}": os.path.abspath(m) for i, m in enumerate(matches)}


def _existing(path: str, key: str, source: str) -> str:
    """The absolute path (links kept: their targets are read and keyed under the link's name),
    checked by the symlink rule (digests.walk) now rather than when it is hashed."""
    full = os.path.expanduser(path)
    want_folder = source == "images"
    if os.path.lexists(full):
        check_tree(full, key)
    if want_folder and not os.path.isdir(full):
        raise ConfigError(f"{key}: no such folder '{path}' (data=images reads a folder with one subfolder per class)")
    if not want_folder and not os.path.isfile(full):
        raise ConfigError(f"{key}: no such file '{path}'")
    return os.path.abspath(full)


def _what(source: str) -> str:
    return {"npz": "a .npz file", "csv": "a .csv file", "images": "a folder of class subfolders",
            "tfrecord": "a TFRecord file or glob"}[source]


def _check_labels(data: DictConfig, source: str) -> None:
    if source in ("csv", "tfrecord") and data.label in (None, "", []):
        raise ConfigError(f"data.label must be set for data={source}: the target column/feature, or a list of them")
    for key in ("label", "features"):
        value = plain(data[key])
        if key == "features" and isinstance(value, dict):
            if not value or not all(isinstance(v, list) and v and all(isinstance(c, str) for c in v) for v in value.values()):
                raise ConfigError("data.features: as a dict it maps each input name to a non-empty list of columns, e.g. {image: [p0, p1], meta: [age]}")
            continue
        if value is not None and not (isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(v, str) for v in value))):
            raise ConfigError(f"data.{key} must be a name or a non-empty list of names, got {value!r}")


def _check_csv_columns(data: DictConfig, path: str, key: str) -> None:
    """The label and feature columns against the file's header row: a typo costs a second,
    not a read of the whole file."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), None)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{key}: cannot read '{path}' as CSV ({exc})") from None
    if not header:
        raise ConfigError(f"{key}: '{path}' is empty; a CSV needs a header row of column names")
    header = [column.strip() for column in header]
    features = plain(data.features)
    named = {"data.label": _names(plain(data.label))}
    if isinstance(features, dict):
        named.update({f"data.features.{name}": columns for name, columns in features.items()})
    else:
        named["data.features"] = _names(features)
    for setting, columns in named.items():
        for column in columns:
            if column not in header:
                shown = ", ".join(header[:12]) + (", ..." if len(header) > 12 else "")
                raise ConfigError(f"{setting}: '{path}' has no column '{column}' (its columns: {shown}){did_you_mean(column, header)}")


def _names(value: Any) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def _check_sklearn(name: str, cfg: DictConfig) -> None:
    if name not in SKLEARN_DATASETS:
        names = list(SKLEARN_DATASETS)
        raise ConfigError(f"data.name: '{name}' is not one of {', '.join(names)}{did_you_mean(name, names)}")
    natural = SKLEARN_DATASETS[name]
    for target in planned_target_names(cfg) or []:
        task = cfg.task.outputs[target].value if target in cfg.task.outputs else cfg.task.name.value
        if task != natural:
            key = f"task.outputs.{target}" if target in cfg.task.outputs else "task"
            raise ConfigError(f"data.name={name} holds {natural} targets but {key}={task}: use {key}={natural}")


# The targets of the bundled sets, as their readers name them.
SKLEARN_TARGETS = {"diabetes": ["progression"], "linnerud": ["Weight", "Waist", "Pulse"]}


def planned_target_names(cfg: DictConfig) -> list[str] | None:
    """The data's target names where the config says them (a single unnamed label is
    'label'); None when only the data knows (data=none)."""
    data = cfg.data
    source = data.source.value
    if source == "sklearn":
        return SKLEARN_TARGETS.get(data.name, ["label"])
    if source in ("none",):
        return None
    if source == "images" or data.label is None:
        return ["label"]
    return _names(plain(data.label))


def _check_task_outputs(cfg: DictConfig) -> None:
    """task.outputs names outputs; each must be a target of the data (the model's outputs pair
    with them), or it would set nothing."""
    names = planned_target_names(cfg)
    if names is None:
        return
    for name in cfg.task.outputs:
        if name not in names:
            raise ConfigError(
                f"task.outputs.{name}: the data has no target named '{name}' (its targets: {', '.join(names)})"
                f"{did_you_mean(name, names)}"
            )


def _check_spec(data: DictConfig) -> None:
    spec = plain(data.spec)
    if not spec:
        raise ConfigError("data.spec must describe the TFRecord features: {name: {dtype: float32|int64, shape: [...]}}")
    for name, feature in spec.items():
        if not isinstance(feature, dict) or set(feature) - {"dtype", "shape"} or "dtype" not in feature:
            raise ConfigError(f"data.spec.{name} must be {{dtype: float32|int64, shape: [...]}}, got {feature!r}")
        if feature["dtype"] not in TFRECORD_DTYPES:
            raise ConfigError(f"data.spec.{name}.dtype: '{feature['dtype']}' is not one of {', '.join(TFRECORD_DTYPES)}")
        shape = feature.get("shape", [])
        if not isinstance(shape, list) or not all(isinstance(d, int) and d > 0 for d in shape):
            raise ConfigError(f"data.spec.{name}.shape must be a list of positive integers, got {shape!r}")
        check_sample_values(shape, f"data.spec.{name}.shape", ConfigError)  # memory: the step checks it
    labels = data.label if isinstance(data.label, (list, ListConfig)) else [data.label]
    for label in labels:
        if label not in spec:
            raise ConfigError(f"data.label: '{label}' is not a feature of data.spec ({', '.join(spec)}){did_you_mean(str(label), list(spec))}")


def _image_size(value: Any) -> list[int] | None:
    if value is None:
        return None
    size = list(value)
    if len(size) != 2 or not all(isinstance(d, int) and 1 <= d <= 8192 for d in size):
        raise ConfigError(f"data.image_size must be [height, width], each 1..8192, got {size}")
    return size


def _channels(value: Any) -> int | None:
    if value is not None and value not in (1, 3):
        raise ConfigError(f"data.channels must be 1 (grayscale) or 3 (RGB), got {value}")
    return value
