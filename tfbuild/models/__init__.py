"""The registry of model builders that recipes name with `model.name`.

A builder is `f(input_shape, num_classes, **params) -> tf_keras.Model` (compiled later by the
train step); the registry's also take `task` and several inputs or targets (see
tfbuild/training/builders.py for what each argument holds). Builders import tf_keras inside
their body, so the resolver can read their signatures to check `model.params` without
importing TensorFlow.
"""

from __future__ import annotations

from typing import Callable

from . import builders

BUILDERS: dict[str, Callable[..., object]] = {
    "cnn": builders.cnn,
    "mlp": builders.mlp,
}
