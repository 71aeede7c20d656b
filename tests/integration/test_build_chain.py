"""The real chain on a tiny model: data -> train -> SavedModel -> TFLite in every quantization.

One session-scoped build (`built`, in conftest.py) is shared by every test here; tests that
change something build into their own cache copies so they never disturb the shared one.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tfbuild.cache import Cache
from tfbuild.resolver import resolve
from tfbuild.runner import BUILT, CACHED, NOT_NEEDED, run_plan
from tfbuild.steps import REGISTRY
from tfbuild.datasets.split import Split

from tests.conftest import TINY

from tests.integration.conftest import info

pytestmark = pytest.mark.slow


def test_every_step_built_and_published(built):
    root, _, result = built
    # The int8 report is needed only if int8 verification fails.
    assert {r.spec.name: r.status for r in result.steps if r.status != BUILT} == {"tflite_layers[int8]": NOT_NEEDED}
    run = root / "run"
    assert (run / "saved_model" / "saved_model.pb").is_file()
    for q in ("float", "dynamic", "fp16", "int8", "int16x8"):
        assert (run / "tflite" / f"model_{q}.tflite").stat().st_size > 1000


def test_training_metrics_are_recorded(built):
    _, _, result = built
    train = info(result, "train")
    assert train["epochs"] == 3
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(train["final"])
    assert 0.0 <= train["test_accuracy"] <= 1.0
    assert train["samples"] == {"train": 420, "validation": 60, "test": 120}
    assert train["input_shape"] == [8, 8, 1] and train["num_classes"] == 10


def _test_inputs(result) -> np.ndarray:
    split = Split(next(r for r in result.steps if r.spec.name == "data").entry.output_path("split"))
    return np.asarray(split.inputs("test")["inputs"])


def test_saved_model_has_named_serving_signature_and_matches_keras(built):
    root, _, result = built
    import tensorflow as tf

    loaded = tf.saved_model.load(str(root / "run" / "saved_model"))
    serve = loaded.signatures["serving_default"]
    assert list(serve.structured_input_signature[1]) == ["inputs"]
    assert list(serve.structured_outputs) == ["probabilities"]
    x = _test_inputs(result)
    probabilities = serve(inputs=tf.constant(x[:8]))["probabilities"].numpy()
    assert probabilities.shape == (8, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_tflite_variants_run_on_litert_with_the_expected_io(built):
    root, _, result = built
    from ai_edge_litert.interpreter import Interpreter

    x = _test_inputs(result)
    dtypes = {}
    for q in ("float", "dynamic", "fp16", "int8", "int16x8"):
        interpreter = Interpreter(model_path=str(root / "run" / "tflite" / f"model_{q}.tflite"))
        interpreter.allocate_tensors()
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        dtypes[q] = (inp["dtype"], out["dtype"])
        sample = x[:1]
        if inp["dtype"] == np.int8:
            scale, zero = inp["quantization"]
            sample = np.clip(np.round(sample / scale + zero), -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], sample)
        interpreter.invoke()
        assert interpreter.get_tensor(out["index"]).shape == (1, 10)
    assert dtypes["int8"] == (np.int8, np.int8)
    assert dtypes["float"] == dtypes["dynamic"] == dtypes["fp16"] == (np.float32, np.float32)
    assert info(result, "tflite[int8]")["calibration_samples"] == 16
    assert info(result, "tflite[int8]")["inputs"]["inputs"]["dtype"] == "int8"


def test_quantized_variants_are_smaller(built):
    root, _, _ = built
    size = {q: (root / "run" / "tflite" / f"model_{q}.tflite").stat().st_size for q in ("float", "dynamic", "fp16", "int8")}
    assert size["dynamic"] < size["fp16"] < size["float"]
    assert size["int8"] < size["fp16"]


def test_rebuild_is_fully_cached_and_a_new_variant_builds_one_step(built, compose_cfg, tmp_path):
    root, cfg, _ = built
    cache_copy = tmp_path / "cache"
    shutil.copytree(root / "cache", cache_copy)
    again = run_plan(resolve(cfg).plan, Cache(cache_copy), REGISTRY, scope="digits")
    assert {r.status for r in again.steps} - {NOT_NEEDED} == {CACHED}

    changed = compose_cfg("recipe=digits", *TINY, "export.tflite.quantization=[int8]", "data.calibration_samples=8")
    result = run_plan(resolve(changed).plan, Cache(cache_copy), REGISTRY, scope="digits")
    status = {r.spec.name: (r.status, r.reason) for r in result.steps}
    assert status["train"] == (CACHED, "cached")
    assert status["tflite[int8]"] == (BUILT, "params changed (calibration_samples: 16 -> 8)")


def test_training_is_deterministic(built, compose_cfg, tmp_path):
    """Same inputs, fresh cache: byte-identical model weights and .tflite files."""
    root, cfg, first = built
    cfg = compose_cfg("recipe=digits", *TINY, "export.tflite.quantization=[float,int8]")
    second = run_plan(resolve(cfg).plan, Cache(tmp_path / "cache"), REGISTRY, scope="digits")
    digest = lambda result, name: next(r for r in result.steps if r.spec.name == name).entry.manifest["outputs"]
    assert digest(first, "train") == digest(second, "train")
    assert digest(first, "tflite[float]") == digest(second, "tflite[float]")
    assert digest(first, "tflite[int8]") == digest(second, "tflite[int8]")


def test_npz_source_and_mlp(compose_cfg, tmp_path):
    rng = np.random.RandomState(0)
    x = rng.rand(120, 6).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    np.savez(tmp_path / "toy.npz", x=x, y=y)
    cfg = compose_cfg("model=mlp", "data=npz", f"data.path={tmp_path / 'toy.npz'}", "train.epochs=1",
                      "export.formats=tflite", "export.tflite.quantization=float")
    result = run_plan(resolve(cfg).plan, Cache(tmp_path / "cache"), REGISTRY, run_dir=tmp_path / "run")
    assert result.failed is None, result.failed and result.failed.error
    assert info(result, "data")["samples"] == {"test": 24, "validation": 12, "train": 84}
    assert (tmp_path / "run" / "tflite" / "model_float.tflite").is_file()


def test_a_step_error_is_reported_as_that_steps_failure(compose_cfg, tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.zeros((30, 4), np.float32), labels=np.zeros(30))
    cfg = compose_cfg("data=npz", f"data.path={tmp_path / 'bad.npz'}", "export.tflite.quantization=float")
    result = run_plan(resolve(cfg).plan, Cache(tmp_path / "cache"), REGISTRY)
    assert result.failed.spec.name == "data"
    assert "has no array named y" in result.failed.error
    assert not (tmp_path / "cache" / "entries").exists(), "nothing was cached"


def test_a_users_own_builder(compose_cfg, tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "import tf_keras as keras\n"
        "def tiny(input_shape, num_classes, width=4):\n"
        "    inputs = keras.Input(input_shape)\n"
        "    x = keras.layers.Dense(width, activation='relu')(keras.layers.Flatten()(inputs))\n"
        "    return keras.Model(inputs, keras.layers.Dense(num_classes, activation='softmax')(x), name='tiny')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = compose_cfg("model=custom", "model._target_=my_models.tiny", "+model.params.width=3", *TINY,
                      "export.formats=tflite", "export.tflite.quantization=float")
    plan = resolve(cfg).plan
    assert plan.step("train").files["builder"] == str(tmp_path / "my_models.py")
    result = run_plan(plan, Cache(tmp_path / "cache"), REGISTRY)
    assert result.failed is None, result.failed and result.failed.error
    assert info(result, "train")["model"] == "tiny"
    assert info(result, "train")["parameters"] == 64 * 3 + 3 + 3 * 10 + 10


def test_cnn_on_flat_features_fails_with_advice(compose_cfg, tmp_path):
    cfg = compose_cfg("data.name=iris", "train.epochs=1", "export.tflite.quantization=float")
    result = run_plan(resolve(cfg).plan, Cache(tmp_path / "cache"), REGISTRY)
    assert result.failed.spec.name == "train"
    assert "use model=mlp for flat features" in result.failed.error
