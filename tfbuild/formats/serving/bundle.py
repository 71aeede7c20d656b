"""Writing a TF Serving bundle: its layout, and every file in it besides the SavedModel.

    serving/
      models.config             text ModelServerConfig: one model, base_path MODELS_DIR/MODEL
      batching_parameters.txt   text BatchingParameters (only when export.serving.batching is set)
      request.json              a REST :predict body: the first test samples
      expected_response.json    the server's answer to it (the bundled SavedModel, run)
      MODEL/VERSION/            the SavedModel, byte for byte, plus
      MODEL/VERSION/assets.extra/tf_serving_warmup_requests
                                TFRecord of PredictionLog{predict_log{request}}: one test sample
                                each, replayed by the server when it loads the model

Every file is a pure function of the SavedModel, the test split and the settings: the
records are serialized deterministically and the texts are sorted, so equal inputs give
equal bytes. Imports TensorFlow and protobuf inside functions only.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    import numpy as np

CONFIG = "models.config"
BATCHING = "batching_parameters.txt"
REQUEST = "request.json"
RESPONSE = "expected_response.json"
WARMUP = "assets.extra/tf_serving_warmup_requests"  # saved_model_warmup_util.h's path
MAX_WARMUP_RECORDS = 1000  # WarmupConsts::kMaxNumRecords: the server refuses more
PLATFORM = "tensorflow"
REST_PORT = 8501  # tensorflow/serving's Docker image serves REST here
SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class BundleInvalid(Exception):
    """A file of the bundle is not what TF Serving would accept; the message is one line
    naming the file."""


def safe_name(name: str) -> bool:
    """A name usable as one path segment: the model's folder, and a part of the server's URL."""
    return bool(SAFE_NAME.fullmatch(name)) and name not in (".", "..")


def base_path(models_dir: str, model_name: str) -> str:
    """Where the server finds the model's version folders: MODELS_DIR/MODEL."""
    return f"{models_dir.rstrip('/')}/{model_name}"


def copy_saved_model(source: Path, target: Path) -> None:
    """The SavedModel's bytes under `target` (no timestamps or modes carried: only content
    enters the cache's digests). A warmup file it brought is dropped: the bundle writes its own."""
    shutil.copytree(source, target, copy_function=shutil.copyfile)
    (target / WARMUP).unlink(missing_ok=True)


def models_config_text(model_name: str, models_dir: str, version: int) -> str:
    """models.config: one model at MODELS_DIR/MODEL, pinned to the bundled version."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name, model.base_path, model.model_platform = model_name, base_path(models_dir, model_name), PLATFORM
    # The version that was verified, not whatever folder appears next to it later.
    model.model_version_policy.specific.versions.append(version)
    head = (
        f"# base_path is where the server sees this folder: mount it at {models_dir}\n"
        f"# ({docker_command(models_dir, False)}).\n"
    )
    return head + text_format.MessageToString(config)


def docker_command(models_dir: str, batching: bool) -> str:
    """The command, run in this folder, that serves it with tensorflow/serving's image."""
    flags = f" --enable_batching --batching_parameters_file={models_dir.rstrip('/')}/{BATCHING}" if batching else ""
    return (
        f'docker run --rm -p {REST_PORT}:{REST_PORT} -v "$PWD:{models_dir}" tensorflow/serving '
        f"--model_config_file={models_dir.rstrip('/')}/{CONFIG}{flags}"
    )


def curl_command(model_name: str) -> str:
    """The smoke test, run in this folder while the server runs."""
    return f"curl -s -d @{REQUEST} http://localhost:{REST_PORT}/v1/models/{model_name}:predict"


def bundle_files(folder: Path) -> list[str]:
    """Every file under `folder`, relative, sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def samples_of(inputs: Mapping[str, np.ndarray], count: int) -> list[dict[str, np.ndarray]]:
    """The first `count` samples, each as {name: array [1, ...]}."""
    return [{name: x[i : i + 1] for name, x in inputs.items()} for i in range(count)]


def write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def write_config_files(folder: Path, settings: Mapping[str, Any]) -> None:
    """models.config and, when batching is set, batching_parameters.txt."""
    from .batching import batching_text

    write_text(folder / CONFIG, models_config_text(settings["model_name"], settings["models_dir"], settings["version"]))
    if settings["batching"] is not None:
        head = "# --enable_batching --batching_parameters_file=<this file>; unset fields keep the server's defaults\n"
        write_text(folder / BATCHING, head + batching_text(settings["batching"]))


def build_bundle(saved_model: Path, split_dir: Path, out: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """The whole bundle in `out` (the step's private output folder); returns the step's info.
    A signature the server could not serve, or no test sample to write, is a DataError."""
    import numpy as np

    from ...datasets.split import Split
    from ...errors import DataError
    from ...runtimes.feeds import match_inputs
    from ...runtimes.savedmodel import SavedModelSession
    from .rest import WRITABLE_KINDS, request_text, response_text
    from .verify import check_batched, check_signature, numpy_dtypes
    from .warmup import write_warmup

    name, version = params["model_name"], params["version"]
    split = Split(split_dir)
    available = split.count("test")
    if available == 0:
        raise DataError("serving: the test split is empty; warmup records and request.json are written from test samples")
    version_dir = out / name / str(version)
    copy_saved_model(saved_model, version_dir)
    session = SavedModelSession(version_dir, threads=0)
    try:
        label = f"serving/{name}/{version}"
        try:
            check_signature(session.signature_def, label)
        except BundleInvalid as error:  # the user's model, not a broken file: bad input
            raise DataError(str(error)) from None
        dtypes = numpy_dtypes(session.signature_def.inputs)
        every = {**dtypes, **numpy_dtypes(session.signature_def.outputs)}
        unwritable = [n for n, d in every.items() if np.dtype(d).kind not in WRITABLE_KINDS]
        if unwritable:
            raise DataError(f"serving: tensor '{unwritable[0]}' is not numeric; tfbuild writes warmup and REST requests from numeric test data only")
        warm, count = min(params["warmup_samples"], available), min(params["samples"], available)
        given = match_inputs(split.inputs("test", max(warm, count)), session.input_names, "the served SavedModel")
        test = {n: np.asarray(x, dtypes[n]) for n, x in given.items()}  # the signature's dtypes, as a client sends
        records = write_warmup(version_dir, name, samples_of(test, warm)) if warm else 0
        request = {n: x[:count] for n, x in test.items()}
        outputs = session.predict(request)
        try:
            check_batched(outputs, count, label)
        except BundleInvalid as error:
            raise DataError(str(error)) from None
    finally:
        session.close()
    write_text(out / REQUEST, request_text(request))
    write_text(out / RESPONSE, response_text(outputs))
    write_config_files(out, params)
    notes = [
        f"export.serving.{key}={params[key]} capped by the test split's {available} samples"
        for key in ("warmup_samples", "samples") if params[key] > available
    ]  # fmt: skip
    batching = params["batching"] is not None
    return {
        "model_name": name, "version": version, "warmup_records": records, "request_instances": count,
        "base_path": base_path(params["models_dir"], name), "batching": batching, "notes": notes,
        "files": bundle_files(out), "docker": docker_command(params["models_dir"], batching),
        "curl": curl_command(name), "summary": f"{name} v{version}, {records} warmup records",
    }  # fmt: skip
