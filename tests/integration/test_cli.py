"""The installed `tfbuild` command, run as a user runs it (subprocesses, real TensorFlow)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TINY, run_tfbuild

# Runs tfbuild's entry point, then reports whether TensorFlow was ever imported.
def probe(report: str) -> str:
    """A `python -c` program that runs tfbuild, then prints `report` (a Python expression,
    evaluated once tfbuild is done) as the last line of stderr."""
    return f"""
import sys
from tfbuild.cli import main
sys.argv = ["tfbuild", *sys.argv[1:]]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code
print({report}, file=sys.stderr)
sys.exit(code)
"""


WITH_IMPORT_PROBE = probe('"TENSORFLOW_IMPORTED=" + str("tensorflow" in sys.modules)')

QUICK = [*TINY, "export.tflite.quantization=[float,int8]"]
# A build that fails at its data step (small flat features; the step needs no TensorFlow).
NPZ = ["data=npz", "model=mlp", "verify.enabled=false", "benchmark.enabled=false"]


def run_dirs(cwd: Path) -> list[Path]:
    """The run folders, oldest first (not the `latest` link to the newest)."""
    return sorted(p for p in (cwd / "outputs" / "runs").glob("*/*") if not p.is_symlink())


def assert_refused(result: subprocess.CompletedProcess, expected: str, cwd: Path) -> None:
    """Bad input as tfbuild must answer it: exit 2, one line starting with `expected`, no
    traceback, TensorFlow never imported (the run used WITH_IMPORT_PROBE), no run folder."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"tfbuild: error: {expected}"), result.stderr
    assert lines[1:] == ["TENSORFLOW_IMPORTED=False"]
    assert "Traceback" not in result.stdout + result.stderr
    assert not (cwd / "outputs" / "runs").exists(), "no run folder, nor the empty folders above one"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["recipe=digitz"], "recipe=digitz: no recipe named 'digitz'"),
        (["recipe=digits", "train.epocs=3"], "train.epocs: no such key in train"),
        (["recipe=digits", "export.tflite.quantization=int4"], "export.tflite.quantization: 'int4' is not one of"),
        (["recipe=digits", "train.epochs=-1"], "train.epochs must be at least 1, got -1"),
        (["recipe=digits", "train.epochs=abc"], "train.epochs: Value 'abc'"),
        (["recipe=digits", "precision=fp8"], "precision=fp8: not one of"),
        (["recipe=../etc/passwd"], "recipe=../etc/passwd: recipe names are paths inside recipes/"),
        (["recipe=digits", "data.calibration_samples=0"], "export.tflite.quantization=int8 needs calibration data"),
        (["recipe=digits", "data=npz", "data.path=missing.npz"], "data.path: no such file 'missing.npz'"),
        (["recipe=digits", "cache.dir=/proc/version"], "cache.dir: '/proc/version' exists and is not a folder"),
        (["recipe=digits_all", "verify.node=/no/such/node"], "verify.node: Node.js not found (`/no/such/node` does not exist"),
        (["recipe=digits_all", "optimize=qat", "export.tflite.quantization=int8"], "optimize=qat cannot be exported to TF.js"),
        (["recipe=digits", "optimize=quantum"], "optimize=quantum: not one of cluster, none, prune, qat"),
        (["recipe=digits", "optimize=prune", "optimize.sparsity=1.2"], "optimize.sparsity must be between 0 and 1"),
        (["recipe=digits", "export.formats=tfjs", "verify.tfjs_backends=webgl"], "verify.tfjs_backends: 'webgl' is not one of cpu, wasm"),
        (["recipe=broken"], "recipe=broken: cannot parse {cwd}/recipes/broken.yaml: while parsing a flow sequence in "
                            "\"{cwd}/recipes/broken.yaml\", line 4, column 15"),
        (["recipe=typo"], "{cwd}/recipes/typo.yaml: train.epochz: no such key in train (keys: epochs, batch_size, "
                          "learning_rate, seed, optimizer, weight_decay, schedule, early_stopping_patience, class_weight, "
                          "loss, threads, onednn) (did you mean 'epochs'?)"),
        (["recipe=badenum"], "{cwd}/recipes/badenum.yaml: target.name: Invalid value 'phone', expected one of [cpu, gpu"),
        (["recipe=digits", "train.batch_size=many"], "train.batch_size: Value 'many' of type 'str' could not be converted"),
        (["recipe=digits", "train.batch_size=0"], "train.batch_size must be at least 1, got 0"),
        (["recipe=digits", "data.calibration_samples=-5"], "data.calibration_samples must be at least 0, got -5"),
        (["recipe=digits", "export.formats=[onnx]"], "export.formats: 'onnx' is not one of saved_model, tflite, tfjs"),
        (["recipe=digits", "model=custom", "model._target_=nope.build"], "model._target_: cannot import module 'nope'"),
        (["recipe=digits", "cache.dir=/proc/tfbuild/cache"], "cache.dir: cannot create '/proc/tfbuild/cache'"),
        (["recipe=digits", "data.validation_fraction=0.95"], "data.validation_fraction + data.test_fraction must leave"),
        (["recipe=digits", "verify.samples=0"], "verify.samples must be at least 1, got 0"),
        (["recipe=digits", "benchmark.batch_size=0"], "benchmark.batch_size must be at least 1, got 0"),
        (["recipe=digits", "gates.min_accuracy=2"], "gates.min_accuracy must be between 0 and 1"),
        (["recipe=digits", "target=multi_gpu", "target.strategy=multi_worker", "target.workers=1"],
         "target=multi_gpu (strategy multi_worker) needs target.workers=N (2 or more)"),
        (["recipe=digits", "pin=1.0", "dry_run=true"], "pin: a pin records what a build made; drop dry_run=true"),
        (["recipe=digits", "pin=1.0\n"], "cannot parse 'pin=1.0\\n': LexerNoViableAltException"),
        # Keys the schema does not declare, added with + or ++ (only model.params is free-form).
        (["recipe=digits", "+train.epocs=3"], "train.epocs: no such key in train (keys: epochs, batch_size, "
                                              "learning_rate, seed, optimizer, weight_decay, schedule, "
                                              "early_stopping_patience, class_weight, loss, threads, onednn) (did you mean 'epochs'?)"),
        (["recipe=digits", "++nonsense=1"], "nonsense: no such key in the config (keys: model, task, data, target,"),
        (["recipe=digits", "++train.epochs_typo=2"], "train.epochs_typo: no such key in train"),
        # Numbers: finite, and in the range their consumer takes; booleans only true or false.
        (["recipe=digits", "train.learning_rate=nan"], "train.learning_rate must be a finite number, got nan"),
        (["recipe=digits", "verify.tolerances.tflite.float.max_abs_diff=nan"],
         "verify.tolerances.tflite.float.max_abs_diff must be a finite number, got nan"),
        (["recipe=digits", "gates.max_p95_ms=inf"], "gates.max_p95_ms must be a finite number, got inf"),
        (["recipe=digits", "train.epochs=99999999999999999999"], "train.epochs must be at most 100000, got 99999999999999999999"),
        (["recipe=digits", "data.seed=-1"], "data.seed must be at least 0, got -1"),
        (["recipe=digits", "train.seed=4294967296"], "train.seed must be at most 4294967295"),
        (["recipe=digits", "benchmark.min_seconds=1e308"], "benchmark.min_seconds must be at most 3600, got 1e+308"),
        (["recipe=digits", "benchmark.warmup=10000000000"], "benchmark.warmup must be at most 1000000"),
        (["recipe=digits", "dry_run=1"], "dry_run=1: dry_run takes true or false, got 1"),
        (["recipe=boolint"], "{cwd}/recipes/boolint.yaml: verify.enabled=1: verify.enabled takes true or false, got 1"),
        # force names a step or kind of this plan.
        (["recipe=digits", "force=[trian]"], "force: 'trian' is not a step or kind of this plan (steps: data, train, "),
        (["recipe=digits", "force=[tfjs]"], "force: 'tfjs' is not a step or kind of this plan"),
        # A format's settings while the format is not built.
        (["export.tflite.quantization=int8"], "export.tflite.quantization=int8 is set, but tflite is not built "
                                              "(formats: saved_model, from target=cpu and export.formats): add "
                                              "export.formats=[saved_model,tflite]"),
        (["recipe=digits_browser", "gates.tflite.max_bytes=1000"], "gates.tflite.max_bytes=1000 is set, but tflite is not built"),
        (["recipe=digits", "verify.tolerances.tfjs.uint8.min_top1_agreement=0.9"],
         "verify.tolerances.tfjs.uint8.min_top1_agreement=0.9 is set, but tfjs is not built"),
        (["recipe=digits_edge", "export.tfjs.quantization=uint8"], "export.tfjs.quantization=uint8 is set, but tfjs is not built"),
        # Interpolations, resolved once before any work.
        (["recipe=digits", "train.epochs=${nonexistent.key}"],
         "train.epochs: cannot resolve '${{nonexistent.key}}' (Interpolation key 'nonexistent.key' not found)"),
        (["recipe=digits", "train.epochs=${oc.env:TFBUILD_UNSET_VARIABLE}"],
         "train.epochs: cannot resolve '${{oc.env:TFBUILD_UNSET_VARIABLE}}'"),
        (["recipe=digits", "train.epochs=${no_such_resolver:1}"], "train.epochs: cannot resolve '${{no_such_resolver:1}}' "
                                                                   "(Unsupported interpolation type no_such_resolver)"),
        (["recipe=cycle"], "{cwd}/recipes/cycle.yaml: train.epochs: cannot resolve '${{train.seed}}' (Recursive interpolation"),
        # Where a cache may not be.
        (["recipe=digits", "cache.dir="], "cache.dir is empty: that would make the current folder the cache"),
        (["recipe=digits", "cache.dir=" + "c" * 5000], "cache.dir: the path is"),
        (["recipe=digits", "cache.dir=outputs/" + "c" * 300], "cache.dir: the folder name 'cccc"),
        (["recipe=digits", "cache.dir=oldrun/cache"], "cache.dir: 'oldrun/cache' is inside the run folder {cwd}/oldrun"),
        (["recipe=digits", "cache.dir=recipes/cache"], "cache.dir: 'recipes/cache' is inside {cwd}/recipes, the project's own"),
        (["recipe=digits", "cache.dir=conf"], "cache.dir: 'conf' is inside {cwd}/conf, the project's own"),
        # Run folders Hydra cannot make or write (a file in the way; a full disk under .hydra/).
        (["recipe=digits", "hydra.run.dir=afile/run"], "run folder: cannot write 'afile/run' (Not a directory)"),
        (["recipe=digits", "hydra.run.dir=full"], "run folder: cannot write '{cwd}/full/.hydra/config.yaml' (No space left"),
        # Data the data step cannot train on (it runs; nothing is cached, no run folder stays).
        ([*NPZ, "data.path=nan.npz"], "step 'data': data.path {cwd}/nan.npz: inputs holds NaN or infinity in 1 of 60 samples "
                                      "read (the first at index 5)"),
        ([*NPZ, "data.path=huge.npz"], "step 'data': data.path {cwd}/huge.npz: the largest label is 1000000000, which "
                                       "would make a 1000000001-unit output layer for 60 samples"),
        ([*NPZ, "data.path=oneclass.npz"], "step 'data': data.path {cwd}/oneclass.npz: label has a single class (0)"),
        ([*NPZ, "data.path=nolabels.npz"], "step 'data': data.path {cwd}/nolabels.npz: has no array named y (it has x)"),
        ([*NPZ, "data.path=nan.npz", "task=regression"],
         "step 'data': data.path {cwd}/nan.npz: label holds integer class labels (dtype int64) but its task is regression"),
        # Your model, your data, your task: mismatches caught while planning.
        (["data=csv", "data.path=t.csv", "data.label=prise"],
         "data.label: '{cwd}/t.csv' has no column 'prise' (its columns: a, b, price) (did you mean 'price'?)"),
        (["data=csv", "data.path=t.csv"], "data.label must be set for data=csv"),
        (["data=csv", "data.path=t.csv", "data.label=price", "data.color=rgb"], "data.color does not apply to data=csv (it is read by data=images)"),
        (["data=images", "data.path=nope"], "data.path: no such folder 'nope'"),
        (["data=tfrecord", "data.path=t.csv", "data.label=y"], "data.spec must describe the TFRecord features"),
        (["model=keras_app", "data.image_size=[32,32]", "data.channels=3", "model.params.alpah=1"],
         "model.params.alpah: not a parameter of MobileNetV2 (allowed: alpha) (did you mean 'alpha'?)"),
        (["model=keras_app", "data.channels=3"], "data.image_size: MobileNetV2 needs images of at least 32x32, but the samples are 8x8"),
        (["model=keras_app", "model.name=MobileNetv2"], "model.name: 'MobileNetv2' is not a tf_keras.applications network"),
        (["recipe=digits", "task=regression"], "data.name=digits holds classification targets but task=regression: use task=classification"),
        (["recipe=digits", "task.outputs.price=regression"], "task.outputs.price: the data has no target named 'price' (its targets: label)"),
        (["recipe=diabetes", "gates.min_accuracy=0.9"], "gates.min_accuracy applies to classification outputs, and this model has none"),
        (["recipe=digits", "gates.max_mae=3"], "gates.max_mae applies to regression outputs"),
        (["model=file"], "model=file needs model.path=FILE"),
        (["model=file", "model.path=model.onnx"], "model.path: model.onnx is not a model tfbuild reads"),
        (["model=file", "model.path=sm", "data=none", "export.formats=[tflite]", "export.tflite.quantization=int8"],
         "export.tflite.quantization=int8 calibrates on real samples, and data=none gives none"),
        (["model=file", "model.path=sm", "optimize=prune"], "optimize=prune fine-tunes a model tfbuild trains"),
        (["data=none"], "data=none works with model=file only"),
        (["recipe=digits", "train.optimizer=adamm"], "train.optimizer: Invalid value 'adamm', expected one of [adam, adamw, sgd, rmsprop]"),
    ],
)
def test_config_errors_are_one_line_with_no_traceback_and_write_nothing(tmp_path, args, expected):
    # Recipes of the user's own with a YAML syntax error, an unknown key and a bad enum value.
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "broken.yaml").write_text("# @package _global_\ntrain:\n  epochs: 3\n  batch_size: [1\n")
    (tmp_path / "recipes" / "typo.yaml").write_text("# @package _global_\ntrain:\n  epochz: 3\n")
    (tmp_path / "recipes" / "badenum.yaml").write_text("# @package _global_\ntarget:\n  name: phone\n")
    (tmp_path / "recipes" / "boolint.yaml").write_text("# @package _global_\nverify:\n  enabled: 1\n")
    (tmp_path / "recipes" / "cycle.yaml").write_text("# @package _global_\ntrain:\n  epochs: ${train.seed}\n  seed: ${train.epochs}\n")
    (tmp_path / "oldrun" / ".hydra").mkdir(parents=True)  # an earlier run folder
    (tmp_path / "afile").write_text("")
    (tmp_path / "full" / ".hydra").mkdir(parents=True)
    (tmp_path / "full" / ".hydra" / "config.yaml").symlink_to("/dev/full")  # every write: no space left
    _write_bad_data(tmp_path)
    (tmp_path / "t.csv").write_text("a,b,price\n1,2,3\n")
    (tmp_path / "model.onnx").write_text("")
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"")  # enough for planning, which reads no model
    expected = expected.format(cwd=tmp_path)
    result = run_tfbuild(*args, cwd=tmp_path, python_code=WITH_IMPORT_PROBE)
    assert_refused(result, expected, tmp_path)
    cache = tmp_path / "outputs" / "cache"
    if "data=npz" in args and "data.path=missing.npz" not in args:  # the data step ran: nothing kept
        assert list((cache / "entries").glob("*/*")) == [] and list((cache / "tmp").iterdir()) == []
    else:
        assert not cache.exists()
    assert run_dirs(tmp_path) == []
    if "hydra.run.dir=full" in args:
        assert not (tmp_path / "full").exists(), "Hydra's half-written run folder is removed"



