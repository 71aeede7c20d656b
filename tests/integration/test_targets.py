"""Hardware targets and precision policies, for real: multi-device training without the
hardware (logical CPU devices, worker processes on 127.0.0.1), mixed precision on the CPU,
XLA, the edge and browser profiles, and clear refusals where the hardware is missing."""

from __future__ import annotations

import json

import pytest

from tfbuild.resolver import resolve
from tfbuild.runner import CACHED, run_plan
from tfbuild.steps import REGISTRY

from tests.conftest import TINY, run_tfbuild
from tests.integration.conftest import cache_copy, info, step_result

# No GPU may leak into these tests, even on a developer's GPU machine.
NO_GPU = {"CUDA_VISIBLE_DEVICES": "-1"}


def last_record(cwd):
    run = sorted(p for p in (cwd / "outputs" / "runs").glob("*/*") if not p.is_symlink())[-1]
    return {s["name"]: s for s in json.loads((run / "build.json").read_text())["steps"]}


@pytest.mark.parametrize(
    "args, expected",
    [
        (["target=gpu"], "target=gpu (strategy one_device) needs 1 GPU, found 0 (CUDA_VISIBLE_DEVICES hides them all)"),
        (["recipe=digits_multi_gpu"], "target=multi_gpu (strategy mirrored) needs 2 GPUs, found 0"),
        (["target=tpu"], "target=tpu (strategy tpu) needs a reachable TPU, found none"),
    ],
)
def test_missing_hardware_fails_in_seconds_with_one_line(tmp_path, args, expected):
    result = run_tfbuild(*args, cwd=tmp_path, env={**NO_GPU, "TPU_NAME": ""})
    assert result.returncode == 2
    assert result.stderr.startswith(f"tfbuild: error: {expected}") and result.stderr.count("\n") == 1
    assert not (tmp_path / "outputs" / "cache").exists()


@pytest.mark.slow
def test_mirrored_over_two_logical_cpu_devices_records_two_replicas(tmp_path):
    run_tfbuild("recipe=digits", "target=multi_gpu", "target.cpu_devices=2", "precision=float32", *TINY,
                "export.formats=saved_model", cwd=tmp_path, check=True, env=NO_GPU)
    train = last_record(tmp_path)["train"]["info"]
    assert (train["strategy"], train["replicas"]) == ("MirroredStrategy", 2)
    assert train["global_batch_size"] == 2 * 32, "train.batch_size is per replica"


@pytest.mark.slow
def test_two_workers_on_loopback_train_together(tmp_path):
    run_tfbuild("recipe=digits", "target=multi_gpu", "target.strategy=multi_worker", "target.workers=2",
                "precision=float32", *TINY, "export.formats=saved_model", cwd=tmp_path, check=True, env=NO_GPU)
    train = last_record(tmp_path)["train"]["info"]
    assert (train["strategy"], train["replicas"], train["workers"]) == ("MultiWorkerMirroredStrategy", 2, 2)
    assert train["epochs"] == 3 and 0 < train["test_accuracy"] <= 1


@pytest.mark.slow
def test_mixed_bfloat16_trains_on_cpu_and_exports_float32(built, compose_cfg, tmp_path):
    root, _, _ = built
    cfg = compose_cfg("recipe=digits", *TINY, "precision=mixed_bfloat16", "export.formats=[saved_model,tflite]",
                      "export.tflite.quantization=[float,int8]")
    result = run_plan(resolve(cfg).plan, cache_copy(root, tmp_path), REGISTRY, run_dir=tmp_path / "run")
    assert result.failed is None, result.failed and result.failed.error
    train = info(result, "train")
    assert train["precision_policy"] == "mixed_bfloat16" and train["output_dtype"] == "float32"
    assert info(result, "saved_model")["compute_dtypes"] == ["bfloat16", "float32"], "a float32 head"
    assert info(result, "saved_model[portable]")["compute_dtypes"] == ["float32"]
    import tensorflow as tf

    serve = tf.saved_model.load(str(tmp_path / "run" / "saved_model")).signatures["serving_default"]
    assert serve.structured_outputs["probabilities"].dtype == tf.float32
    assert serve(inputs=tf.zeros([2, 8, 8, 1]))["probabilities"].dtype == tf.float32
    # Exports come from the float32 twin; the served bfloat16 SavedModel is verified against it.
    assert step_result(result, "tflite[int8]").spec.inputs["saved_model"] == "saved_model/portable"
    assert info(result, "verify[saved_model]")["top1_agreement"] >= 0.98
    assert info(result, "verify[tflite/float]")["max_abs_diff"] < 1e-4


@pytest.mark.slow
def test_xla_compiles_training_and_serving_and_is_benchmarked_both_ways(built, compose_cfg, tmp_path):
    root, _, _ = built
    cfg = compose_cfg("recipe=digits", *TINY, "target.jit_compile=true", "export.formats=saved_model")
    result = run_plan(resolve(cfg).plan, cache_copy(root, tmp_path), REGISTRY, run_dir=tmp_path / "run")
    assert result.failed is None, result.failed and result.failed.error
    assert info(result, "train")["jit_compile"] is True and info(result, "train")["deterministic"] is False
    assert info(result, "saved_model")["signatures"] == ["serving_default", "serving_default_no_xla"]
    runtimes = info(result, "benchmark[saved_model]")["runtimes"]
    assert sorted(runtimes) == ["TensorFlow 2.19.0 (XLA)", "TensorFlow 2.19.0 (no XLA)"]
    assert all(r["latency"]["p50_ms"] > 0 for r in runtimes.values())


@pytest.mark.slow
def test_edge_and_browser_profiles_ship_their_formats_from_the_shared_training(built, compose_cfg, tmp_path):
    root, _, _ = built
    for target, published in (("edge", ["tflite/model_int8.tflite", "tflite/model_fp16.tflite"]),
                              ("browser", ["tfjs/uint8/model.json", "tfjs/float16/model.json"])):
        cfg = compose_cfg(f"recipe=digits_{target}", *TINY)
        run = tmp_path / target
        result = run_plan(resolve(cfg).plan, cache_copy(root, run), REGISTRY, run_dir=run / "run")
        assert result.failed is None, result.failed and result.failed.error
        assert step_result(result, "train").status == CACHED, "cpu, edge and browser train alike"
        for path in published:
            assert (run / "run" / path).is_file(), path
        assert not (run / "run" / "saved_model").exists(), "not asked for: built as the source, not published"
    browser = info(result, "benchmark[tfjs/uint8]")["runtimes"]
    # In Chromium (whatever its version), on the browser target's webgl and wasm.
    assert {label.split()[2] for label in browser} == {"webgl", "wasm"}
    assert all(label.startswith("TF.js 4.22.0 ") and " in Chromium " in label for label in browser)
