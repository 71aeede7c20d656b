"""Verifying a TF Serving bundle with no server binary: what the server reads is read with its
protos and held to its rules; what it runs is run the way it runs it.

1. models.config (and batching_parameters.txt) parse as TF Serving's config protos and agree
   with the folders: the model's folder, base_path ending in it, the served version's folder.
2. That version loads with the `serve` tag in a TF1 session, as the server's SavedModelBundle
   loads it, and answers the test inputs.
3. Its serving_default is a Predict signature whose tensors the REST and gRPC APIs carry.
4. Every warmup record replays: the PredictRequest is checked against the signature as the
   server's PreProcessPrediction checks it (input names, dtypes, shapes), decoded with
   tf.make_ndarray, and run.
5. request.json, replayed, gives expected_response.json within the tolerance.

Not proven here: the server binary's own kernels and flags, version skew between the server
and the TensorFlow that wrote the SavedModel, the HTTP layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ...signature import SIGNATURE
from .bundle import BATCHING, CONFIG, PLATFORM, REQUEST, RESPONSE, WARMUP, BundleInvalid, safe_name
from .rest import REST_DTYPES, read_rows
from .warmup import replay_warmup

if TYPE_CHECKING:
    import numpy as np

PREDICT_METHOD = "tensorflow/serving/predict"
BUNDLE_RUNTIME = "TF Serving bundle (serve tag, Predict)"
DEFAULT_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Served:
    name: str
    version: int
    folder: Path  # the version folder the server loads


def verify_bundle(path: Path, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Runtime label -> outputs: the bundle on `inputs`, then its warmup records and its
    request.json replayed (their first rows are the first test samples). Raises BundleInvalid."""
    from ...runtimes.feeds import sample_count

    folder = Path(path)
    served = read_models_config(folder)
    check_batching(folder)
    session = load(served, folder)
    try:
        check_signature(session.signature_def, _label(folder, served.folder))
        outputs = predict_rows(session, inputs, _label(folder, served.folder))
        runs = {BUNDLE_RUNTIME: outputs}
        n = sample_count(dict(inputs), "the test inputs")
        count, warm = replay_warmup(session, served.folder, _label(folder, served.folder / WARMUP))
        if count:
            runs[f"warmup replay ({min(count, n)} records)"] = {k: v[:n] for k, v in warm.items()}
        replayed = replay_request(session, folder, _tolerance(params))
        shown = min(n, len(next(iter(replayed.values()))))
        runs[f"REST {REQUEST} ({shown} instances)"] = {k: v[:shown] for k, v in replayed.items()}
        return runs
    finally:
        session.close()


def _label(folder: Path, path: Path) -> str:
    return f"{folder.name}/{path.relative_to(folder).as_posix()}" if path != folder else folder.name


def _tolerance(params: Mapping[str, Any]) -> float:
    bound = (params.get("tolerance") or {}).get("max_abs_diff")
    return DEFAULT_TOLERANCE if bound is None else float(bound)


def read_models_config(folder: Path) -> Served:
    """The one model models.config serves, checked against the folders as the server would
    find them. Raises BundleInvalid naming models.config."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    label = _label(folder, folder / CONFIG)
    try:
        text = (folder / CONFIG).read_text(encoding="utf-8")
        config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except (OSError, UnicodeDecodeError) as error:
        raise BundleInvalid(f"{label}: cannot be read ({error})") from None
    except text_format.ParseError as error:
        raise BundleInvalid(f"{label}: not a text-format ModelServerConfig ({error})") from None
    models = config.model_config_list.config
    if config.WhichOneof("config") != "model_config_list" or len(models) != 1:
        raise BundleInvalid(f"{label}: wants a model_config_list of exactly one model (the bundle holds one)")
    model = models[0]
    if not safe_name(model.name) or not (folder / model.name).is_dir():
        raise BundleInvalid(f"{label}: model name '{model.name}' has no folder {folder.name}/{model.name}")
    if not (model.base_path.startswith("/") or "://" in model.base_path):
        raise BundleInvalid(f"{label}: base_path '{model.base_path}' is relative; the server wants an absolute path or URI")
    if model.base_path.rstrip("/").rsplit("/", 1)[-1] != model.name:
        raise BundleInvalid(f"{label}: base_path '{model.base_path}' does not end in the model's folder '{model.name}'")
    if model.model_platform != PLATFORM:
        raise BundleInvalid(f"{label}: model_platform is '{model.model_platform}', the bundle holds a '{PLATFORM}' SavedModel")
    version = _served_version(model, folder / model.name, label)
    version_folder = _version_folders(folder / model.name)[version]
    if not (version_folder / "saved_model.pb").is_file():
        raise BundleInvalid(f"{_label(folder, version_folder)}: no saved_model.pb (the server serves version {version} from it)")
    return Served(model.name, version, version_folder)


def _version_folders(model_folder: Path) -> dict[int, Path]:
    """Version -> folder, as the server's file-system source finds them (all-digit names)."""
    return {int(p.name): p for p in model_folder.iterdir() if p.is_dir() and p.name.isdigit()}


def _served_version(model: Any, model_folder: Path, label: str) -> int:
    """The highest version the model_version_policy serves; each one it names must exist."""
    found = _version_folders(model_folder)
    policy = model.model_version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "specific":
        missing = [v for v in policy.specific.versions if v not in found]
        if missing or not policy.specific.versions:
            raise BundleInvalid(f"{label}: version {missing[0] if missing else '(none)'} has no folder under {model_folder.name}/")
        return max(policy.specific.versions)
    if not found:
        raise BundleInvalid(f"{label}: {model_folder.name}/ has no version folder (a positive integer) to serve")
    return max(found)  # latest (of any count) and all both serve the highest


