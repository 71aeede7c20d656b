"""How fast is tfbuild on a realistic network? Prints, each in a fresh folder and cache:

  a  plain script       recipe=digits_mobilenet's TensorFlow work with no build system
                        (benchmarks/plain_mobilenet.py: train MobileNetV2 alpha 0.35 on digits
                        at 32x32x3, SavedModel, TFLite float and int8, TF.js; nothing verified)
  b  cold, no checks    `tfbuild recipe=digits_mobilenet verify.enabled=false benchmark.enabled=false`
  c  cold build         `tfbuild recipe=digits_mobilenet` (every export verified and benchmarked)
  d  224x224, no train  `tfbuild model=file ...`: an untrained MobileNetV2 (alpha 1.0) at
                        224x224x3 saved as .keras, with random images in a .npz: SavedModel,
                        TFLite float and int8, TF.js, each verified on 256 samples and benchmarked
                        (d has no plain counterpart: it shows where the time goes at this size)

Targets (issue #12): b <= 1.1x a; verification plus benchmarking, (c - b) / c, <= 30% of the
cold build. Also the seconds of each step from each build's build.json (the cost centers), the
plain script's phases beside them, CPU seconds of each command (less sensitive than wall time
to the other work on a shared machine) and the load average around each command.

Wall times are medians of --repeat fresh runs (subprocesses, as a user runs them). The
tfbuild runs use this checkout's package (PYTHONPATH) and the `tfbuild` next to
sys.executable.

    python benchmarks/realistic_model.py [--repeat 1] [--epochs 15] [--skip-224]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TFBUILD = Path(sys.executable).parent / "tfbuild"
RECIPE = "digits_mobilenet"
# 224x224 inputs: verify.samples=256 needs at least 256 test samples, and int8 calibration
# takes 100 training samples: 400 images split 280 test / 20 validation / 100 train.
IMAGES_224, TEST_FRACTION_224, VALIDATION_FRACTION_224 = 400, 0.7, 0.05
VERIFY_SAMPLES_224 = 256


@dataclass
class Run:
    wall: float
    cpu: float  # user + system seconds of the command and its children (Node for TF.js)
    load: tuple[float, float]  # 1-minute load average before and after
    returncode: int
    stdout: str
    stderr: str
    build: dict[str, Any] = field(default_factory=dict)  # build.json, for tfbuild runs


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def run(command: list[str], cwd: Path, *, must_pass: bool = True) -> Run:
    cwd.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=environment())
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    records = sorted(cwd.glob("outputs/runs/**/build.json"))
    build = json.loads(records[-1].read_text()) if records else {}
    if result.returncode != 0 and (must_pass or not build):  # no build.json: nothing was built to time
        sys.exit(f"{shown(command)} failed (exit {result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return Run(wall, cpu, (load_before, os.getloadavg()[0]), result.returncode, result.stdout, result.stderr, build)


def shown(command: list[str]) -> str:
    """The command as a user would type it (paths of this machine shortened)."""
    words = [Path(command[0]).name if command[0] in (str(TFBUILD), sys.executable) else command[0], *command[1:]]
    return " ".join(w.replace(str(ROOT) + "/", "") for w in words)


def commands(args: argparse.Namespace, data_224: Path | None) -> dict[str, list[str]]:
    epochs = [] if args.epochs is None else [f"train.epochs={args.epochs}"]
    plain_epochs = [] if args.epochs is None else ["--epochs", str(args.epochs)]
    found = {
        "a": [sys.executable, str(HERE / "plain_mobilenet.py"), "plain_out", *plain_epochs],
        "b": [str(TFBUILD), f"recipe={RECIPE}", *epochs, "verify.enabled=false", "benchmark.enabled=false"],
        "c": [str(TFBUILD), f"recipe={RECIPE}", *epochs],
    }
    if data_224 is not None:
        found["d"] = [
            str(TFBUILD), "model=file", f"model.path={data_224 / 'mobilenet_v2_224.keras'}",
            "data=npz", f"data.path={data_224 / 'images.npz'}",
            f"data.test_fraction={TEST_FRACTION_224}", f"data.validation_fraction={VALIDATION_FRACTION_224}",
            "export.formats=[saved_model,tflite,tfjs]", "export.tflite.quantization=[float,int8]",
            "export.tfjs.quantization=[none]", f"verify.samples={VERIFY_SAMPLES_224}",
            # An untrained network's outputs on random images are near ties between classes,
            # so int8's top-1 agreement says little about the converter: measured, not enforced.
            "verify.tolerances.tflite.int8.min_top1_agreement=null",
        ]  # fmt: skip
    return found


# An untrained MobileNetV2's BatchNormalization layers hold their initial statistics (mean 0,
# variance 1): activations saturate and every input gives the same uniform output, which any
# export matches exactly. One training-mode pass with momentum 0 sets each layer's statistics
# from the images (no weight changes), so outputs depend on the input and verification means
# something. The images are smooth random patterns (7x7 blocks) plus noise, unlike each other.
MAKE_224 = """
import os, sys
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1"); os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from pathlib import Path
import numpy as np
import tf_keras as keras
out, n = Path(sys.argv[1]), int(sys.argv[2])
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
blocks = rng.random((n, 7, 7, 3), dtype=np.float32).repeat(32, axis=1).repeat(32, axis=2)
x = 0.8 * blocks + 0.2 * rng.random((n, 224, 224, 3), dtype=np.float32)
model = keras.applications.MobileNetV2(alpha=1.0, weights=None, input_shape=(224, 224, 3), classes=10)
norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
for layer in norms:
    layer.momentum = 0.0
