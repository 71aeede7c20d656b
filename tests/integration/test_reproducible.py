"""A step's bytes are a function of its key alone: the same SavedModel (and the same TFLite and
TF.js made from it) whether the process trained before, built other models, or started fresh.

TensorFlow numbers traced functions with a process-wide counter; without the renumbering in
`tfbuild.savedmodel_bytes`, a pin made after one cache history fails from an empty cache.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tfbuild.cache import MANIFEST, Cache
from tfbuild.recipes import PROJECT_ROOT
from tfbuild.resolver import resolve
from tfbuild.runner import BUILT, CACHED, run_plan
from tfbuild.steps import REGISTRY

from tests.conftest import TINY

# Each job takes another path through the saved_model step: mixed precision (the published
# SavedModel, then its float32 `portable` twin in the same process, and exports from the twin);
# quantization-aware training (the model loads inside tfmot's scope; full-integer TFLite).
JOBS = [
    ["recipe=digits", "precision=mixed_float16", "export.formats=[saved_model,tflite,tfjs]",
     "export.tflite.quantization=float", "export.tfjs.quantization=none"],
    ["recipe=digits", "optimize=qat", "export.tflite.quantization=int8"],
]  # fmt: skip
TRAINING = ("data", "train", "optimize")


def build_jobs(cache: Path, jobs: list[list[str]]) -> dict[str, dict]:
    """Build each job into `cache`; "job :: step" -> its status and the digest of each file."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from tfbuild.recipes import CONF_DIR

    built: dict[str, dict] = {}
    for job in jobs:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", [*TINY, "verify.enabled=false", "benchmark.enabled=false", *job])
        result = run_plan(resolve(cfg).plan, Cache(cache), REGISTRY)
        assert result.failed is None, result.failed and result.failed.error
        for step in result.steps:
            out = step.entry.root / "out"
            files = {str(p.relative_to(out)): _sha256(p) for p in sorted(out.rglob("*")) if p.is_file()}
            built[f"{' '.join(job)} :: {step.spec.name}"] = {"status": step.status, "files": files}
    return built


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def trace_unrelated_models(count: int) -> None:
    """Advance TensorFlow's and Keras's process-wide counters as a long session would."""
    from tfbuild.tfenv import import_tensorflow

    tf = import_tensorflow()
    import tf_keras as keras

    for i in range(count):
        model = keras.Sequential([keras.layers.Dense(3 + i, input_shape=(4,)), keras.layers.Dense(2)])
        model.compile("adam", "mse")
        model.fit(tf.zeros((8, 4)), tf.zeros((8, 2)), verbose=0)
        tf.function(lambda x, i=i: x * i)(tf.constant(1.0))


def _training_only(source: Path, target: Path) -> None:
    """A copy of the cache that holds the trained models and nothing made from them."""
    shutil.copytree(source, target)
    for manifest in (target / "entries").glob(f"*/*/{MANIFEST}"):
        if json.loads(manifest.read_text())["name"] not in TRAINING:
            shutil.rmtree(manifest.parent)


FRESH_PROCESS = """
import json, sys
from pathlib import Path
from tests.integration.test_reproducible import build_jobs
print("BUILT=" + json.dumps(build_jobs(Path(sys.argv[1]), json.loads(sys.argv[2]))))
"""


@pytest.mark.slow
def test_saved_model_and_its_exports_are_the_same_bytes_in_a_fresh_process(tmp_path):
    # This process has traced other models, then trains and saves each job in turn.
    trace_unrelated_models(3)
    warm = build_jobs(tmp_path / "warm", JOBS)
    # A fresh process finds the training cached and saves the same models, in the other order.
    _training_only(tmp_path / "warm", tmp_path / "fresh")
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(tmp_path / "fresh"), json.dumps(JOBS[::-1])],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = json.loads(result.stdout.split("BUILT=", 1)[1])

    assert fresh.keys() == warm.keys()
    for name, step in warm.items():
        trained = name.split(" :: ")[1] in TRAINING
        assert trained or step["status"] == BUILT, name
        assert fresh[name]["status"] == (CACHED if trained else BUILT), name
        assert fresh[name]["files"] == step["files"], f"{name}: other bytes in a fresh process"
    made = {name.split(" :: ")[1] for name in warm}
    assert {"saved_model", "saved_model[portable]", "tflite[float]", "tflite[int8]", "tfjs[none]"} <= made


def test_renumbering_makes_a_saved_model_independent_of_the_process_history(tmp_path):
    """The cause, directly: the same module saved before and after other tracing differs in
    bytes only by TensorFlow's uids, and the renumbered files are equal and still load."""
    from tfbuild.savedmodel_bytes import make_reproducible
    from tfbuild.tfenv import import_tensorflow

    tf = import_tensorflow()

    def save(folder: Path) -> None:
        module = tf.Module()
        module.scale = tf.Variable([2.0, 3.0])
        module.serve = tf.function(lambda x: {"y": x * module.scale}, input_signature=[tf.TensorSpec([None, 2])])
        tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})

    save(tmp_path / "first")
    tf.function(lambda x: x + 1)(tf.constant(1.0))  # anything traced in between
    save(tmp_path / "second")
    first, second = (tmp_path / "first" / "saved_model.pb"), (tmp_path / "second" / "saved_model.pb")
    assert first.read_bytes() != second.read_bytes(), "TensorFlow numbered them alike: nothing to test"

    for folder in ("first", "second"):
        make_reproducible(tmp_path / folder)
    assert first.read_bytes() == second.read_bytes()
    assert (tmp_path / "first" / "fingerprint.pb").read_bytes() == (tmp_path / "second" / "fingerprint.pb").read_bytes()
    loaded = tf.saved_model.load(str(tmp_path / "second"))
    assert loaded.signatures["serving_default"](x=tf.constant([[1.0, 1.0]]))["y"].numpy().tolist() == [[2.0, 3.0]]
