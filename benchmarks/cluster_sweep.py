"""One sweep, three launchers. Prints the wall time of

  tfbuild -m recipe=digits export.tflite.quantization=float,dynamic,fp16,int8

on an empty cache in a fresh folder, with each launcher:

  basic           Hydra's default: the jobs one after another in the tfbuild process
  ray (2 nodes)   hydra/launcher=ray on a two-node Ray cluster started here (head + worker,
                  one CPU each; tests/ray_cluster.py), jobs as Ray tasks; the cluster's start
                  is timed apart, as a team's cluster is already up
  submitit_local  hydra/launcher=submitit_local: one process per job, all at once (each with
                  its worker processes, one per CPU), and again with jobs=1 (none)

and, for each, how many jobs trained (1: the others found training in the shared cache).
On a machine with few cores, the launchers that run jobs at once mostly overlap the jobs'
start-up (Python, TensorFlow import): the work is the same.

    python benchmarks/cluster_sweep.py [--repeat 1]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from build_speed import TFBUILD, median_rounds, timed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.ray_cluster import LocalRayCluster  # noqa: E402

SWEEP = ["-m", "recipe=digits", "export.tflite.quantization=float,dynamic,fp16,int8"]
LAUNCHERS = {
    "basic": [],
    "ray (2 nodes)": ["hydra/launcher=ray"],
    "submitit_local": ["hydra/launcher=submitit_local"],
    "submitit_local, jobs=1": ["hydra/launcher=submitit_local", "jobs=1"],  # one process per job, no workers
}
trainings: dict[str, int] = {}  # launcher -> jobs that trained, in the last round


def trained(work: Path) -> int:
    builds = [json.loads(p.read_text()) for p in (work / "outputs" / "sweeps").glob("*/*/build.json")]
    assert len(builds) == 4 and all(b["status"] == "succeeded" for b in builds), "every job succeeded"
    return sum(s["status"] == "built" for b in builds for s in b["steps"] if s["name"] == "train")


def one_round(work: Path) -> dict[str, float]:
    work.mkdir(parents=True)
    figures = {}
    started = time.perf_counter()
    with LocalRayCluster(work / "ray_cluster") as cluster:
        figures["ray cluster start"] = time.perf_counter() - started
        for name, args in LAUNCHERS.items():
            folder = work / name.replace(" ", "_").replace(",", "")
            folder.mkdir()
            address = [f"hydra.launcher.ray.init.address={cluster.address}"] if name.startswith("ray") else []
            figures[name] = timed([str(TFBUILD), *SWEEP, *args, *address], folder)[0]
            trainings[name] = trained(folder)
    return figures


def main() -> None:
    median = median_rounds(one_round, __doc__, 1)
    basic = median["basic"]
    print(f"\n{'launcher':<24}{'seconds':>9}{'vs basic':>10}  jobs that trained")
    for name in LAUNCHERS:
        print(f"{name:<24}{median[name]:>9.2f}{median[name] / basic:>9.2f}x  {trainings[name]} of 4")
    print(f"{'(ray cluster start':<24}{median['ray cluster start']:>9.2f}{'':>10}  not in the ray figure)")


if __name__ == "__main__":
    main()