model(x[:32], training=True)
for layer in norms:
    layer.momentum = 0.999
model.save(out / "mobilenet_v2_224.keras")
np.savez(out / "images.npz", x=x, y=rng.integers(0, 10, n))
print(model.count_params())
"""


def make_224(folder: Path) -> tuple[float, str]:
    """The untrained MobileNetV2 as .keras and random images as .npz (not timed as a build)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = run([sys.executable, "-c", MAKE_224, str(folder), str(IMAGES_224)], folder)
    return made.wall, made.stdout.strip().splitlines()[-1]


def step_seconds(build: dict[str, Any]) -> dict[str, float]:
    return {s["name"]: float(s["seconds"]) for s in build.get("steps", [])}


def plain_phases(stdout: str) -> dict[str, float]:
    lines = [line for line in stdout.splitlines() if line.startswith("PHASES ")]
    return json.loads(lines[-1][len("PHASES "):]) if lines else {}


def median_of(runs: list[Run], pick: Any) -> float | None:
    values = [v for v in (pick(r) for r in runs) if v is not None]
    return statistics.median(values) if values else None


def tfjs_verified(build: dict[str, Any]) -> str:
    """'N samples on <runtime>' for each TF.js verify step of a build."""
    said = []
    for step in build.get("steps", []):
        if step["kind"] == "verify" and step.get("info", {}).get("format") == "tfjs":
            for runtime, figures in step["info"].get("runtimes", {}).items():
                said.append(f"{step['name']}: {figures.get('samples')} samples on {runtime}, "
                            f"max |diff| {figures.get('max_abs_diff', float('nan')):.1e}")  # fmt: skip
        elif step["kind"] == "verify" and step.get("status") == "failed" and "tfjs" in step["name"]:
            said.append(f"{step['name']}: failed: {step.get('error', '')[:200]}")
    return "; ".join(said) or "no TF.js verification recorded"


def failures(build: dict[str, Any]) -> str:
    """'; failed: step (error)' for each failed step, or ''."""
    failed = [f"{s['name']} ({(s.get('error') or '').splitlines()[0][:160]})" for s in build.get("steps", [])
              if s["status"] == "failed"]  # fmt: skip
    return f"; FAILED: {'; '.join(failed)}" if failed else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1, help="fresh rounds; medians are printed (default 1: long)")
    parser.add_argument("--epochs", type=int, default=None, help="train.epochs for a quick check (default: the recipe's 15)")
    parser.add_argument("--skip-224", action="store_true", help="skip the 224x224 MobileNetV2 build (d)")
    args = parser.parse_args()

    rounds: dict[str, list[Run]] = {"a": [], "b": [], "c": [], "d": []}
    with tempfile.TemporaryDirectory(prefix="tfbuild-realistic-") as tmp:
        data_224 = None if args.skip_224 else Path(tmp) / "data224"
        made = make_224(data_224) if data_224 is not None else None
        plan = commands(args, data_224)
        print("commands (each in a fresh folder, so on an empty cache: cache.dir defaults to outputs/cache there):")
        for label, command in plan.items():
            print(f"  {label}  {shown(command)}")
        print(f"  tfbuild = {TFBUILD} with PYTHONPATH={ROOT}")
        if made is not None:
            print(f"  d's inputs: MobileNetV2(alpha=1.0, weights=None, input_shape=(224,224,3), classes=10), {made[1]} "
                  f"parameters, BatchNormalization statistics from one pass over 32 images, saved as .keras; "
                  f"{IMAGES_224} random 224x224x3 float32 images (7x7 blocks + noise), labels 0..9 "
                  f"(made in {made[0]:.1f} s, not counted)")  # fmt: skip
        print(f"machine: {os.cpu_count()} cores; load average at start {' '.join(f'{v:.2f}' for v in os.getloadavg())}",
              flush=True)  # fmt: skip
        for i in range(args.repeat):
            work = Path(tmp) / f"round{i}"
            for label, command in plan.items():
                # A failed verification still ran every step (failures skip only dependents):
                # c and d are timed whatever their verdict, which is reported below.
                rounds[label].append(run(command, work / label, must_pass=label in ("a", "b")))
                r = rounds[label][-1]
                print(f"round {i + 1}/{args.repeat} {label}: {r.wall:.1f} s wall, {r.cpu:.1f} s CPU, "
                      f"load {r.load[0]:.2f} -> {r.load[1]:.2f}" + (f", exit {r.returncode}" if r.returncode else ""),
                      flush=True)  # fmt: skip
            shutil.rmtree(work, ignore_errors=True)  # the 224x224 split and cache are large
    report(rounds, args)


