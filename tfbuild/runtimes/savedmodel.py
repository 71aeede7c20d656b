"""Run a SavedModel's serving signature with TensorFlow, loaded from disk."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..steps.saved_model import INPUT_NAME, OUTPUT_NAME, SIGNATURE

if TYPE_CHECKING:
    import numpy as np

BATCH = 256


def run_saved_model(path: Path, x: np.ndarray) -> np.ndarray:
    import numpy as np

    from ..tfenv import import_tensorflow

    tf = import_tensorflow()
    serve = tf.saved_model.load(str(path)).signatures[SIGNATURE]
    batches = [
        serve(**{INPUT_NAME: tf.constant(x[i : i + BATCH], tf.float32)})[OUTPUT_NAME].numpy()
        for i in range(0, len(x), BATCH)
    ]
    return np.concatenate(batches).astype(np.float32)
