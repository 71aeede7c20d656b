"""TF Serving's REST row format, written and read back (NumPy only, no TensorFlow)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfbuild.formats.serving.bundle import BundleInvalid
from tfbuild.formats.serving.rest import read_rows, request_text, response_text


def test_one_input_is_a_bare_value_several_are_objects(tmp_path):
    one = json.loads(request_text({"x": np.array([[1, 2], [3, 4]], np.int32)}))
    assert one == {"signature_name": "serving_default", "instances": [[1, 2], [3, 4]]}
    two = json.loads(request_text({"b": np.array([True, False]), "a": np.array([[0.1], [2.0]], np.float32)}))
    assert two["instances"] == [{"a": [0.1], "b": True}, {"a": [2.0], "b": False}]


def test_floats_are_written_short_and_read_back_exactly(tmp_path):
    values = np.array([[0.1, 1 / 3, 1e-8, -2.5e7, np.nan, np.inf]], np.float32)
    text = response_text({"y": values})
    assert "0.1," in text and "0.33333334" in text and "NaN" in text and "Infinity" in text
    (tmp_path / "r.json").write_text(text)
    back = read_rows(tmp_path / "r.json", "predictions", {"y": np.float32}, "serving/r.json")["y"]
    np.testing.assert_array_equal(back, values)  # NaN == NaN here: bit-exact round trip


def test_per_sample_scalars_and_several_outputs(tmp_path):
    outputs = {"score": np.array([0.5, 0.25], np.float32), "label": np.array([3, 7], np.int64)}
    body = json.loads(response_text(outputs))
    assert body == {"predictions": [{"label": 3, "score": 0.5}, {"label": 7, "score": 0.25}]}
    (tmp_path / "r.json").write_text(json.dumps(body))
    back = read_rows(tmp_path / "r.json", "predictions", {"score": np.float32, "label": np.int64}, "serving/r.json")
    assert back["label"].dtype == np.int64 and back["label"].tolist() == [3, 7]


@pytest.mark.parametrize(
    "body, message",
    [
        ("{", "serving/request.json: not a readable JSON body"),
        ('{"instances": []}', "serving/request.json: wants a non-empty 'instances' list"),
        ('{"signature_name": "other", "instances": [[1]]}', "serving/request.json: signature_name is 'other'"),
        ('{"instances": [[1.5, 2]]}', "serving/request.json: 'ids' is int32 and holds float64 values"),
        ('{"instances": [[1, 2], [3]]}', "serving/request.json: 'ids' holds rows of different shapes"),
        ('{"instances": [{"tokens": [1, 2]}]}', "serving/request.json: instances[0] names ['tokens'], the signature has ['ids']"),
    ],
)  # fmt: skip
def test_bodies_the_server_refuses_are_refused(tmp_path, body, message):
    (tmp_path / "request.json").write_text(body)
    with pytest.raises(BundleInvalid) as failure:
        read_rows(tmp_path / "request.json", "instances", {"ids": np.int32}, "serving/request.json")
    assert str(failure.value).startswith(message), str(failure.value)