def _write_bad_data(folder: Path) -> None:
    import numpy as np

    rng = np.random.RandomState(0)
    x, y = rng.rand(60, 4).astype(np.float32), np.arange(60) % 3
    with_nan = x.copy()
    with_nan[5, 2] = np.nan
    np.savez(folder / "nan.npz", x=with_nan, y=y)
    np.savez(folder / "huge.npz", x=x, y=np.where(np.arange(60) == 7, 10**9, y))  # an ID, not a class
    np.savez(folder / "oneclass.npz", x=x, y=np.zeros(60, np.int64))
    np.savez(folder / "nolabels.npz", x=x)


@pytest.mark.slow
def test_a_run_folder_write_failing_mid_build_is_one_line_and_leaves_no_partial_file(tmp_path):
    import numpy as np

    rng = np.random.RandomState(0)
    np.savez(tmp_path / "d.npz", x=rng.rand(60, 4).astype(np.float32), y=np.arange(60) % 3)
    run = tmp_path / "run"
    run.mkdir()
    (run / ".build.json.tmp").symlink_to("/dev/full")  # where build.json is written first: a full disk
    result = run_tfbuild(*NPZ, "data.path=d.npz", "train.epochs=1", f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"tfbuild: error: cannot write '{run / 'build.json'}' (No space left on device); the cache keeps every step that finished"
    ]
    assert not (run / "build.json").exists() and not (run / ".build.json.tmp").exists()
    assert (run / "report.json").is_file(), "files written before it are whole"


