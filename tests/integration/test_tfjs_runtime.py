"""The TF.js runtime itself (Node, cpu and wasm backends): what verification rests on.

Parity of every TF.js variant with the SavedModel, and a broken shard being caught, are
checked through the build in test_verify.py; here: the runner's own contract.
"""

from __future__ import annotations

import numpy as np
import pytest

from tfbuild.runtimes.timing import Protocol
from tfbuild.runtimes.tfjs_node import TfjsRuntimeError, node_problem, run_tfjs
from tfbuild.steps.data import load_split

from tests.integration.conftest import step_result

# Without Node or `make setup`, the runtime tests say why in the skip reason (pytest -ra).
NODE_PROBLEM = node_problem()
needs_node = pytest.mark.skipif(NODE_PROBLEM is not None, reason=str(NODE_PROBLEM))


@pytest.mark.slow
@needs_node
def test_both_backends_run_the_same_model_and_report_timings(built):
    root, _, result = built
    x, _ = load_split(step_result(result, "data").entry.output_path("split"), "test")
    run = run_tfjs(root / "run" / "tfjs" / "none", x, ["cpu", "wasm"], bench=(Protocol(1, 3, 0.0), 4))
    assert run.version == "4.22.0"
    for backend in ("cpu", "wasm"):
        assert run.outputs[backend].shape == (len(x), 10) and run.outputs[backend].dtype == np.float32
        assert set(run.timings[backend]) == {"load_ms", "predict_ms"} and run.timings[backend]["predict_ms"] > 0
        assert len(run.latency_ms[backend]) == 3 and len(run.batch_ms[backend]) == 3
    # Same weights, two kernels' implementations: far closer to each other than to TensorFlow.
    assert float(np.abs(run.outputs["cpu"] - run.outputs["wasm"]).max()) < 1e-5


def test_node_problem_names_the_missing_node_and_the_fix():
    message = node_problem("tfbuild-no-such-node")
    assert message is not None and "\n" not in message
    assert "Node.js not found" in message and "tfbuild-no-such-node" in message
    assert "make setup" in message and "18" in message and "verify.enabled=false" in message


def test_run_tfjs_with_unusable_node_raises_the_same_message(tmp_path):
    with pytest.raises(TfjsRuntimeError, match="Node.js not found"):
        run_tfjs(tmp_path, np.zeros((1, 8, 8, 1), np.float32), ["cpu"], node="tfbuild-no-such-node")


@needs_node
def test_folder_without_model_json_is_a_one_line_error(tmp_path):
    with pytest.raises(TfjsRuntimeError) as caught:
        run_tfjs(tmp_path, np.zeros((1, 8, 8, 1), np.float32), ["cpu", "wasm"])
    assert str(caught.value) == f"tfjs_run: no model.json in {tmp_path.resolve()}"
