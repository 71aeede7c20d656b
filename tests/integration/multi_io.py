"""Tiny real models with named inputs and outputs, saved the way tfbuild's saved_model step
saves them (a `serving_default` signature whose inputs and outputs keep the Keras names), and
a split on disk to calibrate and verify them with. Shared by the runtime tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tfbuild.datasets.split import ArraySpec, SplitWriter
from tfbuild.steps.base import StepContext


def two_io_inputs(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"image": rng.random((n, 8, 8, 1), np.float32), "meta": rng.normal(size=(n, 3)).astype(np.float32)}


def token_inputs(n: int, seed: int) -> dict[str, np.ndarray]:
    """Integer ids stored as float32, as a split stores every input."""
    return {"tokens": np.random.default_rng(seed).integers(0, 20, (n, 5)).astype(np.float32)}


def two_io_model() -> Any:
    """image (8x8x1) and meta (3) in; digit (10-way softmax) and size (regression) out."""
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    image, meta = keras.Input((8, 8, 1), name="image"), keras.Input((3,), name="meta")
    h = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu")(image))
    h = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()([h, meta]))
    digit = keras.layers.Dense(10, activation="softmax", name="digit")(h)
    size = keras.layers.Dense(1, name="size")(h)
    return keras.Model([image, meta], [digit, size])


def token_model() -> Any:
    """int32 token ids in (an embedding), class probabilities out."""
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    tokens = keras.Input((5,), name="tokens", dtype="int32")
    h = keras.layers.Flatten()(keras.layers.Embedding(20, 4)(tokens))
    return keras.Model(tokens, keras.layers.Dense(3, activation="softmax", name="probs")(h))


def save_serving(model: Any, path: Path) -> Path:
    """`model` as a SavedModel whose serving_default takes and gives tensors by Keras name."""
    from tfbuild.tfenv import import_tensorflow

    tf = import_tensorflow()
    specs = {t.name: tf.TensorSpec([None, *t.shape[1:]], t.dtype, name=t.name) for t in model.inputs}

    @tf.function(input_signature=[specs])
    def serve(inputs):
        outputs = model(inputs, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return {name: tf.cast(y, tf.float32) for name, y in zip(model.output_names, outputs)}

    tf.saved_model.save(model, str(path), signatures={"serving_default": serve})
    return path


def write_split(folder: Path, inputs_of: Any, targets: dict[str, ArraySpec], samples: dict[str, int]) -> Path:
    """A split whose inputs come from `inputs_of(n, seed)`; targets are zeros (unused here)."""
    first = inputs_of(1, 0)
    specs = {name: ArraySpec(tuple(x.shape[1:]), "float32") for name, x in first.items()}
    writer = SplitWriter(folder, specs, targets, samples)
    for seed, (part, n) in enumerate(samples.items()):
        zeros = {name: np.zeros((n, *s.shape), s.dtype) for name, s in targets.items()}
        writer.write(part, np.arange(n), inputs_of(n, seed), zeros)
    writer.close()
    return folder


TWO_IO_TARGETS = {
    "digit": ArraySpec((), "int64", "classification", 10),
    "size": ArraySpec((1,), "float32", "regression"),
}
TOKEN_TARGETS = {"probs": ArraySpec((), "int64", "classification", 3)}


def step_context(params: dict[str, Any], inputs: dict[str, Path], out: Path, role: str = "model") -> StepContext:
    """What the runner hands an export step: its params, input artifacts, output path (under `role`)."""
    return StepContext(spec=None, params=params, inputs=inputs, files={}, outputs={role: out})  # type: ignore[arg-type]