def test_help_lists_recipes_and_keys(tmp_path):
    result = run_tfbuild("--help", cwd=tmp_path, check=True)
    assert ("recipe: diabetes, digits, digits_all, digits_browser, digits_edge, digits_mlp, digits_mobilenet, "
            "digits_multi_gpu, digits_pruned, digits_qat") in result.stdout
    assert "task: classification, regression" in result.stdout
    assert "optimize: cluster, none, prune, qat" in result.stdout
    assert "export.tflite.quantization" in result.stdout


@pytest.mark.slow
def test_build_then_noop_then_one_change(tmp_path):
    cold = run_tfbuild("recipe=digits", *QUICK, cwd=tmp_path, check=True)
    # The user sees tfbuild's progress and table, and none of TensorFlow's C++ chatter.
    assert "train: epoch 3/3" in cold.stdout
    assert "tflite[int8]" in cold.stdout and "not in cache" in cold.stdout
    for noise in ("cuda", "W0000", "absl", "oneDNN", "WARNING"):
        assert noise not in cold.stdout + cold.stderr
    first_run = run_dirs(tmp_path)[0]
    assert (first_run / "build.log").is_file(), "TensorFlow's output went to the run folder's log"

    record = json.loads((first_run / "build.json").read_text())
    assert record["recipe"] == "digits" and record["status"] == "succeeded"
    assert record["config"]["train"]["epochs"] == 3
    assert {s["name"] for s in record["steps"]} == {
        "data", "train", "saved_model", "tflite[float]", "tflite[int8]",
        "reference", "verify[tflite/float]", "verify[tflite/int8]",
        "benchmark[saved_model]", "benchmark[tflite/float]", "benchmark[tflite/int8]", "tflite_layers[int8]",
    }  # fmt: skip
    assert record["verification"] == "on"
    for s in record["steps"]:
        assert set(s) >= {"kind", "name", "key", "status", "reason", "seconds", "info"}
        if s["name"] == "tflite_layers[int8]":  # the int8 report, needed only if int8 verification fails
            assert s["status"] == "not needed" and s["key"] is None
            continue
        assert s["status"] == "built" and len(s["key"]) == 64
    artifacts = {a["name"]: a for a in record["artifacts"]}
    assert set(artifacts) == {"saved_model", "tflite/float", "tflite/int8"}
    int8 = artifacts["tflite/int8"]
    assert (int8["format"], int8["variant"], int8["path"]) == ("tflite", "int8", "tflite/model_int8.tflite")
    import hashlib

    assert hashlib.sha256((first_run / int8["path"]).read_bytes()).hexdigest() == int8["sha256"]
    assert (first_run / int8["path"]).stat().st_size == int8["bytes"]

    noop = run_tfbuild("recipe=digits", *QUICK, cwd=tmp_path, python_code=WITH_IMPORT_PROBE)
    assert noop.returncode == 0, noop.stderr
    assert "TENSORFLOW_IMPORTED=False" in noop.stderr
    noop_record = json.loads((run_dirs(tmp_path)[1] / "build.json").read_text())
    assert {s["status"] for s in noop_record["steps"]} - {"not needed"} == {"cached"}
    assert noop_record["artifacts"] == record["artifacts"]
    assert (run_dirs(tmp_path)[1] / "tflite" / "model_int8.tflite").is_file()

    plan = run_tfbuild("recipe=digits", *TINY, "export.tflite.quantization=[float,dynamic]", "dry_run=true",
                       cwd=tmp_path, python_code=WITH_IMPORT_PROBE)
    assert plan.returncode == 0 and "TENSORFLOW_IMPORTED=False" in plan.stderr
    assert "tflite[dynamic]" in plan.stdout and "to build" in plan.stdout
    assert len(run_dirs(tmp_path)) == 2, "a dry run leaves no run folder"

    changed = run_tfbuild("recipe=digits", *TINY, "export.tflite.quantization=dynamic", cwd=tmp_path, check=True)
    steps = {s["name"]: s for s in json.loads((run_dirs(tmp_path)[2] / "build.json").read_text())["steps"]}
    assert steps["train"]["status"] == "cached"
    assert steps["tflite[dynamic]"]["status"] == "built"
    assert "tflite[dynamic]" in changed.stdout


