"""Warmup records: the PredictionLog file TF Serving replays when it loads a model, written
from test samples and read back the way the server reads it.

The server (saved_model_warmup_util.cc, 2.19.0) reads MODEL/VERSION/assets.extra/
tf_serving_warmup_requests with TensorFlow's record reader, at most 1000 records, and runs
each predict_log's request through PreProcessPrediction: every signature input by name, no
other, in the signature's dtype. A record it would refuse fails the model's load, so each is
checked here the same way before it is run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...signature import SIGNATURE
from .bundle import MAX_WARMUP_RECORDS, WARMUP, BundleInvalid

if TYPE_CHECKING:
    import numpy as np


def write_warmup(version_dir: Path, model_name: str, samples: list[dict[str, np.ndarray]]) -> int:
    """One PredictionLog record per sample ({signature input: array [1, ...]}, the signature's
    dtypes), as the server reads them at load. Returns the record count."""
    from ...tfenv import import_tensorflow

    tf = import_tensorflow()
    from tensorflow_serving.apis import prediction_log_pb2

    path = version_dir / WARMUP
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for sample in samples:
            log = prediction_log_pb2.PredictionLog()
            request = log.predict_log.request
            request.model_spec.name, request.model_spec.signature_name = model_name, SIGNATURE
            for name in sorted(sample):
                request.inputs[name].CopyFrom(tf.make_tensor_proto(sample[name]))
            # deterministic=True sorts the inputs map: equal samples, equal bytes.
            writer.write(log.SerializeToString(deterministic=True))
    return len(samples)


def replay_warmup(session: Any, version_folder: Path, label: str) -> tuple[int, dict[str, np.ndarray]]:
    """(records, their outputs concatenated) of the warmup file; (0, {}) without one."""
    import numpy as np

    path = version_folder / WARMUP
    if not path.exists():
        return 0, {}
    parts: dict[str, list[np.ndarray]] = {}
    records = read_records(path, label)
    if len(records) > MAX_WARMUP_RECORDS:
        raise BundleInvalid(f"{label}: {len(records)} records, the server reads at most {MAX_WARMUP_RECORDS}")
    for i, record in enumerate(records, 1):
        feeds = warmup_feeds(record, session.signature_def, f"{label}: record {i}")
        for name, value in session.predict(feeds).items():
            parts.setdefault(name, []).append(value)
    return len(records), {name: np.concatenate(values).astype(np.float32) for name, values in parts.items()}


def read_records(path: Path, label: str) -> list[bytes]:
    """The TFRecord file's records, each length and CRC checked by TensorFlow's record reader
    (the server reads warmup files with the same C++ reader)."""
    from ...tfenv import import_tensorflow

    tf = import_tensorflow()
    records: list[bytes] = []
    try:
        for record in tf.compat.v1.io.tf_record_iterator(str(path)):
            records.append(record)
    except tf.errors.OpError as error:
        raise BundleInvalid(f"{label}: record {len(records) + 1} is unreadable ({error.message})") from None
    return records


def warmup_feeds(record: bytes, signature_def: Any, label: str) -> dict[str, np.ndarray]:
    """The record's PredictRequest as {input: array}, refused where the server would refuse it."""
    from google.protobuf.message import DecodeError
    from tensorflow_serving.apis import prediction_log_pb2

    from ...tfenv import import_tensorflow

    tf = import_tensorflow()
    log = prediction_log_pb2.PredictionLog()
    try:
        log.ParseFromString(record)
    except DecodeError:
        raise BundleInvalid(f"{label} is not a PredictionLog") from None
    if log.WhichOneof("log_type") != "predict_log":
        raise BundleInvalid(f"{label} is a {log.WhichOneof('log_type')}, not a predict_log")
    request = log.predict_log.request
    if request.model_spec.signature_name not in ("", SIGNATURE):
        raise BundleInvalid(f"{label} asks for signature '{request.model_spec.signature_name}', the bundle serves '{SIGNATURE}'")
    wanted, given = sorted(signature_def.inputs), sorted(request.inputs)
    if given != wanted:
        raise BundleInvalid(f"{label} feeds {given}, the signature takes {wanted}")
    feeds: dict[str, np.ndarray] = {}
    for name in wanted:
        tensor, info = request.inputs[name], signature_def.inputs[name]
        if tensor.dtype != info.dtype:
            got, want = (tf.dtypes.as_dtype(d).name if d else "invalid" for d in (tensor.dtype, info.dtype))
            raise BundleInvalid(f"{label}: input '{name}' is {got}, the signature wants {want}")
        try:
            array = tf.make_ndarray(tensor)
        except (ValueError, TypeError) as error:
            raise BundleInvalid(f"{label}: input '{name}' does not decode ({error})") from None
        want_shape = [d.size for d in info.tensor_shape.dim]
        fits = info.tensor_shape.unknown_rank or (
            len(want_shape) == array.ndim and all(w in (-1, g) for w, g in zip(want_shape, array.shape))
        )
        if not fits:
            raise BundleInvalid(f"{label}: input '{name}' has shape {list(array.shape)}, the signature wants {want_shape}")
        feeds[name] = array
    if len({a.shape[0] if a.ndim else None for a in feeds.values()}) > 1:
        raise BundleInvalid(f"{label}: inputs have different batch sizes")
    return feeds
