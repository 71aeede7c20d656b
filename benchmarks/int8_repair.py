"""The int8 walkthrough's figures: a model built to quantize badly, its per-layer report, and
the repair, as `tfbuild` builds them (subprocesses, a fresh project folder and cache).

1. `python examples/outlier_model.py` makes the model (one hidden unit scaled 300x, the float
   model unchanged) and its train/validation/test parts.
2. `tfbuild recipe=outlier`: int8 fails verification; the per-layer report runs because it did.
3. `tfbuild recipe=outlier export.tflite.int8.max_metric_drop=0.01 pin=1.0`: the repair.
4. `tfbuild recipe=pinned/outlier-1.0 cache.dir=fresh`: the release rebuild, no search.

Printed: test accuracy and size of float, full int8 and repaired int8; the worst layers; the
search; the time each step took; whether the pinned rebuild is byte-identical.

With --mobilenet it also repairs the realistic recipe where int8 misses its tolerance
(digits_mobilenet at 10 epochs, batch 64: top-1 agreement 94.4% < 95%); about 3 minutes.

    python benchmarks/int8_repair.py [--mobilenet] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TFBUILD = str(Path(sys.executable).parent / "tfbuild")


def tfbuild(cwd: Path, *args: str) -> tuple[int, float]:
    started = time.perf_counter()
    result = subprocess.run([TFBUILD, *args], cwd=cwd, capture_output=True, text=True)
    return result.returncode, time.perf_counter() - started


def last_run(cwd: Path) -> Path:
    return max((p.parent for p in (cwd / "outputs" / "runs").rglob("build.json")), key=lambda p: p.name)


def steps(run: Path) -> dict[str, dict]:
    return {s["name"]: s for s in json.loads((run / "build.json").read_text())["steps"]}


def rows(run: Path) -> dict[str, dict]:
    return {r["artifact"]: r for r in json.loads((run / "report.json").read_text())["rows"]}


def show_repair(label: str, run: Path, failing: Path | None) -> None:
    built = steps(run)
    repair = built["tflite_repair[int8]"]["info"]
    layers = built["tflite_layers[int8]"]["info"]
    report = rows(run)
    full = rows(failing)["tflite/int8"] if failing else None
    print(f"\n== {label}")
    print(f"{'artifact':<26}{'test accuracy':>15}{'size KB':>10}")
    print(f"{'float (tflite/float)':<26}{report['tflite/float']['accuracy']:>15.1%}{report['tflite/float']['bytes'] / 1024:>10.1f}")
    if full:
        print(f"{'full int8':<26}{full['accuracy']:>15.1%}{full['bytes'] / 1024:>10.1f}")
    chosen = repair["chosen"]
    label = f"int8, {len(chosen['float_ops'])} ops in float"
    print(f"{label:<26}{report['tflite/int8']['accuracy']:>15.1%}{report['tflite/int8']['bytes'] / 1024:>10.1f}")
    print(f"validation split ({repair['samples']} samples): {repair['reference']['metric']} float "
          f"{repair['reference']['value']:.1%}, full int8 {repair['full_int8']['value']:.1%}, repaired {chosen['value']:.1%}; "
          f"p50 full int8 {repair['full_int8']['p50_ms']} ms, repaired {chosen['p50_ms']} ms")  # fmt: skip
    print(f"worst layers ({layers['ops']} quantized ops):")
    for w in layers["worst"][:3]:
        print(f"  {w['rank']}. {w['layer'] or w['op_type']:<20} {w['op_type']:<16} rel. error {w['rel_error']:.1%}  "
              f"rmse/scale {w['rmse_over_scale']:.2f}")  # fmt: skip
    print("search (float ops -> drop):", ", ".join(f"{t['float_ops']} -> {t['drop']:.4f}{'' if t['meets'] else ' x'}"
                                                   for t in repair["trials"]))  # fmt: skip
    seconds = {n: round(s["seconds"], 2) for n, s in built.items() if n.startswith("tflite")}
    print("step seconds:", seconds)


def outlier(project: Path) -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    from outlier_model import make  # noqa: PLC0415

    figures = make(project / "outputs" / "outlier")
    print(f"outlier model: float test accuracy {figures['accuracy_after']:.1%} (before the outlier "
          f"{figures['accuracy_before']:.1%})")  # fmt: skip
    code, seconds = tfbuild(project, "recipe=outlier")
    failing = last_run(project)
    layers = steps(failing)["tflite_layers[int8]"]
    print(f"recipe=outlier: exit {code} in {seconds:.1f} s; verify[tflite/int8]: "
          f"{steps(failing)['verify[tflite/int8]']['status']}; tflite_layers[int8] {layers['status']} "
          f"in {layers['seconds']:.2f} s")  # fmt: skip
    code, seconds = tfbuild(project, "recipe=outlier", "export.tflite.int8.max_metric_drop=0.01", "pin=1.0")
    repaired = last_run(project)
    print(f"repair: exit {code} in {seconds:.1f} s")
    show_repair("outlier model", repaired, failing)
    code, seconds = tfbuild(project, "recipe=pinned/outlier-1.0", "cache.dir=fresh_cache")
    rebuilt = last_run(project)
    same = (rebuilt / "tflite" / "model_int8.tflite").read_bytes() == (repaired / "tflite" / "model_int8.tflite").read_bytes()
    print(f"pinned rebuild from an empty cache: exit {code} in {seconds:.1f} s, tflite_repair searched: "
          f"{'pin' in steps(rebuilt)['tflite_repair[int8]']['info']}, model_int8.tflite byte-identical: {same}")  # fmt: skip


def mobilenet(project: Path) -> None:
    shrink = ("recipe=digits_mobilenet", "train.epochs=10", "train.batch_size=64", "export.formats=[saved_model,tflite]",
              "export.tflite.quantization=[float,int8]", "benchmark.enabled=false")  # fmt: skip
    code, seconds = tfbuild(project, *shrink)
    failing = last_run(project)
    print(f"\ndigits_mobilenet (10 epochs, batch 64): exit {code} in {seconds:.1f} s; "
          f"verify[tflite/int8]: {steps(failing)['verify[tflite/int8]'].get('error', 'passed')}")  # fmt: skip
    code, seconds = tfbuild(project, *shrink, "benchmark.enabled=true", "export.tflite.int8.max_metric_drop=0.005")
    print(f"repair: exit {code} in {seconds:.1f} s")
    if code == 0:
        show_repair("digits_mobilenet", last_run(project), failing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mobilenet", action="store_true", help="also repair digits_mobilenet (about 3 minutes)")
    parser.add_argument("--keep", type=Path, help="build in this folder and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tfbuild-int8-") as scratch:
        project = args.keep or Path(scratch)
        project.mkdir(parents=True, exist_ok=True)
        outlier(project)
        if args.mobilenet:
            mobilenet(project)


if __name__ == "__main__":
    main()