@pytest.mark.slow
def test_failed_step_exits_1_naming_the_step(tmp_path):
    import numpy as np

    # Flat features for the CNN (which needs images): the data is fine, training fails.
    np.savez(tmp_path / "flat.npz", x=np.zeros((40, 4), np.float32), y=np.arange(40) % 2)
    result = run_tfbuild("data=npz", f"data.path={tmp_path / 'flat.npz'}", "export.formats=tflite",
                         cwd=tmp_path)
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("tfbuild: error: step 'train' failed: model cnn needs image-shaped samples")
    assert "build.log" in line
    assert "Traceback" not in result.stderr
    run = run_dirs(tmp_path)[0]
    assert "Traceback" in (run / "build.log").read_text()
    assert json.loads((run / "build.json").read_text())["status"] == "failed"


@pytest.mark.slow
def test_sweep_trains_once_and_reports_every_job(tmp_path):
    result = run_tfbuild("-m", "recipe=digits", *TINY, "export.tflite.quantization=float,dynamic,int8", cwd=tmp_path,
                         check=True)
    assert "Launching 3 jobs" in result.stdout + result.stderr
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()
    jobs = sorted(sweep.glob("[0-9]*"))
    assert len(jobs) == 3
    steps = [{s["name"]: s["status"] for s in json.loads((job / "build.json").read_text())["steps"]} for job in jobs]
    assert [job["train"] for job in steps] == ["built", "cached", "cached"], "the sweep trains once"
    assert steps[0] == {"data": "built", "train": "built", "saved_model": "built", "tflite[float]": "built",
                        "reference": "built", "verify[tflite/float]": "built",
                        "benchmark[saved_model]": "built", "benchmark[tflite/float]": "built"}
    assert steps[2] == {"data": "cached", "train": "cached", "saved_model": "cached", "tflite[int8]": "built",
                        "reference": "cached", "verify[tflite/int8]": "built",
                        "benchmark[saved_model]": "cached", "benchmark[tflite/int8]": "built",
                        "tflite_layers[int8]": "not needed"}

    report = json.loads((sweep / "sweep_report.json").read_text())
    assert [j["status"] for j in report["jobs"]] == ["succeeded"] * 3
    made = {(r["job"], r["artifact"]): r["made_by"] for r in report["rows"]}
    assert made == {
        (0, "saved_model"): "export.tflite.quantization=float", (0, "tflite/float"): "export.tflite.quantization=float",
        (1, "saved_model"): "export.tflite.quantization=dynamic", (1, "tflite/dynamic"): "export.tflite.quantization=dynamic",
        (2, "saved_model"): "export.tflite.quantization=int8", (2, "tflite/int8"): "export.tflite.quantization=int8",
    }  # fmt: skip
    assert any(r["pareto_size"] for r in report["rows"]) and any(r["pareto_latency"] for r in report["rows"])
    assert (sweep / "sweep_report.md").read_text().count("\n| ") == 7
    assert (sweep / "sweep_report.html").read_text().count("<svg") == 2
    assert f"sweep report: {sweep.relative_to(tmp_path) / 'sweep_report.html'} (and .md, .json; 3 jobs)" in result.stdout


