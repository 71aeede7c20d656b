"""Saving and loading tf_keras models the one way every step does it.

Loading imports `model.modules` first: a model with a custom layer (or loss, or any
registered object) loads only in a process that has imported the module defining it, and a
cached training step means the loading process may never have built the model.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any, Sequence


def save_h5(model: Any, path: Path) -> None:
    # HDF5 (not .keras, whose zip carries a save date) so equal weights give equal bytes.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*HDF5 file.*legacy", category=UserWarning)
        model.save(path, save_format="h5")


def import_model_modules(modules: Sequence[str]) -> None:
    """`model.modules`, imported before any model is built or loaded."""
    if modules:
        from ..models.modules import import_modules  # written by the models part

        import_modules(list(modules))


def load_model(path: Path, *, modules: Sequence[str] = (), quantize_scope: bool = False) -> Any:
    """A Keras model from .h5, .keras or a SavedModel folder, uncompiled (every step compiles
    for its own use); `quantize_scope` for a quantization-aware model, whose layers only
    tfmot knows."""
    import tf_keras as keras

    import_model_modules(modules)
    scope: Any = contextlib.nullcontext()
    if quantize_scope:
        import tensorflow_model_optimization as tfmot

        scope = tfmot.quantization.keras.quantize_scope()
    with scope:
        return keras.models.load_model(path, compile=False)
