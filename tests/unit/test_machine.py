"""The machine in the keys: the CPU family and the GPUs read from /proc (no TensorFlow), in
the keys of exactly the steps whose numbers depend on them, with threads and oneDNN fixed
by config."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tfbuild import machine
from tfbuild.cache import Cache, cache_key
from tfbuild.keys import explain_change
from tfbuild.resolver import resolve
from tfbuild.plan import make_plan
from tfbuild.runner import run_plan, step_material
from tfbuild.steps import REGISTRY
from tfbuild.tfenv import NUMERICS_ENV, Numerics, environment_numerics, set_for_plan
from tfbuild.worker_pool import Pools, WorkerPool

from tests.fakes import step


def cpuinfo(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return path


@pytest.mark.parametrize("arch, text, family", [
    ("x86_64", "processor : 0\nflags : fpu sse2 avx avx2 fma avx512f avx512bw amx_tile amx_bf16\n", "x86-64-avx512-amx"),
    ("x86_64", "processor : 0\nflags : fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni\n", "x86-64-avx512"),
    ("x86_64", "processor : 0\nflags\t\t: fpu sse2 avx avx2 fma\nprocessor : 1\nflags : avx512f\n", "x86-64-avx2"),
    ("x86_64", "processor : 0\nflags : fpu sse2 avx avx2\n", "x86-64"),  # AVX2 without FMA: no FMA kernels
    ("x86_64", "processor : 0\nflags : fpu sse2 avx\n", "x86-64"),
    ("x86_64", "processor : 0\n", "x86-64-unknown"),
    ("aarch64", "processor : 0\nFeatures : fp asimd sve sve2\n", "aarch64-sve"),
    ("aarch64", "processor : 0\nFeatures : fp asimd\n", "aarch64"),
    ("riscv64", "processor : 0\n", "riscv64"),
])  # fmt: skip
def test_the_cpu_family_is_the_first_cpus_instruction_set_tier(tmp_path, arch, text, family):
    assert machine.detected_family(cpuinfo(tmp_path, text), "Linux", arch) == family
    assert machine.detected_family(cpuinfo(tmp_path, text), "Darwin", arch) == f"darwin-{family}"


def test_an_unreadable_cpuinfo_is_an_unknown_family_not_a_crash(tmp_path):
    assert machine.detected_family(tmp_path / "missing", "Linux", "x86_64") == "x86-64-unknown"


def test_the_override_is_read_in_one_place(monkeypatch):
    monkeypatch.setenv(machine.FAMILY_ENV, "x86-64-simulated")
    assert machine.family() == "x86-64-simulated"
    assert machine.key_entry(accelerator=False) == {"cpu": "x86-64-simulated"}
    monkeypatch.delenv(machine.FAMILY_ENV)
    assert machine.family() == machine.detected_family()


def gpus(tmp_path: Path, *models: str) -> Path:
    root = tmp_path / "gpus"
    for i, model in enumerate(models):
        (root / f"0000:0{i}:00.0").mkdir(parents=True)
        (root / f"0000:0{i}:00.0" / "information").write_text(f"Model: \t\t {model}\nIRQ: 17\n" if model else "IRQ: 17\n")
    return root


@pytest.mark.parametrize("models, visible, expected", [
    (("NVIDIA H100 80GB HBM3",), None, ("NVIDIA H100 80GB HBM3",)),
    (("NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-40GB"), "0,1", ("NVIDIA A100-SXM4-40GB",)),
    (("NVIDIA L4", "NVIDIA A10G"), "1", ("NVIDIA A10G", "NVIDIA L4")),  # a mixed machine: every model
    (("NVIDIA H100 80GB HBM3",), "-1", ()),
    (("NVIDIA H100 80GB HBM3",), "", ()),
    (("",), None, ("nvidia (model unknown)",)),
    ((), None, ()),
])  # fmt: skip
def test_gpu_models_come_from_the_drivers_proc_files(tmp_path, monkeypatch, models, visible, expected):
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert machine.gpu_models(gpus(tmp_path, *models)) == expected


# -- which steps are keyed by the machine, and by threads and oneDNN -------------------------


MACHINE_STEPS = {"train", "optimize", "tflite[int8]", "tflite[int16x8]", "tflite_layers[int8]", "tflite_repair[int8]"}


@pytest.mark.parametrize("overrides", [
    ("recipe=digits_all",),
    ("recipe=digits_pruned", "export.tflite.quantization=[float,int8,int16x8]", "export.tflite.int8.max_metric_drop=0.01"),
    ("recipe=digits_qat",),
])  # fmt: skip
def test_exactly_the_machine_dependent_steps_are_keyed_by_machine_threads_and_onednn(compose_cfg, monkeypatch, overrides):
    plan = resolve(compose_cfg(*overrides)).plan
    materials = {s.name: step_material(s, REGISTRY[s.kind], {}, lambda p: "digest") for s in plan.steps}
    keyed = {name for name, m in materials.items() if "machine" in m}
    assert keyed and keyed <= MACHINE_STEPS, keyed
    assert {n for n in materials if n.startswith(("train", "optimize", "tflite_"))} <= keyed
    for name, material in materials.items():
        has = "machine" in material
        assert has == ("threads" in material["params"] and "onednn" in material["params"]), name
    # Another family, other threads, oneDNN on: other keys for those steps, the same for the rest.
    monkeypatch.setenv(machine.FAMILY_ENV, "x86-64-elsewhere")
    for changed in ((), ("train.threads=7",), ("train.onednn=true",)):
        other_plan = resolve(compose_cfg(*overrides, *changed)).plan
        others = {s.name: step_material(s, REGISTRY[s.kind], {}, lambda p: "digest") for s in other_plan.steps}
        for name in materials:
            assert (cache_key(others[name]) != cache_key(materials[name])) == (name in keyed), (changed, name)
    assert explain_change(materials["train"], {**materials["train"], "machine": {"cpu": "x86-64-elsewhere"}}) \
        .startswith(f"machine changed (cpu: {machine.detected_family()} -> x86-64-elsewhere)")  # fmt: skip


def test_a_gpu_enters_the_key_of_steps_that_may_run_on_it(compose_cfg, monkeypatch):
    monkeypatch.setattr(machine, "gpu_models", lambda root=None: ("NVIDIA H100 80GB HBM3",))
    plan = resolve(compose_cfg("recipe=digits_qat")).plan
    entries = {s.name: getattr(REGISTRY[s.kind], "machine", lambda s: None)(s) for s in plan.steps}
    assert entries["train"]["gpu"] == entries["optimize"]["gpu"] == "NVIDIA H100 80GB HBM3"
    assert "gpu" not in entries["tflite[int8]"], "calibration runs on the CPU"
    cpu_devices = resolve(compose_cfg("recipe=digits", "target.strategy=mirrored", "target.cpu_devices=2")).plan
    assert "gpu" not in REGISTRY["train"].machine(cpu_devices.step("train"))


@pytest.mark.parametrize("threads, onednn", [(1, False), (2, False), (3, True)])
def test_numerics_set_what_tensorflow_reads_when_it_starts(threads, onednn):
    assert Numerics.of({"threads": threads, "onednn": onednn}).environment() == {
        "TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0",
        "TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": str(threads)}  # fmt: skip
    assert Numerics.of({"threads": threads}) is None


@pytest.mark.parametrize("value, message", [
    ("train.threads=0", "train.threads"),
    ("train.threads=100000", "train.threads"),
    ("train.onednn=maybe", "train.onednn"),
])  # fmt: skip
def test_bad_numerics_settings_are_refused_in_one_line(tmp_path, value, message):
    result = subprocess.run([str(Path(sys.executable).parent / "tfbuild"), "recipe=digits", value, "dry_run=true"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_reading_the_machine_is_cheap_and_imports_no_tensorflow():
    code = ("import sys, time; from tfbuild import machine; t = time.perf_counter(); "
            "machine.detected_family(); machine.gpu_models(); machine.key_entry(accelerator=True); "
            "print(time.perf_counter() - t); assert 'tensorflow' not in sys.modules")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert float(result.stdout) < 0.05, result.stdout


class EnvironmentStep:
    """Records the TensorFlow numerics variables of the process that runs it (no TensorFlow)."""

    kind, version, tools = "environment", 1, ()

    def run(self, ctx):
        for path in ctx.outputs.values():
            path.write_text("x")
        return {"environment": environment_numerics(), "pid": os.getpid()}


def test_workers_start_with_the_builds_numerics_and_are_replaced_for_others(tmp_path, monkeypatch):
    """A sweep's builds share workers while their threads and oneDNN agree; a build that asks
    for others gets fresh workers (TensorFlow fixes them at its import)."""
    for name in NUMERICS_ENV:  # restored after the test, whatever set_for_plan does
        monkeypatch.setenv(name, "unset")
    monkeypatch.setattr(WorkerPool.__init__, "__defaults__", (None,))  # no TensorFlow preload
    seen = []
    with Pools() as pools:
        for i, (threads, onednn) in enumerate([(3, False), (3, False), (5, False), (5, True)]):
            set_for_plan([{"epochs": 1}, {"threads": threads, "onednn": onednn}])
            pool = pools.for_jobs(2)
            spec = replace(step(f"s{i}", text=str(i)), kind="environment")
            result = run_plan(make_plan([spec]), Cache(tmp_path / "cache"), {"environment": EnvironmentStep()}, workers=pool)
            (built,) = result.steps
            assert built.info.get("environment") == Numerics(threads, onednn).environment(), built.error
            seen.append(id(pool))
    assert seen[0] == seen[1] and len(set(seen)) == 3


@pytest.mark.parametrize("started, asked, in_worker", [
    (None, (5, False), False),  # no TensorFlow here yet: this process imports it as asked
    ((2, False), (2, False), False),
    ((2, False), (5, False), True),  # a sweep's next job with other train.threads
    ((2, False), (2, True), True),
])  # fmt: skip
def test_one_job_builds_in_a_fresh_worker_when_this_processes_tensorflow_cannot(monkeypatch, started, asked, in_worker):
    from tfbuild import tfenv

    for name in NUMERICS_ENV:
        monkeypatch.setenv(name, "unset")
    monkeypatch.setattr(tfenv, "_process", None if started is None else Numerics(*started))
    set_for_plan([{"threads": asked[0], "onednn": asked[1]}])
    with Pools() as pools:
        pool = pools.for_jobs(1)
        assert (pool is not None) == in_worker
        assert pool is None or (pool.slots == 1 and pool.numerics == Numerics(*asked).environment())
