"""Run a SavedModel's serving signature with TensorFlow, loaded from disk, by name:
`{input name: array}` in, `{output name: array}` out, names as in the signature."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataError
from ..signature import SIGNATURE
from .feeds import Inputs, batch_size, batches, match_inputs, sample_count

if TYPE_CHECKING:
    import numpy as np


def signature_dtypes(path: Path, signature: str = SIGNATURE) -> tuple[dict[str, Any], dict[str, Any]]:
    """({input name: NumPy dtype}, {output name: NumPy dtype}) of `signature`, read from
    saved_model.pb alone: no variables are loaded, so asking costs milliseconds."""
    from ..tfenv import import_tensorflow

    tf = import_tensorflow()
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    defs = next((m.signature_def for m in proto.meta_graphs if signature in m.signature_def), None)
    if defs is None:
        raise DataError(f"SavedModel {path} has no signature '{signature}'")
    as_numpy = lambda tensors: {n: tf.dtypes.as_dtype(t.dtype).as_numpy_dtype for n, t in sorted(tensors.items())}  # noqa: E731
    return as_numpy(defs[signature].inputs), as_numpy(defs[signature].outputs)


def run_saved_model(path: Path, inputs: Inputs, signature: str = SIGNATURE) -> dict[str, np.ndarray]:
    """Every output of `signature` on all samples of `inputs`, as float32, in batches."""
    import numpy as np

    from ..tfenv import import_tensorflow

    tf = import_tensorflow()
    loaded = tf.saved_model.load(str(path))
    if signature not in loaded.signatures:
        raise DataError(f"SavedModel {path} has no signature '{signature}' (it has: {sorted(loaded.signatures)})")
    serve = loaded.signatures[signature]
    specs = serve.structured_input_signature[1]
    feeds = match_inputs(inputs, sorted(specs), f"SavedModel {path}")
    parts: dict[str, list[np.ndarray]] = {}
    for rows in batches(sample_count(feeds, path), batch_size(feeds)):
        # The dtype the signature declares: float32 features, int32/int64 ids.
        batch = {name: tf.constant(np.asarray(x[rows], specs[name].dtype.as_numpy_dtype)) for name, x in feeds.items()}
        for name, value in serve(**batch).items():
            parts.setdefault(name, []).append(value.numpy())
    return {name: np.concatenate(values).astype(np.float32) for name, values in parts.items()}


class SavedModelSession:
    """The serving signature in a TF session with a fixed thread count, as TF Serving runs it.

    TF2's eager thread pools are process-wide and fixed once TensorFlow has started (training
    in the same process has started them); a session carries its own, so `threads` holds
    whatever ran before.

    `caller_thread` runs every op in the calling thread (inter_op_parallelism_threads=-1)
    instead of handing each call to an inter-op pool thread: benchmarks ask for it, because
    that hand-off cost 0.02 to 0.2 ms a call on the 2-core project machine depending on what
    else ran (as much as the digits CNN itself), which is the scheduler's figure, not the
    model's, and was most of the SavedModel's p50 spread between runs. Intra-op threads
    (`threads`) still parallelize each op.
    """

    def __init__(self, path: Path, threads: int, signature: str = SIGNATURE, *, caller_thread: bool = False):
        from ..tfenv import import_tensorflow

        tf = import_tensorflow()
        self._name = f"SavedModel {path}"
        self._graph = tf.Graph()
        with self._graph.as_default():
            config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads,
                                              inter_op_parallelism_threads=-1 if caller_thread else 1)
            self._session = tf.compat.v1.Session(graph=self._graph, config=config)
            meta = tf.compat.v1.saved_model.loader.load(self._session, ["serve"], str(path))
        if signature not in meta.signature_def:
            self._session.close()
            raise DataError(f"{self._name} has no signature '{signature}' (it has: {sorted(meta.signature_def)})")
        # The SignatureDef proto (method name, dtypes, shapes): what a server checks requests against.
        self.signature_def = signature_def = meta.signature_def[signature]
        self.input_names = sorted(signature_def.inputs)
        self.output_names = sorted(signature_def.outputs)
        self._dtypes = {n: tf.dtypes.as_dtype(signature_def.inputs[n].dtype).as_numpy_dtype for n in self.input_names}
        # A callable skips run()'s per-call feed/fetch parsing: less overhead, less jitter.
        self._call = self._session.make_callable(
            [signature_def.outputs[n].name for n in self.output_names],
            feed_list=[signature_def.inputs[n].name for n in self.input_names],
        )

    def predict(self, inputs: Inputs) -> dict[str, Any]:
        """One call on the whole batch `inputs` (the benchmark picks its size)."""
        import numpy as np

        feeds = match_inputs(inputs, self.input_names, self._name)
        values = self._call(*(np.asarray(feeds[n], self._dtypes[n]) for n in self.input_names))
        return dict(zip(self.output_names, values))

    def close(self) -> None:
        self._session.close()
