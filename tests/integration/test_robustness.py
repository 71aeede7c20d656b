"""A shared cache that stays right under concurrency, kills, corruption and a full disk; and
TensorFlow's own errors reported as the step's failure. Real builds in subprocesses."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tfbuild.cache_admin import list_entries

from tests.conftest import TINY, run_tfbuild

pytestmark = pytest.mark.slow

TFBUILD = str(Path(sys.executable).parent / "tfbuild")
QUICK = ["recipe=digits", *TINY, "export.tflite.quantization=[float,int8]"]


def records(cwd: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((cwd / "outputs").rglob("build.json"))]


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_")}


def test_three_concurrent_builds_train_once_and_agree(tmp_path):
    builds = [subprocess.Popen([TFBUILD, *QUICK], cwd=tmp_path, env=env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(3)]  # fmt: skip
    outcomes = [b.communicate(timeout=600) for b in builds]
    assert [b.returncode for b in builds] == [0, 0, 0], [err for _, err in outcomes]
    done = records(tmp_path)
    assert len(done) == 3
    trains = [next(s for s in r["steps"] if s["name"] == "train") for r in done]
    assert [t["status"] for t in trains].count("built") == 1, "one process trained; the others waited for it"
    assert {t["reason"] for t in trains if t["status"] == "cached"} <= {"built meanwhile by another tfbuild", "cached"}
    assert len({json.dumps(r["artifacts"], sort_keys=True) for r in done}) == 1, "byte-identical artifacts"


def test_parallel_sweep_with_the_joblib_launcher_trains_once(tmp_path):
    result = run_tfbuild("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "recipe=digits", *TINY,
                         "export.tflite.quantization=float,int8", cwd=tmp_path, check=True)
    assert "Joblib" in result.stdout + result.stderr
    done = records(tmp_path)
    assert len(done) == 2 and {r["status"] for r in done} == {"succeeded"}
    assert [s["status"] for r in done for s in r["steps"] if s["name"] == "train"].count("built") == 1
    (report,) = (tmp_path / "outputs" / "sweeps").glob("*/sweep_report.json")
    assert [j["status"] for j in json.loads(report.read_text())["jobs"]] == ["succeeded", "succeeded"]


def kill_when(cwd: Path, args: list[str], marker: str) -> None:
    """Start a build and SIGKILL it (and anything it started) once `marker` is printed."""
    build = subprocess.Popen([TFBUILD, *args], cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)  # fmt: skip
    assert build.stdout is not None
    for line in build.stdout:
        if marker in line:
            os.killpg(build.pid, signal.SIGKILL)
            break
    build.wait(timeout=60)
    assert build.returncode == -signal.SIGKILL, f"the build ended before '{marker}'"


@pytest.mark.parametrize(
    "step, marker, extra",
    [
        ("train", "train: epoch 2/40", ["train.epochs=40"]),  # mid-training
        ("tflite[float]", "> tflite[float]", []),  # mid-conversion
    ],
)
def test_a_build_killed_mid_step_leaves_nothing_half_done(tmp_path, step, marker, extra):
    args = [*QUICK, *extra]
    kill_when(tmp_path, args, marker)
    cache = tmp_path / "outputs" / "cache"
    assert step not in {e.name for e in list_entries(cache)}, "the killed step is not in the cache"
    leftovers = list((cache / "tmp").iterdir())
    assert leftovers, "the kill landed mid-step (its private folder is still there)"
    run_tfbuild(*args, cwd=tmp_path, check=True)
    assert step in {e.name for e in list_entries(cache)}
    assert not [p for p in leftovers if p.exists()], "the next build of that key cleared what the kill left"


def test_a_corrupted_entry_is_reported_discarded_and_rebuilt(tmp_path):
    run_tfbuild(*QUICK, cwd=tmp_path, check=True)
    (entry,) = [e for e in list_entries(tmp_path / "outputs" / "cache") if e.name == "tflite[int8]"]
    model = entry.folder / "out" / "model_int8.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    model.write_bytes(bytes(data))
    run_tfbuild(*QUICK, cwd=tmp_path, check=True)
    steps = {s["name"]: s for s in records(tmp_path)[-1]["steps"]}
    assert (steps["tflite[int8]"]["status"], steps["tflite[int8]"]["reason"]) == (
        "built", "cache entry corrupt (model_int8.tflite changed)")
    assert steps["train"]["status"] == "cached"


def test_a_full_disk_during_a_step_fails_cleanly(tmp_path):
    def small_disk() -> None:  # writes past 200 KB fail (EFBIG), as on a full disk (ENOSPC)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    result = subprocess.run([TFBUILD, *QUICK, "data.limit=null"], cwd=tmp_path, env=env(), capture_output=True,
                            text=True, preexec_fn=small_disk, timeout=600)  # fmt: skip
    assert result.returncode == 1
    # NumPy says "80512 requested and 49968 written"; whatever the words, it is the step's OSError.
    assert result.stderr.startswith("tfbuild: error: step 'data' failed: OSError: ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    cache = tmp_path / "outputs" / "cache"
    assert list_entries(cache) == [] and list((cache / "tmp").iterdir()) == [], "nothing cached, nothing left"


def test_a_tensorflow_conversion_error_is_the_steps_failure_with_tensorflows_message(tmp_path):
    (tmp_path / "my_models.py").write_text(
        "import tensorflow as tf\n"
        "import tf_keras as keras\n\n"
        "def unconvertible(input_shape, num_classes):\n"
        "    inputs = keras.Input(input_shape)\n"
        "    x = keras.layers.Flatten()(inputs)\n"
        "    det = keras.layers.Lambda(lambda t: tf.expand_dims(tf.linalg.det(tf.reshape(t, [-1, 2, 2])), -1))(\n"
        "        keras.layers.Dense(4)(x))\n"
        "    x = keras.layers.Concatenate()([x, det])\n"
        "    return keras.Model(inputs, keras.layers.Dense(num_classes, activation='softmax')(x))\n"
    )
    result = run_tfbuild("model=custom", "model._target_=my_models.unconvertible", *TINY, "export.formats=tflite",
                         "export.tflite.quantization=float", cwd=tmp_path)
    assert result.returncode == 1
    line = result.stderr.strip()
    assert line.startswith("tfbuild: error: step 'tflite[float]' failed: TFLite cannot convert op 'tf.MatrixDeterminant'")
    assert "Traceback" not in result.stdout + result.stderr
    (log,) = (tmp_path / "outputs" / "runs").rglob("build.log")
    assert "Traceback" in log.read_text() and "MatrixDeterminant" in log.read_text()


def test_a_reused_run_folder_holds_only_the_last_builds_artifacts(tmp_path):
    run_dir = tmp_path / "same_run"
    run_tfbuild(*QUICK, f"hydra.run.dir={run_dir}", cwd=tmp_path, check=True)
    assert sorted(p.name for p in (run_dir / "tflite").iterdir()) == ["model_float.tflite", "model_int8.tflite"]
    run_tfbuild("recipe=digits", *TINY, "export.tflite.quantization=[float]", f"hydra.run.dir={run_dir}", cwd=tmp_path,
                check=True)  # fmt: skip
    assert [p.name for p in (run_dir / "tflite").iterdir()] == ["model_float.tflite"], "no int8 left from the first"
    record = json.loads((run_dir / "build.json").read_text())
    assert sorted(a["path"] for a in record["artifacts"]) == ["saved_model", "tflite/model_float.tflite"]
    published = run_dir / "tflite" / "model_float.tflite"
    with open(published, "ab") as f:  # a user's edit of a run's artifact stays in that run
        f.write(b"appended")
    again = run_tfbuild(*QUICK, cwd=tmp_path, check=True)
    assert "cache entry" not in again.stdout
    assert {s["status"] for s in records(tmp_path)[-1]["steps"]} - {"not needed"} == {"cached"}


def test_a_pin_is_recorded_in_the_cache_and_gc_keeps_it_from_any_folder(tmp_path):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir(), elsewhere.mkdir()
    run_tfbuild("recipe=digits", *TINY, "export.tflite.quantization=float", "pin=1.0", cwd=project, check=True)
    cache = project / "outputs" / "cache"
    [record] = (cache / "pins").glob("digits-1.0.*.json")  # one record per pin content
    pin = json.loads(record.read_text())
    assert pin["name"] == "digits-1.0" and len(pin["keys"]) == len(list_entries(cache))
    gc = subprocess.run([str(Path(sys.executable).parent / "tfbuild-cache"), "gc", "--max-size", "0", "--cache", str(cache)],
                        cwd=elsewhere, capture_output=True, text=True, check=True)  # fmt: skip
    assert gc.stdout.startswith("0 of ") and f"{len(pin['keys'])} kept for pinned recipes" in gc.stdout
