"""Saving and loading tf_keras models the one way every step does it.

Loading imports `model.modules` first: a model with a custom layer (or loss, or any
registered object) loads only in a process that has imported the module defining it, and a
cached training step means the loading process may never have built the model.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence


def save_h5(model: Any, path: Path) -> None:
    # HDF5 (not .keras, whose zip carries a save date) so equal weights give equal bytes.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*HDF5 file.*legacy", category=UserWarning)
        model.save(path, save_format="h5")


def import_model_modules(modules: Sequence[str], planned: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`model.modules`, imported before any model is built; their Keras classes by name.
    `planned` (the step's files) makes sure Python imports the files the key was computed over."""
    if not modules:
        return {}
    from ..models.modules import import_modules

    return import_modules(list(modules), planned)


def load_model(path: Path, *, modules: Sequence[str] = (), quantize_scope: bool = False,
               planned: Mapping[str, Any] | None = None) -> Any:  # fmt: skip
    """A Keras model (.h5, .keras, SavedModel), uncompiled, `modules` imported first and their
    classes in scope; `quantize_scope` for a quantization-aware model, whose layers only tfmot
    knows. One loader for every step: tfbuild/models/model_file.py. For a model tfbuild
    trained: the code it may carry (a Lambda) is the user's builder's, which ran to make it."""
    from ..models.model_file import load_model as load

    return load(path, modules, quantize_scope=quantize_scope, planned=planned, trust_code=True)
