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


class SavedModelSession:
    """The serving signature in a TF session with a fixed thread count, as TF Serving runs it.

    TF2's eager thread pools are process-wide and fixed once TensorFlow has started (training
    in the same process has started them); a session carries its own, so `threads` holds
    whatever ran before.
    """

    def __init__(self, path: Path, threads: int, signature: str = SIGNATURE):
        from ..tfenv import import_tensorflow

        tf = import_tensorflow()
        self._graph = tf.Graph()
        with self._graph.as_default():
            config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1)
            self._session = tf.compat.v1.Session(graph=self._graph, config=config)
            meta = tf.compat.v1.saved_model.loader.load(self._session, ["serve"], str(path))
        signature_def = meta.signature_def[signature]
        # A callable skips run()'s per-call feed/fetch parsing: less overhead, less jitter.
        self._call = self._session.make_callable(
            signature_def.outputs[OUTPUT_NAME].name, feed_list=[signature_def.inputs[INPUT_NAME].name]
        )

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._call(x)

    def close(self) -> None:
        self._session.close()