def check_batching(folder: Path) -> None:
    """batching_parameters.txt, when present, parses and holds to the server's rules."""
    from google.protobuf import text_format

    from .batching import batching_problem, parse_batching

    path = folder / BATCHING
    if not path.exists():
        return
    label = _label(folder, path)
    try:
        message = parse_batching(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, text_format.ParseError) as error:
        raise BundleInvalid(f"{label}: not a text-format BatchingParameters ({error})") from None
    problem = batching_problem(message)
    if problem:
        raise BundleInvalid(f"{label}: {problem}")


def load(served: Served, folder: Path) -> Any:
    """The version folder in a TF1 session with the serve tag, as the server loads it."""
    from ...runtimes.savedmodel import SavedModelSession

    try:
        return SavedModelSession(served.folder, threads=0)
    except Exception as error:  # noqa: BLE001 -- whatever TF says, said on one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BundleInvalid(f"{_label(folder, served.folder)}: does not load with the serve tag ({first})") from None


def check_signature(signature_def: Any, label: str) -> None:
    """serving_default is a Predict signature with named tensors REST and gRPC can carry."""
    from ...tfenv import import_tensorflow

    tf = import_tensorflow()
    if signature_def.method_name != PREDICT_METHOD:
        raise BundleInvalid(f"{label}: {SIGNATURE} has method_name '{signature_def.method_name}', Predict wants {PREDICT_METHOD}")
    for kind, tensors in (("input", signature_def.inputs), ("output", signature_def.outputs)):
        if not tensors:
            raise BundleInvalid(f"{label}: {SIGNATURE} has no {kind}s")
        for name, info in sorted(tensors.items()):
            dtype = tf.dtypes.as_dtype(info.dtype).name if info.dtype else "invalid"
            if not name or not info.name:
                raise BundleInvalid(f"{label}: {SIGNATURE} has an {kind} with no name")
            if dtype not in REST_DTYPES:
                raise BundleInvalid(f"{label}: {kind} '{name}' is {dtype}, which TF Serving's REST API cannot carry")


def check_batched(outputs: Mapping[str, Any], rows: int, label: str) -> None:
    """Every output has one row per input sample: TF Serving's row-format answer needs it."""
    import numpy as np

    for name, value in outputs.items():
        if np.ndim(value) == 0 or len(value) != rows:
            raise BundleInvalid(f"{label}: output '{name}' has no batch dimension, which TF Serving's row format needs")


def predict_rows(session: Any, inputs: Mapping[str, Any], label: str) -> dict[str, np.ndarray]:
    """The session on every sample of `inputs`, in batches, as float32 (what verify compares)."""
    import numpy as np

    from ...runtimes.feeds import batch_size, batches, match_inputs, sample_count

    feeds = match_inputs(dict(inputs), session.input_names, label)
    n = sample_count(feeds, label)
    parts: dict[str, list[np.ndarray]] = {}
    for rows in batches(n, batch_size(feeds)):
        outputs = session.predict({k: x[rows] for k, x in feeds.items()})
        check_batched(outputs, rows.stop - rows.start, label)
        for name, value in outputs.items():
            parts.setdefault(name, []).append(value)
    return {name: np.concatenate(values).astype(np.float32) for name, values in parts.items()}


def numpy_dtypes(tensors: Mapping[str, Any]) -> dict[str, Any]:
    """{name: NumPy dtype} of a SignatureDef's inputs or outputs."""
    from ...tfenv import import_tensorflow

    tf = import_tensorflow()
    return {name: tf.dtypes.as_dtype(info.dtype).as_numpy_dtype for name, info in tensors.items()}


def replay_request(session: Any, folder: Path, tolerance: float) -> dict[str, np.ndarray]:
    """request.json run on the session, held to expected_response.json; the outputs as float32."""
    import numpy as np

    signature = session.signature_def
    inputs = read_rows(folder / REQUEST, "instances", numpy_dtypes(signature.inputs), _label(folder, folder / REQUEST))
    outputs = session.predict(inputs)
    label = _label(folder, folder / RESPONSE)
    expected = read_rows(folder / RESPONSE, "predictions", numpy_dtypes(signature.outputs), label)
    for name, want in expected.items():
        got = np.asarray(outputs[name])
        if got.shape != want.shape:
            raise BundleInvalid(f"{label}: '{name}' has shape {list(want.shape)}, the replay of {REQUEST} gives {list(got.shape)}")
        if want.dtype.kind in "fc":
            got64, want64 = got.astype(np.float64), want.astype(np.float64)
            # NaN where both say NaN is agreement; NaN on one side only is the worst difference.
            diff = np.where(np.isnan(got64) & np.isnan(want64), 0.0, np.abs(got64 - want64))
            worst = float(np.max(np.nan_to_num(diff, nan=np.inf), initial=0.0))
            if not worst <= tolerance:
                raise BundleInvalid(f"{label}: '{name}' differs from the replay of {REQUEST} by {worst:.1e} (tolerance {tolerance:.0e})")
        elif not np.array_equal(got, want):
            raise BundleInvalid(f"{label}: '{name}' differs from the replay of {REQUEST}")
    return {name: np.asarray(value).astype(np.float32) for name, value in outputs.items()}
