"""optimize=prune|cluster|qat on the shared tiny model: each effect measured on the saved
model, not taken from the step's own report. Each test builds into a copy of the shared
cache, so data and training are reused and only the optimized chain runs."""

from __future__ import annotations

import numpy as np
import pytest

from tfbuild.resolver import resolve
from tfbuild.runner import BUILT, CACHED, run_plan
from tfbuild.steps import REGISTRY

from tests.conftest import TINY
from tests.integration.conftest import cache_copy, info, step_result

pytestmark = pytest.mark.slow


def optimized_build(built, compose_cfg, tmp_path, *overrides):
    root, _, _ = built
    cfg = compose_cfg("recipe=digits", *TINY, "optimize.epochs=1", *overrides)
    result = run_plan(resolve(cfg).plan, cache_copy(root, tmp_path), REGISTRY, run_dir=tmp_path / "run")
    assert result.failed is None, result.failed and result.failed.error
    assert step_result(result, "train").status == CACHED, "optimizing re-uses the trained model"
    assert step_result(result, "optimize").status == BUILT
    return result


def kernels_of(result, load_scope=None):
    import contextlib

    import tf_keras as keras

    with load_scope or contextlib.nullcontext():
        model = keras.models.load_model(step_result(result, "optimize").entry.output_path("model"), compile=False)
    return {layer.name: layer.kernel.numpy() for layer in model.layers if hasattr(layer, "kernel")}


def test_pruning_reaches_the_requested_sparsity_and_compresses(built, compose_cfg, tmp_path):
    result = optimized_build(built, compose_cfg, tmp_path, "optimize=prune", "optimize.sparsity=0.6",
                             "export.tflite.quantization=float")
    kernels = kernels_of(result)
    assert set(kernels) == {"conv0", "conv1", "dense", "probabilities"}
    for name, kernel in kernels.items():
        # Each kernel zeroes round(0.6 * size) weights: within one weight of 60%.
        assert abs(np.mean(kernel == 0) - 0.6) <= 1 / kernel.size + 1e-9, name
    report = info(result, "optimize")
    assert report["target_sparsity"] == 0.6 and abs(report["achieved_sparsity"] - 0.6) < 0.01
    assert {"accuracy", "loss"} <= set(report["fine_tune_final"])
    _, _, plain = built
    # The .tflite keeps its size; the zeros show once compressed.
    assert info(result, "tflite[float]")["gzip_bytes"] < 0.75 * info(plain, "tflite[float]")["gzip_bytes"]
    assert step_result(result, "verify[tflite/float]").status == BUILT


def test_clustering_leaves_at_most_n_values_per_kernel(built, compose_cfg, tmp_path):
    result = optimized_build(built, compose_cfg, tmp_path, "optimize=cluster", "optimize.clusters=8",
                             "export.tflite.quantization=float")
    for name, kernel in kernels_of(result).items():
        assert len(np.unique(kernel)) <= 8, name
    report = info(result, "optimize")
    assert report["clusters"] == 8 and report["max_unique_values"] <= 8
    assert step_result(result, "verify[tflite/float]").status == BUILT


def test_qat_model_converts_to_int8_and_verifies(built, compose_cfg, tmp_path):
    import tensorflow_model_optimization as tfmot

    result = optimized_build(built, compose_cfg, tmp_path, "optimize=qat", "export.tflite.quantization=[float,int8]")
    assert info(result, "optimize")["quantized_layers"] >= 4
    assert kernels_of(result, tfmot.quantization.keras.quantize_scope()) == {}, "the wrappers stay for the converter"
    int8 = info(result, "tflite[int8]")
    assert int8["inputs"]["inputs"]["dtype"] == "int8" and int8["outputs"]["probabilities"]["dtype"] == "int8"
    verified = info(result, "verify[tflite/int8]")
    assert verified["top1_agreement"] >= 0.95
    assert info(result, "verify[tflite/float]")["max_abs_diff"] <= 1e-4
