"""Do parallel steps pay? Prints, per recipe, the cold-build wall time (empty cache) with
jobs=1 (one step at a time, in tfbuild's process) and jobs=N (worker processes), and checks
that both made byte-identical artifacts (build.json's sha256 of every artifact).

The two are interleaved (1, N, then N, 1, ...) so that load from elsewhere on the machine
falls on both alike; each round prints the 1-minute load average it started under.
Target (issue #15): digits_all at jobs=2 <= 0.8x its jobs=1 time on 2 cores.

    python benchmarks/parallel_speed.py [--repeat 2] [--jobs 2] [--recipes digits_all digits] [-- OVERRIDE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from build_speed import TFBUILD, timed


def cold_build(work: Path, recipe: str, jobs: int, overrides: list[str]) -> tuple[float, dict[str, str]]:
    """Seconds for a cold build in the fresh folder `work`, and its artifacts' digests."""
    work.mkdir(parents=True)
    seconds, _ = timed([str(TFBUILD), f"recipe={recipe}", f"jobs={jobs}", *overrides], work)
    (record,) = [p for p in (work / "outputs" / "runs" / recipe).glob("*/build.json") if not p.parent.is_symlink()]
    artifacts = json.loads(record.read_text())["artifacts"]
    return seconds, {a["name"]: a["sha256"] for a in artifacts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2, help="rounds per recipe (each: one build per jobs value)")
    parser.add_argument("--jobs", type=int, default=2, help="the parallel build's jobs")
    parser.add_argument("--recipes", nargs="+", default=["digits_all", "digits_mobilenet", "digits"])
    parser.add_argument("overrides", nargs="*", help="added to every build, e.g. benchmark.enabled=false")
    args = parser.parse_args()
    summary = []
    with tempfile.TemporaryDirectory(prefix="tfbuild-parallel-") as tmp:
        for recipe in args.recipes:
            times: dict[int, list[float]] = {1: [], args.jobs: []}
            digests: dict[int, dict[str, str]] = {}
            for i in range(args.repeat):
                order = (1, args.jobs) if i % 2 == 0 else (args.jobs, 1)
                line = []
                for jobs in order:
                    load = os.getloadavg()[0]
                    seconds, digests[jobs] = cold_build(Path(tmp) / f"{recipe}-{i}-{jobs}", recipe, jobs, args.overrides)
                    times[jobs].append(seconds)
                    line.append(f"jobs={jobs} {seconds:6.2f} s (load {load:.1f})")
                print(f"{recipe} round {i + 1}/{args.repeat}: " + ", ".join(line), flush=True)
                if digests[1] != digests[args.jobs]:
                    differ = sorted(n for n in digests[1] if digests[1][n] != digests[args.jobs].get(n))
                    print(f"  artifacts differ between jobs=1 and jobs={args.jobs}: {', '.join(differ)}")
            one, many = statistics.median(times[1]), statistics.median(times[args.jobs])
            summary.append(f"{recipe:<18}{one:>9.2f}{many:>9.2f}{many / one:>8.2f}x")
    print(f"\n{'recipe':<18}{'jobs=1':>9}{f'jobs={args.jobs}':>9}{'ratio':>9}   (median seconds; target digits_all <= 0.80x)")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
