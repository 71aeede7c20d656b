"""The environment that changes bytes is fixed or keyed, against the real tool: the CPUs a
build may use (taskset) and TF_ENABLE_ONEDNN_OPTS in the user's environment change nothing
in the trained weights; a pin built on another machine family is named before training, and
pin_reproduce=metrics rebuilds it and holds its metrics instead of its bytes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY, run_tfbuild
from tfbuild.machine import FAMILY_ENV, family
from tfbuild.pins import seal_of
from tfbuild.tfenv import NUMERICS_ENV

pytestmark = pytest.mark.slow

# The train step and the least after it: the digits CNN (its convolutions split their sums
# over threads; an MLP this small runs single-threaded anyway), 300 samples, one epoch.
TRAIN_ONLY = ["recipe=digits", "train.epochs=1", "data.limit=300", "export.formats=[]", "target.formats=[saved_model]",
              "verify.enabled=false", "benchmark.enabled=false"]  # fmt: skip


def trained_weights(cwd: Path, cache: str) -> bytes:
    (model,) = (cwd / cache).rglob("model.h5")  # only the train step writes one
    return model.read_bytes()


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset (util-linux)")
def test_cpu_count_and_onednn_in_the_environment_do_not_change_the_trained_weights(tmp_path):
    """A build pinned to one CPU (TensorFlow's default: one thread; one job, in tfbuild's own
    process) and one with every CPU (a job per CPU: training in a worker), with oneDNN asked
    on or off by the environment, train byte-identical weights. Before tfbuild fixed them,
    the taskset build's weights differed. (On a 1-CPU machine the taskset variants cannot
    differ; the oneDNN ones still can.)"""
    users = {k: v for k, v in os.environ.items() if k not in NUMERICS_ENV}  # as a user's shell has it
    variants = {
        "all CPUs": ([], {}),
        "taskset -c 0": (["taskset", "-c", "0"], {}),
        "TF_ENABLE_ONEDNN_OPTS=1": ([], {"TF_ENABLE_ONEDNN_OPTS": "1"}),
        "taskset -c 0, TF_ENABLE_ONEDNN_OPTS=0": (["taskset", "-c", "0"], {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    }
    tfbuild = str(Path(sys.executable).parent / "tfbuild")
    running = {  # side by side: what they make cannot depend on the load
        name: subprocess.Popen([*prefix, tfbuild, *TRAIN_ONLY, f"cache.dir=cache{i}"], cwd=tmp_path, env={**users, **env},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i, (name, (prefix, env)) in enumerate(variants.items())
    }  # fmt: skip
    for name, process in running.items():
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, f"{name}: {output}"
    weights = {name: trained_weights(tmp_path, f"cache{i}") for i, name in enumerate(variants)}
    different = [name for name, data in weights.items() if data != weights["all CPUs"]]
    assert different == [], f"weights differ from the {len(os.sched_getaffinity(0))}-CPU build's: {different}"


# -- pins on another machine family ---------------------------------------------------------

PIN = "recipes/pinned/digits-m1.yaml"
OTHER = {FAMILY_ENV: "x86-64-elsewhere"}


@pytest.fixture(scope="module")
def pinned(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("machine_pin")
    # TINY's data and epochs: int8 verification holds only for a model that learned something.
    run_tfbuild("recipe=digits", *TINY, "export.formats=[tflite]", "export.tflite.quantization=[int8]",
                "target.formats=[saved_model]", "benchmark.enabled=false", "pin=m1", cwd=cwd, check=True)  # fmt: skip
    return cwd


def test_a_pin_records_the_machine_family_and_its_metrics(pinned):
    lock = yaml.safe_load((pinned / PIN).read_text())["lock"]
    assert lock["machine"]["cpu"] == family()
    assert any(name.startswith("train ") and name.endswith(" accuracy") for name in lock["metrics"])
    assert any(name.startswith("tflite/int8 (") for name in lock["metrics"]), lock["metrics"]


def cache_entries(cwd: Path) -> set[str]:
    return {str(p) for p in (cwd / "outputs" / "cache").rglob("*") if p.is_dir()}


@pytest.mark.parametrize("extra", [[], ["pin_reproduce=bytes"], ["pin_reproduce=bytes", "force=true"]])
def test_another_family_is_named_before_training_and_refused(pinned, extra):
    before = cache_entries(pinned)
    result = run_tfbuild("recipe=pinned/digits-m1", *extra, cwd=pinned, env=OTHER)
    assert result.returncode == 2, result.stdout + result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert f"pinned on {family()}, this machine is x86-64-elsewhere" in line and "pin_reproduce=metrics" in line
    assert cache_entries(pinned) == before, "nothing trained"


def test_the_same_family_still_reproduces_byte_for_byte(pinned):
    result = run_tfbuild("recipe=pinned/digits-m1", cwd=pinned, check=True)
    assert "byte-identical to the lock" in result.stdout


def test_pin_reproduce_metrics_rebuilds_on_another_family_and_holds_the_metrics(pinned):
    result = run_tfbuild("recipe=pinned/digits-m1", "pin_reproduce=metrics", cwd=pinned, env=OTHER, check=True)
    assert "reproduced pinned/digits-m1 by its metrics" in result.stdout, result.stdout
    record = json.loads(sorted((pinned / "outputs" / "runs").rglob("build.json"), key=os.path.getmtime)[-1].read_text())
    train = next(s for s in record["steps"] if s["name"] == "train")
    assert train["status"] == "built", "another family's key: trained again, not served the pin's entry"


def metrics_moved(pinned: Path, tmp_path: Path, by: float) -> str:
    """A copy of the pin whose first recorded metric moved by `by`, resealed: the rebuild must
    hold the pin's metrics, whatever they are."""
    document = yaml.safe_load((pinned / PIN).read_text())
    name = next(n for n in document["lock"]["metrics"] if n.startswith("train "))
    document["lock"]["metrics"][name] += by
    document["lock"]["seal"] = seal_of(document)
    target = pinned / "recipes" / "pinned" / f"digits-moved{str(by).replace('.', '_').replace('-', 'm')}.yaml"
    target.write_text("# @package _global_\n" + yaml.safe_dump(document, sort_keys=False))
    return target.stem, name


@pytest.mark.parametrize("by, tolerance, passes", [(0.005, "0.01", True), (-0.2, "0.01", False), (0.02, "0.05", True),
                                                   (0.02, "0", False)])  # fmt: skip
def test_metrics_mode_fails_on_a_metric_beyond_pin_tolerance(pinned, tmp_path, by, tolerance, passes):
    stem, name = metrics_moved(pinned, tmp_path, by)
    try:
        result = run_tfbuild(f"recipe=pinned/{stem}", "pin_reproduce=metrics", f"pin_tolerance={tolerance}",
                             cwd=pinned, env=OTHER)  # fmt: skip
    finally:
        (pinned / "recipes" / "pinned" / f"{stem}.yaml").unlink()
    assert (result.returncode == 0) == passes, result.stdout + result.stderr
    if not passes:
        assert result.returncode == 1 and f"pin: {name} is " in result.stderr, result.stderr


@pytest.mark.parametrize("args, message", [
    (["pin_reproduce=exactly"], "pin_reproduce"),
    (["pin_reproduce=metrics", "pin_tolerance=-1"], "pin_tolerance must be 0 or more"),
])  # fmt: skip
def test_bad_reproduce_settings_are_refused_in_one_line(pinned, args, message):
    result = run_tfbuild("recipe=pinned/digits-m1", *args, cwd=pinned, env=OTHER)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
