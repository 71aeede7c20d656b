"""`model.modules`: the user's modules (custom layers, losses, registered objects) imported
before any model is built or loaded.

Planning finds them by reading files only, as it finds a `model._target_` builder (the same
machinery: `builder_source`): each module and every file of the user's code it imports
enters the key of the steps that load the model. Running them happens at run time, in every
step that builds or loads a Keras model (`import_modules`): a saved model that uses a
custom layer can then be reloaded in a process that never trained it (a cached training
step leaves the SavedModel step a fresh process).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..builder_source import Module, find_module, installed_distribution, key_files, where
from ..errors import ConfigError, DataError

KEY = "model.modules"
ROLE = "modules"  # key roles: "modules:my_layers", "modules:my_layers:helpers/blocks.py"


@dataclass(frozen=True)
class ModuleSources:
    files: dict[str, str]  # key role -> path
    distributions: dict[str, str]  # module -> "name==version", for a module of an installed package


def module_files(modules: Sequence[str], search_path: Sequence[str] | None = None) -> dict[str, str]:
    """Key role -> path of every file of the user's code that importing `modules` runs."""
    return module_sources(modules, search_path).files


def module_sources(modules: Sequence[str], search_path: Sequence[str] | None = None) -> ModuleSources:
    """The files (and, for installed packages, the distributions) that key `modules`;
    ConfigError for a name that is not a module of the user's, or cannot be found."""
    path = list(sys.path if search_path is None else search_path)
    files: dict[str, str] = {}
    distributions: dict[str, str] = {}
    for name in modules:
        module = _find(name, path)
        top, role = name.split(".")[0], f"{ROLE}:{name}"
        if where(module.file) == "installed":
            # An installed package is keyed by its version, as a builder from one is.
            distribution = installed_distribution(top, module.root)
            if distribution is not None:
                files[role], distributions[name] = str(module.file), distribution
                continue
            found = key_files(module, path, installed_package=top, role=role, key=KEY)
        else:
            found = key_files(module, path, role=role, key=KEY)
        # A helper two modules import is keyed once; each module's own file keeps its role,
        # which the run-time check below looks up.
        keyed = set(files.values())
        files.update({r: file for r, file in found.items() if r == role or file not in keyed})
    return ModuleSources(dict(sorted(files.items())), distributions)


def _find(name: Any, path: Sequence[str]) -> Module:
    if not isinstance(name, str) or not name or not all(part.isidentifier() for part in name.split(".")):
        raise ConfigError(f"{KEY}: '{name}' is not a module name (e.g. my_layers or my_project.layers)")
    top = name.split(".")[0]
    if top in sys.stdlib_module_names:
        raise ConfigError(f"{KEY}: '{name}' is a standard-library module; list your own modules "
                          "(custom layers, losses, registered objects)")  # fmt: skip
    if top == __package__.split(".")[0]:
        raise ConfigError(f"{KEY}: '{name}' is tfbuild itself; list your own modules "
                          "(custom layers, losses, registered objects)")  # fmt: skip
    module = find_module(name, path)
    if module is None:
        raise ConfigError(f"{KEY}: cannot import module '{name}' (not found on PYTHONPATH "
                          "or in the folder you run tfbuild from)")  # fmt: skip
    if where(module.file) == "stdlib":
        raise ConfigError(f"{KEY}: '{name}' is a standard-library module; list your own modules "
                          "(custom layers, losses, registered objects)")  # fmt: skip
    return module


def import_modules(modules: Sequence[str], planned: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Import `modules` (running them registers what they register with tf_keras) and return
    the Keras classes they define, by class name, for `custom_objects`: a layer that is not
    registered is found by name only that way. `planned` (the step's files, role -> path)
    makes sure Python imports the file the key was computed over."""
    import tf_keras as keras

    # What Keras deserializes by class name (Model and Metric are Layers).
    bases = (
        keras.layers.Layer, keras.losses.Loss, keras.initializers.Initializer, keras.regularizers.Regularizer,
        keras.constraints.Constraint, keras.optimizers.schedules.LearningRateSchedule, keras.optimizers.Optimizer,
    )  # fmt: skip
    objects: dict[str, Any] = {}
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise DataError(f"{KEY}: cannot import '{name}': {exc}") from None
        expected = (planned or {}).get(f"{ROLE}:{name}")
        imported = Path(getattr(module, "__file__", None) or "")
        if expected is not None and imported.resolve() != Path(expected).resolve():
            raise DataError(f"{KEY}: Python imported '{name}' from {imported}, but the build was planned with "
                            f"{expected} (was a module of that name imported before?)")  # fmt: skip
        for attr, value in vars(module).items():
            if inspect.isclass(value) and value.__module__ == module.__name__ and issubclass(value, bases):
                objects.setdefault(attr, value)
    return objects


def available_objects(objects: Mapping[str, Any]) -> set[str]:
    """Names tf_keras can deserialize beyond its own: `objects` and what was registered
    (register_keras_serializable, get_custom_objects)."""
    import tf_keras as keras

    return {*objects, *keras.saving.get_custom_objects()}
