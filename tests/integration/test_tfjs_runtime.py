"""The TF.js runtime itself (Node, wasm and cpu backends): what verification rests on.

Parity of every TF.js variant with the SavedModel, and a broken shard being caught, are
checked through the build in test_verify.py; here: the runner's own contract, on a tiny
two-input two-output model converted by the real tfjs step.
"""

from __future__ import annotations

import numpy as np
import pytest

from tfbuild.runtimes.timing import Protocol
from tfbuild.runtimes.tfjs_node import TfjsRuntimeError, node_problem, run_tfjs, time_limit

from tests.integration.multi_io import save_serving, step_context, two_io_inputs, two_io_model

# Without Node or `make setup`, the runtime tests say why in the skip reason (pytest -ra).
NODE_PROBLEM = node_problem()
needs_node = pytest.mark.skipif(NODE_PROBLEM is not None, reason=str(NODE_PROBLEM))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(TF.js folder, 300 samples: more than one batch, SavedModel outputs on them)."""
    from tfbuild.runtimes.savedmodel import run_saved_model
    from tfbuild.formats.tfjs import TfjsStep

    root = tmp_path_factory.mktemp("tfjs")
    save_serving(two_io_model(), root / "saved_model")
    TfjsStep().run(step_context({"quantization": "none"}, {"saved_model": root / "saved_model"}, root / "tfjs"))
    x = two_io_inputs(300, seed=3)
    return root / "tfjs", x, run_saved_model(root / "saved_model", x)


@pytest.mark.slow
@needs_node
def test_both_backends_run_in_batches_by_name_and_report_timings(converted):
    folder, x, reference = converted
    run = run_tfjs(folder, x, ["cpu", "wasm"], bench=(Protocol(1, 3, 0.0, rounds=3), 4))
    assert run.version == "4.22.0" and run.batch_size == 256  # 300 samples: two calls
    for backend in ("cpu", "wasm"):
        outputs = run.outputs[backend]
        assert {k: (v.shape, v.dtype) for k, v in outputs.items()} == {
            "digit": ((300, 10), np.float32), "size": ((300, 1), np.float32),
        }  # fmt: skip
        for name in ("digit", "size"):  # the second batch lands after the first, in order
            np.testing.assert_allclose(outputs[name], reference[name], atol=1e-5)
        assert set(run.timings[backend]) == {"load_ms", "predict_ms"} and run.timings[backend]["predict_ms"] > 0
        # Three rounds of one call at batch 1 and one at the bench batch.
        assert [len(r) for r in run.latency_rounds[backend]] == [len(r) for r in run.batch_rounds[backend]] == [1, 1, 1]
    # Same weights, two kernels' implementations: far closer to each other than to TensorFlow.
    assert float(np.abs(run.outputs["cpu"]["digit"] - run.outputs["wasm"]["digit"]).max()) < 1e-5


@pytest.mark.slow
@needs_node
def test_a_run_past_its_time_limit_is_one_line_naming_the_work(converted):
    folder, x, _ = converted
    with pytest.raises(TfjsRuntimeError) as caught:
        run_tfjs(folder, x, ["cpu"], timeout_s=0.01)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("TF.js (cpu) did not finish 300 samples of ")
    assert "within 0.01 s" in message and "verify.tfjs_backends=[wasm]" in message


def test_the_time_limit_grows_with_samples_model_size_and_backend():
    mobilenet = dict(input_values=224 * 224 * 3, weights=14_000_000, bench=None)
    wasm_256 = time_limit(256, backends=["wasm"], **mobilenet)
    # Measured here: 256 samples in 11 s on wasm; the limit leaves a loaded machine room.
    assert 100 < wasm_256 < 300
    assert time_limit(512, backends=["wasm"], **mobilenet) > wasm_256
    assert time_limit(256, backends=["cpu"], **mobilenet) > 10 * wasm_256  # cpu: ~50x slower here
    tiny = time_limit(256, 64, 10_000, ["wasm"], None)
    assert tiny < wasm_256 and tiny < 70
    assert time_limit(256, 64, 10_000, ["wasm"], (Protocol(50, 50, 0.2), 32)) > tiny


def test_node_problem_names_the_missing_node_and_the_fix():
    message = node_problem("tfbuild-no-such-node")
    assert message is not None and "\n" not in message
    assert "Node.js not found" in message and "tfbuild-no-such-node" in message
    assert "make setup" in message and "18" in message and "verify.enabled=false" in message


def test_run_tfjs_with_unusable_node_raises_the_same_message(tmp_path):
    with pytest.raises(TfjsRuntimeError, match="Node.js not found"):
        run_tfjs(tmp_path, {"inputs": np.zeros((1, 8, 8, 1), np.float32)}, ["cpu"], node="tfbuild-no-such-node")


@needs_node
def test_folder_without_model_json_is_a_one_line_error(tmp_path):
    with pytest.raises(TfjsRuntimeError) as caught:
        run_tfjs(tmp_path, {"inputs": np.zeros((1, 8, 8, 1), np.float32)}, ["cpu", "wasm"])
    assert str(caught.value) == f"no model.json in {tmp_path.resolve()}: not a TF.js graph model folder"