@pytest.mark.slow
def test_report_gates_and_diff(tmp_path):
    run_tfbuild("recipe=digits", *QUICK, cwd=tmp_path, check=True)
    first = run_dirs(tmp_path)[0]
    for name in ("report.json", "report.md", "report.html"):
        assert (first / name).stat().st_size > 0
    report = json.loads((first / "report.json").read_text())
    assert report["status"] == "passed"
    int8 = next(r for r in report["rows"] if r["artifact"] == "tflite/int8")
    assert int8["runtime"] == "LiteRT 2.3.0" and int8["verify"] == "passed" and int8["gate"] == "-"
    assert 0 < int8["p50_ms"] <= int8["p95_ms"] <= int8["p99_ms"] and int8["samples_per_s"] > 0

    # A limit just past a measured figure fails the build, after the report is written; at it, passes.
    size = int8["bytes"]
    over = run_tfbuild("recipe=digits", *QUICK, f"gates.tflite.int8.max_bytes={size - 1}", cwd=tmp_path)
    assert over.returncode == 1
    assert over.stderr.strip() == (
        f"tfbuild: error: gate failed: tflite/int8 (LiteRT 2.3.0): size {size} bytes > {size - 1} bytes "
        "(gates.tflite.int8.max_bytes)"
    )
    failed_run = run_dirs(tmp_path)[1]
    assert json.loads((failed_run / "report.json").read_text())["status"] == "failed"
    assert json.loads((failed_run / "build.json").read_text())["status"] == "failed"
    assert "failed: max_bytes" in over.stdout
    at = run_tfbuild("recipe=digits", *QUICK, f"gates.tflite.int8.max_bytes={size}", cwd=tmp_path)
    assert at.returncode == 0, at.stderr

    lowest = min(report["rows"], key=lambda row: row["accuracy"])  # the gate holds every artifact
    accuracy = lowest["accuracy"]
    above = run_tfbuild("recipe=digits", *QUICK, f"gates.min_accuracy={accuracy + 0.001}", cwd=tmp_path)
    assert above.returncode == 1 and "(gates.min_accuracy)" in above.stderr and lowest["artifact"] in above.stderr
    assert run_tfbuild("recipe=digits", *QUICK, f"gates.min_accuracy={accuracy}", cwd=tmp_path).returncode == 0

    # Two builds of the same cached artifacts: nothing regressed.
    same = subprocess.run([str(Path(sys.executable).parent / "tfbuild-report"), "diff", str(first), str(run_dirs(tmp_path)[2])],
                          capture_output=True, text=True)
    assert same.returncode == 0, same.stderr
    assert "tflite/int8" in same.stdout and "none" in same.stdout


