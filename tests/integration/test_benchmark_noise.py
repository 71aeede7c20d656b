"""Benchmarks of the same cache entries, measured again and again (`force=[benchmark]`), are
not regressions of each other: `tfbuild-report diff` holds every change against the noise the
runs measured, so a CI job gating on it does not fail at random."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tfbuild.runtimes.tfjs_node import node_problem

from tests.conftest import TINY, run_tfbuild

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(node_problem() is not None, reason=f"TF.js needs Node: {node_problem()}"),
]

# One artifact per runtime (TensorFlow, LiteRT, TF.js in Node), timed as the README advises
# on a busy shared machine: slow periods there last seconds (the SavedModel ran 15-35% slower
# through a whole default 0.4-s run about once in five runs at a load of 2 to 5 on 2 cores),
# so 10 rounds over about 2 s per artifact. Only the training is shrunk.
BUILD = [*(o for o in TINY if not o.startswith("benchmark.")), "export.formats=[saved_model,tflite,tfjs]",
         "export.tflite.quantization=float", "export.tfjs.quantization=uint8", "benchmark.min_seconds=1",
         "benchmark.rounds=10"]  # fmt: skip
RUNS = 3


def diff(a: Path, b: Path) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "tfbuild-report"), "diff", str(a), str(b), "--json"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_benchmarks_of_the_same_artifacts_are_not_regressions_of_each_other(tmp_path):
    run_tfbuild("recipe=digits", *BUILD, f"hydra.run.dir={tmp_path / 'built'}", cwd=tmp_path, check=True)
    runs = []
    for i in range(RUNS):
        folder = tmp_path / f"bench{i}"
        done = run_tfbuild("recipe=digits", *BUILD, "force=[benchmark]", f"hydra.run.dir={folder}", cwd=tmp_path, check=True)
        steps = json.loads((folder / "build.json").read_text())["steps"]
        # Measured again, on the very artifacts the first build made.
        assert {s["name"]: s["reason"] for s in steps if s["kind"] == "benchmark"} == {
            "benchmark[saved_model]": "forced", "benchmark[tflite/float]": "forced", "benchmark[tfjs/uint8]": "forced",
        }, done.stdout  # fmt: skip
        assert all(s["status"] == "cached" for s in steps if s["kind"] in ("train", "tflite", "tfjs"))
        rows = json.loads((folder / "report.json").read_text())["rows"]
        assert all(r["rounds"] == len(r["p50_rounds_ms"]) == len(r["p95_rounds_ms"]) == 10 and r["p50_spread"] >= 0
                   for r in rows)  # fmt: skip
        runs.append(folder)
    for a, b in itertools.permutations(runs, 2):  # each pair, both ways: B slower than A or A than B
        compared = diff(a, b)
        changes = json.loads(compared.stdout)
        assert compared.returncode == 0, f"{a.name} -> {b.name}: {compared.stderr}\n{json.dumps(changes, indent=1)}"
        assert [c["artifact"] for c in changes] == ["saved_model", "tflite/float", "tfjs/uint8"]
        assert not any("slower" in c["regressions"] for c in changes)