def report(rounds: dict[str, list[Run]], args: argparse.Namespace) -> None:
    wall = {k: median_of(v, lambda r: r.wall) for k, v in rounds.items() if v}
    cpu = {k: median_of(v, lambda r: r.cpu) for k, v in rounds.items() if v}
    a, b, c = wall["a"], wall["b"], wall["c"]
    names = {"a": "plain script", "b": "cold build, verify+benchmark off", "c": "cold build, verify+benchmark on",
             "d": "224x224 model=file, cold build"}  # fmt: skip
    print(f"\n{'':3}{'measure':<34}{'wall s':>9}{'CPU s':>9}{'vs a':>8}  {'load 1-min (start -> end)'}")
    for k in wall:
        loads = ", ".join(f"{r.load[0]:.2f} -> {r.load[1]:.2f}" for r in rounds[k])
        ratio = f"{wall[k] / a:7.2f}x" if k != "d" else f"{'':8}"
        print(f"{k:<3}{names[k]:<34}{wall[k]:>9.1f}{cpu[k]:>9.1f}{ratio}  {loads}")
    print(f"\nb / a = {b / a:.2f}x wall, {cpu['b'] / cpu['a']:.2f}x CPU   (target <= 1.10x)  "
          f"{'met' if b / a <= 1.1 else 'MISSED'}")  # fmt: skip
    share = (c - b) / c
    print(f"(c - b) / c = {share:.0%} wall, {(cpu['c'] - cpu['b']) / cpu['c']:.0%} CPU   (target <= 30%)  "
          f"{'met' if share <= 0.30 else 'MISSED'}: verification and benchmarks cost {c - b:.1f} s")  # fmt: skip

    plain = {k: median_of(rounds["a"], lambda r, k=k: plain_phases(r.stdout).get(k)) for k in plain_phases(rounds["a"][-1].stdout)}
    steps_b = {k: median_of(rounds["b"], lambda r, k=k: step_seconds(r.build).get(k)) for k in step_seconds(rounds["b"][-1].build)}
    steps_c = {k: median_of(rounds["c"], lambda r, k=k: step_seconds(r.build).get(k)) for k in step_seconds(rounds["c"][-1].build)}
    print(f"\nseconds per step (build.json; a: the plain script's phases)\n{'step':<26}{'a':>8}{'b':>8}{'c':>8}")
    for name in [*steps_c, *(k for k in steps_b if k not in steps_c)]:
        print(f"{name:<26}{fmt(plain.get(name))}{fmt(steps_b.get(name))}{fmt(steps_c.get(name))}")
    outside = {k: wall[k] - sum(s.values()) for k, s in (("b", steps_b), ("c", steps_c))}
    print(f"{'outside steps':<26}{fmt(a - sum(v for k, v in plain.items() if k not in ('total', 'import')))}"
          f"{fmt(outside['b'])}{fmt(outside['c'])}   (start-up, imports, planning, hashing, report)")  # fmt: skip
    if "import" in plain:
        print(f"{'  of which TF import (a)':<26}{fmt(plain['import'])}")
    for label in ("b", "c"):
        build = rounds[label][-1].build
        print(f"build.json {label}: status {build.get('status')}, {build.get('seconds')} s in the build, "
              f"verification {build.get('verification')}{failures(build)}")  # fmt: skip

    if rounds["d"]:
        d = rounds["d"][-1]
        steps_d = {k: median_of(rounds["d"], lambda r, k=k: step_seconds(r.build).get(k)) for k in step_seconds(d.build)}
        print(f"\n224x224 MobileNetV2, model=file (d): cold build {wall['d']:.1f} s wall, {cpu['d']:.1f} s CPU, "
              f"status {d.build.get('status', f'exit {d.returncode}')}")  # fmt: skip
        print(f"{'step':<26}{'seconds':>9}  status, result")
        said = {s["name"]: f"{s['status']}, {s.get('info', {}).get('summary', '')}" for s in d.build.get("steps", [])}
        for name, seconds in steps_d.items():
            print(f"{name:<26}{fmt(seconds, 9)}  {said.get(name, '')[:90]}")
        print(f"{'outside steps':<26}{fmt(wall['d'] - sum(steps_d.values()), 9)}")
        print(f"TF.js verification: {tfjs_verified(d.build)}{failures(d.build)}")
    print(f"\nload average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())} ({os.cpu_count()} cores)")


def fmt(value: float | None, width: int = 8) -> str:
    return f"{value:>{width}.1f}" if value is not None else f"{'-':>{width}}"


if __name__ == "__main__":
    main()
