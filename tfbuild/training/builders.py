"""Finding a model builder and calling it with what the split says about its data.

A builder is `f(input_shape, num_classes, **params)`: one input gives `input_shape` as a
tuple, several as {input name: shape}; one target gives `num_classes` as an int (classes for
classification, values for regression), several as {target name: units}; a builder with a
`task` parameter also gets `task=` (a str, or {target name: task}).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ..errors import DataError
from .tasks import CLASSIFICATION

if TYPE_CHECKING:
    from ..datasets.split import Split

KERAS_APP = "keras_app:"


def resolve_builder(name: str, planned_file: Path | None = None) -> Callable[..., Any]:
    """The builder function for the train step's `builder` param: a registry name, a
    "keras_app:<constructor>", or "package.module.function". A user's module is imported
    here, at training time, and only here: this runs its code (planning read it only)."""
    from ..models import BUILDERS

    if name in BUILDERS:
        return BUILDERS[name]
    if name.startswith(KERAS_APP):
        return _keras_app(name[len(KERAS_APP):])
    module_name, _, attr = name.rpartition(".")
    module = importlib.import_module(module_name)
    imported = Path(getattr(module, "__file__", None) or "")
    if planned_file is not None and imported.resolve() != planned_file.resolve():
        # The key was computed over another file: training this one would cache it wrongly.
        raise RuntimeError(
            f"model._target_: Python imported '{module_name}' from {imported}, but the build was "
            f"planned with {planned_file} (was a module of that name imported before?)"
        )
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"model._target_: module '{module_name}' has no attribute '{attr}'") from None


def _keras_app(app: str) -> Callable[..., Any]:
    def build(input_shape: Any, num_classes: Any, task: Any = CLASSIFICATION, **params: Any) -> Any:
        from ..models.keras_app import build_keras_app  # written by the models part

        return build_keras_app(app, input_shape, num_classes, task, **params)

    build.__name__ = f"keras_app:{app}"
    return build


def target_units(name: str, spec: Any, split: Split | None = None) -> int:
    """Classes for a classification target, values per sample (k of (n, k)) for regression."""
    if (spec.task or CLASSIFICATION) == CLASSIFICATION:
        if spec.classes is not None:
            return int(spec.classes)
        if split is None:
            raise DataError(f"target '{name}': the split does not say how many classes it has")
        import numpy as np  # an older split without the count: the labels say it

        return int(max(int(np.max(split.targets(part)[name])) for part in ("train", "validation", "test")
                       if split.count(part))) + 1  # fmt: skip
    return int(spec.shape[-1]) if spec.shape else 1


def builder_arguments(split: Split) -> tuple[Any, Any, Any]:
    """(input_shape, num_classes, task) for the split, shaped as SPINE's naming rules say."""
    shapes = {name: tuple(int(d) for d in spec.shape) for name, spec in split.inputs_spec.items()}
    units = {name: target_units(name, spec, split) for name, spec in split.targets_spec.items()}
    tasks = split.tasks()
    if len(shapes) == 1:
        input_shape: Any = next(iter(shapes.values()))
    else:
        input_shape = shapes
    if len(units) == 1:
        return input_shape, next(iter(units.values())), next(iter(tasks.values()))
    return input_shape, units, tasks


def call_builder(builder: Callable[..., Any], split: Split, params: Mapping[str, Any]) -> Any:
    """Build the model; `task=` goes to builders that declare a `task` parameter only, so a
    classifier-only builder written before tasks existed keeps working."""
    input_shape, num_classes, task = builder_arguments(split)
    kwargs = dict(params)
    if takes_task(builder):
        if "task" in kwargs:
            raise DataError("model.params.task: the task comes from task.name / task.outputs, not model.params")
        kwargs["task"] = task
    return builder(input_shape, num_classes, **kwargs)


def takes_task(builder: Callable[..., Any]) -> bool:
    try:
        return "task" in inspect.signature(builder).parameters
    except (TypeError, ValueError):  # a builtin or C callable: no signature to read
        return False
