"""What do recipes cost at start-up? Prints, for `tfbuild recipe=digits dry_run=true` and
`tfbuild --help`, the median wall time and CPU time (user + system) of --repeat fresh runs,
with the project's recipes alone and with --extra small recipe files in ./recipes.

CPU time is the figure to compare on a shared machine: wall time grows with other load.

    python benchmarks/recipe_startup.py [--repeat 5] [--extra 200]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TFBUILD = str(Path(sys.executable).parent / "tfbuild")
COMMANDS = {"recipe=digits dry_run=true": ["recipe=digits", "dry_run=true"], "--help": ["--help"]}
SMALL_RECIPE = "# @package _global_\ndefaults:\n  - override /model: mlp\ntrain:\n  epochs: 2\n"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def medians(args: list[str], cwd: Path, repeat: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), children_cpu()
        subprocess.run([TFBUILD, *args], cwd=cwd, check=True, capture_output=True)
        walls.append(time.perf_counter() - wall)
        cpus.append(children_cpu() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--extra", type=int, default=200)
    options = parser.parse_args()
    for extra in (0, options.extra):
        with tempfile.TemporaryDirectory() as folder:
            project = Path(folder)
            if extra:
                (project / "recipes").mkdir()
                for i in range(extra):
                    (project / "recipes" / f"extra_{i:03d}.yaml").write_text(SMALL_RECIPE)
            for label, args in COMMANDS.items():
                wall, cpu = medians(args, project, options.repeat)
                print(f"{extra:4d} extra recipes  tfbuild {label:28s} wall {wall:6.2f} s  cpu {cpu:6.2f} s", flush=True)


if __name__ == "__main__":
    main()