@pytest.mark.slow
def test_verification_off_is_said_and_recorded(tmp_path):
    result = run_tfbuild("recipe=digits", *TINY, "export.tflite.quantization=float", "verify.enabled=false",
                         cwd=tmp_path, check=True)
    assert "verification is off (verify.enabled=false): 1 artifact was not run on its runtime" in result.stdout
    record = json.loads((run_dirs(tmp_path)[0] / "build.json").read_text())
    assert record["verification"] == "off"
    assert not [s for s in record["steps"] if s["kind"] in ("verify", "reference")]


def write_hostile_recipes(folder: Path) -> None:
    """Recipe files that once stopped every command: each is parsed only when selected now."""
    folder.mkdir(parents=True, exist_ok=True)
    line = "# @package _global_\n" + "".join(f"key{i}: {'v' * 90}\n" for i in range(1000))
    (folder / "huge.yaml").write_text(line * 110)  # about 10 MB
    levels = [f"l0: &l0 [{', '.join(['lol'] * 10)}]"] + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 12)]
    (folder / "bomb.yaml").write_text("\n".join(levels) + "\n")  # 10**12 nodes once expanded
    (folder / "syntax.yaml").write_text("# @package _global_\ntrain:\n  epochs: [3\n")
    (folder / "pytag.yaml").write_text(f"ran: !!python/object/apply:os.system ['touch {folder}/ran']\n")
    (folder / "selfref.yaml").write_text("train: &t\n  epochs: 3\n  again: *t\n")
    (folder / "latin1.yaml").write_bytes("# @package _global_\nname: caf\xe9\n".encode("latin-1"))


