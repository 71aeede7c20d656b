"""The TF Serving bundle, built by the real step from tiny real models and verified the way the
server reads and runs it: a two-input/two-output model (REST objects by name) and a one-input
int32 classifier (bare REST values, JSON integers). Broken bundles fail on one line naming
the file; equal inputs give equal bytes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tfbuild.datasets.split import Split
from tfbuild.errors import DataError
from tfbuild.formats.serving import SERVING, BundleInvalid, ServingStep
from tfbuild.formats.serving.batching import parse_batching
from tfbuild.formats.serving.bundle import WARMUP
from tfbuild.formats.serving.verify import check_signature
from tfbuild.runtimes.savedmodel import SavedModelSession, run_saved_model
from tfbuild.tfenv import import_tensorflow

from tests.integration.multi_io import (
    TOKEN_TARGETS, TWO_IO_TARGETS, save_serving, step_context, token_inputs, token_model, two_io_inputs,
    two_io_model, write_split,
)  # fmt: skip

pytestmark = pytest.mark.slow
SAMPLES = {"train": 8, "validation": 4, "test": 12}
TOLERANCE = {"tolerance": {"max_abs_diff": 1e-5}}
BATCHING = {"max_batch_size": 8, "batch_timeout_micros": 2000, "allowed_batch_sizes": [4, 8]}


def params(name: str, **overrides) -> dict:
    return {"model_name": name, "version": 1, "warmup_samples": 5, "samples": 3, "models_dir": "/models",
            "batching": None, **overrides}  # fmt: skip


def build(root: Path, out: Path, step_params: dict) -> dict:
    ctx = step_context(step_params, {"saved_model": root / "saved_model", "data": root / "split"}, out, role="serving")
    return ServingStep().run(ctx)


def made(tmp_path_factory, name: str, model, inputs_of, targets, **overrides) -> dict:
    root = tmp_path_factory.mktemp(name)
    save_serving(model, root / "saved_model")
    write_split(root / "split", inputs_of, targets, SAMPLES)
    info = build(root, root / "out" / "serving", params(name, **overrides))
    x = {k: np.asarray(v) for k, v in Split(root / "split").inputs("test").items()}
    return {"root": root, "bundle": root / "out" / "serving", "info": info, "x": x,
            "reference": run_saved_model(root / "saved_model", x)}  # fmt: skip


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    return made(tmp_path_factory, "multi", two_io_model(), two_io_inputs, TWO_IO_TARGETS, batching=BATCHING)


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    # More warmup and request samples than the test split holds: capped, and said so.
    return made(tmp_path_factory, "tokens", token_model(), token_inputs, TOKEN_TARGETS, warmup_samples=20, samples=30)


def test_layout_and_config_protos(multi, tokens):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    bundle = multi["bundle"]
    assert multi["info"]["files"] == [
        "batching_parameters.txt", "expected_response.json", "models.config", f"multi/1/{WARMUP}",
        "multi/1/fingerprint.pb", "multi/1/saved_model.pb", "multi/1/variables/variables.data-00000-of-00001",
        "multi/1/variables/variables.index", "request.json",
    ]  # fmt: skip
    # The SavedModel is copied byte for byte.
    assert (bundle / "multi/1/saved_model.pb").read_bytes() == (multi["root"] / "saved_model/saved_model.pb").read_bytes()
    config = text_format.Parse((bundle / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == ("multi", "/models/multi", "tensorflow")
    assert list(model.model_version_policy.specific.versions) == [1]
    batching = parse_batching((bundle / "batching_parameters.txt").read_text())
    assert batching.max_batch_size.value == 8 and batching.batch_timeout_micros.value == 2000
    assert list(batching.allowed_batch_sizes) == [4, 8] and not batching.HasField("num_batch_threads")
    assert "--batching_parameters_file=/models/batching_parameters.txt" in multi["info"]["docker"]
    assert multi["info"]["curl"] == "curl -s -d @request.json http://localhost:8501/v1/models/multi:predict"
    # No batching asked: no batching file, no batching flags.
    assert not (tokens["bundle"] / "batching_parameters.txt").exists()
    assert "--enable_batching" not in tokens["info"]["docker"]
    assert tokens["info"]["warmup_records"] == 12 and tokens["info"]["request_instances"] == 12
    assert tokens["info"]["notes"] == [
        "export.serving.warmup_samples=20 capped by the test split's 12 samples",
        "export.serving.samples=30 capped by the test split's 12 samples",
    ]


def test_warmup_records_are_predict_requests_of_the_test_samples(multi):
    from tensorflow_serving.apis import prediction_log_pb2

    tf = import_tensorflow()
    records = list(tf.data.TFRecordDataset(str(multi["bundle"] / "multi/1" / WARMUP)).as_numpy_iterator())
    assert len(records) == multi["info"]["warmup_records"] == 5
    for i, record in enumerate(records):
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        assert (request.model_spec.name, request.model_spec.signature_name) == ("multi", "serving_default")
        assert sorted(request.inputs) == ["image", "meta"]
        np.testing.assert_array_equal(tf.make_ndarray(request.inputs["meta"]), multi["x"]["meta"][i : i + 1])


@pytest.mark.parametrize("case", ["multi", "tokens"])
def test_verify_replays_everything_and_agrees_with_the_reference(case, request):
    built = request.getfixturevalue(case)
    runs = SERVING.verify(built["bundle"], built["x"], TOLERANCE)
    records, instances = min(built["info"]["warmup_records"], 12), built["info"]["request_instances"]
    assert list(runs) == [
        "TF Serving bundle (serve tag, Predict)", f"warmup replay ({records} records)", f"REST request.json ({instances} instances)",
    ]  # fmt: skip
    reference = built["reference"]
    for outputs in runs.values():
        assert sorted(outputs) == sorted(reference)
        for name, ref in reference.items():
            rows = len(outputs[name])
            assert outputs[name].dtype == np.float32
            np.testing.assert_allclose(outputs[name], ref[:rows], atol=1e-6)


def test_rest_bodies_follow_the_servers_row_format(multi, tokens):
    body = json.loads((multi["bundle"] / "request.json").read_text())
    assert body["signature_name"] == "serving_default" and len(body["instances"]) == 3
    assert sorted(body["instances"][0]) == ["image", "meta"]  # several inputs: objects by name
    assert np.asarray(body["instances"][0]["image"]).shape == (8, 8, 1)
    np.testing.assert_array_equal(np.asarray(body["instances"][1]["meta"], np.float32), multi["x"]["meta"][1])
    predictions = json.loads((multi["bundle"] / "expected_response.json").read_text())["predictions"]
    assert sorted(predictions[0]) == ["digit", "size"] and len(predictions[0]["digit"]) == 10

    body = json.loads((tokens["bundle"] / "request.json").read_text())
    first = body["instances"][0]  # one input: the bare value, int32 as JSON integers
    assert isinstance(first, list) and all(isinstance(v, int) for v in first) and len(first) == 5
    predictions = json.loads((tokens["bundle"] / "expected_response.json").read_text())["predictions"]
    assert isinstance(predictions[0], list) and len(predictions[0]) == 3  # one output: bare values
    np.testing.assert_allclose(np.asarray(predictions, np.float32), tokens["reference"]["probs"], atol=1e-6)


def test_same_inputs_give_identical_bytes(multi, tmp_path):
    build(multi["root"], tmp_path / "serving", params("multi", batching=BATCHING))
    files = multi["info"]["files"]
    for name in files:
        assert (tmp_path / "serving" / name).read_bytes() == (multi["bundle"] / name).read_bytes(), name


# --- broken bundles: each fails with one line naming the file -----------------------------


def broken(built: dict, tmp_path: Path, edit) -> str:
    bundle = tmp_path / "serving"
    shutil.copytree(built["bundle"], bundle)
    edit(bundle)
    with pytest.raises(BundleInvalid) as failure:
        SERVING.verify(bundle, built["x"], TOLERANCE)
    message = str(failure.value)
    assert "\n" not in message and message.startswith("serving/"), message
    return message


def flip_byte(bundle: Path) -> None:
    path = bundle / "multi/1" / WARMUP
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(bundle: Path) -> None:
    path = bundle / "multi/1" / WARMUP
    path.write_bytes(path.read_bytes()[:-7])


def rename_input(bundle: Path) -> None:
    from tensorflow_serving.apis import prediction_log_pb2

    tf = import_tensorflow()
    path = bundle / "multi/1" / WARMUP
    records = list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
    log = prediction_log_pb2.PredictionLog.FromString(records[2])
    inputs = log.predict_log.request.inputs
    inputs["metadata"].CopyFrom(inputs["meta"])
    del inputs["meta"]
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records[:2] + [log.SerializeToString()] + records[3:]:
            writer.write(record)


def edit_text(name: str, old: str, new: str):
    def edit(bundle: Path) -> None:
        path = bundle / name
        assert old in path.read_text()
        path.write_text(path.read_text().replace(old, new, 1))

    return edit


def move_version(bundle: Path) -> None:
    (bundle / "multi/1").rename(bundle / "multi/2")


def shift_response(bundle: Path) -> None:
    path = bundle / "expected_response.json"
    body = json.loads(path.read_text())
    body["predictions"][1]["size"][0] += 0.5
    path.write_text(json.dumps(body))


@pytest.mark.parametrize(
    "edit, expected",
    [
        (flip_byte, f"serving/multi/1/{WARMUP}: record 3 is unreadable (corrupted record"),
        (truncate, f"serving/multi/1/{WARMUP}: record 5 is unreadable (truncated record"),
        (rename_input, f"serving/multi/1/{WARMUP}: record 3 feeds ['image', 'metadata'], the signature takes ['image', 'meta']"),
        (edit_text("models.config", "model_config_list {", "model_config_list"), "serving/models.config: not a text-format ModelServerConfig"),
        (edit_text("models.config", 'name: "multi"', 'name: "other"'), "serving/models.config: model name 'other' has no folder serving/other"),
        (edit_text("models.config", '"/models/multi"', '"/models/other"'), "serving/models.config: base_path '/models/other' does not end in the model's folder 'multi'"),
        (move_version, "serving/models.config: version 1 has no folder under multi/"),
        (edit_text("batching_parameters.txt", "allowed_batch_sizes: 8", "allowed_batch_sizes: 6"), "serving/batching_parameters.txt: allowed_batch_sizes must end with max_batch_size (8), got [4, 6]"),
        (edit_text("batching_parameters.txt", "max_batch_size {", "max_batch_size: {{"), "serving/batching_parameters.txt: not a text-format BatchingParameters"),
        (shift_response, "serving/expected_response.json: 'size' differs from the replay of request.json by 5.0e-01"),
        (edit_text("request.json", '"meta"', '"metadata"'), "serving/request.json: instances[0] names ['image', 'metadata'], the signature has ['image', 'meta']"),
    ],
    ids=["flipped", "truncated", "wrong-input", "bad-proto", "wrong-name", "wrong-base-path", "no-version", "batch-sizes", "bad-batching", "response", "request"],
)  # fmt: skip
def test_broken_bundle_fails_on_one_line(multi, tmp_path, edit, expected):
    message = broken(multi, tmp_path, edit)
    assert message.startswith(expected), message


def test_signatures_predict_cannot_serve_are_refused(multi):
    session = SavedModelSession(multi["bundle"] / "multi/1", threads=1)
    signature = session.signature_def
    session.close()
    check_signature(signature, "serving/multi/1")
    classify = type(signature)()
    classify.CopyFrom(signature)
    classify.method_name = "tensorflow/serving/classify"
    with pytest.raises(BundleInvalid, match="serving/multi/1: serving_default has method_name 'tensorflow/serving/classify', Predict wants"):
        check_signature(classify, "serving/multi/1")


def test_the_step_refuses_a_tensor_rest_cannot_carry(multi, tmp_path):
    tf = import_tensorflow()

    class Half(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="meta")])
        def serve(self, meta):
            return {"half": tf.cast(meta, tf.float16)}

    half = Half()
    tf.saved_model.save(half, str(tmp_path / "saved_model"), signatures={"serving_default": half.serve})
    shutil.copytree(multi["root"] / "split", tmp_path / "split")
    with pytest.raises(DataError, match=r"^serving/half/1: output 'half' is float16, which TF Serving's REST API cannot carry$"):
        build(tmp_path, tmp_path / "out" / "serving", params("half"))