@pytest.mark.parametrize(
    "recipe, expected",
    [
        ("huge", "recipe=huge: {cwd}/recipes/huge.yaml: 10,"),
        ("bomb", "recipe=bomb: {cwd}/recipes/bomb.yaml: more than 20,000 YAML nodes once aliases are expanded "
                 "(the limit for a recipe)"),
        ("syntax", "recipe=syntax: cannot parse {cwd}/recipes/syntax.yaml: while parsing a flow sequence"),
        ("pytag", "recipe=pytag: {cwd}/recipes/pytag.yaml: line 1: tag '!!python/object/apply:os.system' builds a "
                  "Python object; recipes hold plain values only"),
        ("selfref", "recipe=selfref: {cwd}/recipes/selfref.yaml: line 3: an alias inside its own anchor"),
        ("latin1", "recipe=latin1: {cwd}/recipes/latin1.yaml: not UTF-8 text (byte 29)"),
    ],
)
def test_refused_recipe_files_are_one_line_with_no_traceback_and_write_nothing(tmp_path, recipe, expected):
    write_hostile_recipes(tmp_path / "recipes")
    result = run_tfbuild(f"recipe={recipe}", cwd=tmp_path, python_code=WITH_IMPORT_PROBE)
    assert_refused(result, expected.format(cwd=tmp_path), tmp_path)
    assert not (tmp_path / "outputs" / "cache").exists()
    assert not (tmp_path / "recipes" / "ran").exists()


def test_recipes_that_are_not_selected_are_never_read(tmp_path):
    write_hostile_recipes(tmp_path / "recipes")
    # Each job of a sweep composes its own recipe's content: these two fail their checks, each
    # with its own value, so neither was composed from the other or from a stand-in.
    (tmp_path / "recipes" / "zero.yaml").write_text("# @package _global_\ntrain:\n  epochs: 0\n")
    (tmp_path / "recipes" / "negative.yaml").write_text("# @package _global_\ntrain:\n  epochs: -7\n")
    commands = {
        "plan": ["recipe=digits", "dry_run=true"],
        "help": ["--help"],
        "sweep": ["-m", "recipe=zero,negative"],
        "glob sweep": ["-m", "recipe=glob(digits*,exclude=[digits_multi_gpu,digits_all])", "dry_run=true"],
        "misspelled": ["recipe=digts"],
    }
    seconds = {}
    for label, args in commands.items():
        started = time.perf_counter()
        results = run_tfbuild(*args, cwd=tmp_path)
        seconds[label] = time.perf_counter() - started
        commands[label] = results
    print("\nwith a 10 MB recipe, an alias bomb and broken YAML beside them: "
          + ", ".join(f"{label} {s:.2f} s" for label, s in seconds.items()))
    assert commands["plan"].returncode == 0, commands["plan"].stderr
    assert "tfbuild plan: digits" in commands["plan"].stdout
    assert commands["help"].returncode == 0, commands["help"].stderr
    assert "recipe: bomb, diabetes, digits, digits_all" in commands["help"].stdout
    sweep = commands["sweep"]
    assert sweep.returncode == 2
    assert "train.epochs must be at least 1, got 0" in sweep.stderr
    assert "train.epochs must be at least 1, got -7" in sweep.stderr
    glob = commands["glob sweep"]
    assert glob.returncode == 0, glob.stderr
    assert [line.split()[-1] for line in glob.stdout.splitlines() if line.strip().startswith("tfbuild plan:")] == [
        "digits", "digits_browser", "digits_edge", "digits_mlp", "digits_mobilenet", "digits_pruned", "digits_qat"
    ]
    assert commands["misspelled"].returncode == 2
    assert commands["misspelled"].stderr.strip().endswith("(did you mean 'digits'?)")
