"""Are benchmark figures repeatable? Builds a recipe once, re-runs only its benchmark steps
(`force=[benchmark]`) --repeat times, and prints each artifact's p50 latency per run and the
spread (max - min) / median. Target (issue #4): two runs agree within 10% on p50.

    python benchmarks/bench_repeatability.py [--recipe digits_all] [--repeat 2] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from build_speed import TFBUILD, timed


def p50s(run_dir: Path) -> dict[str, float]:
    rows = json.loads((run_dir / "report.json").read_text())["rows"]
    return {f"{r['artifact']} ({r['runtime']})": r["p50_ms"] for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="digits_all")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides (e.g. benchmark.min_seconds=0.1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tfbuild-repeat-") as tmp:
        work = Path(tmp)
        timed([str(TFBUILD), f"recipe={args.recipe}", *args.overrides], work)
        runs = []
        for _ in range(args.repeat):
            timed([str(TFBUILD), f"recipe={args.recipe}", "force=[benchmark]", *args.overrides], work)
            latest = sorted((work / "outputs" / "runs" / args.recipe).iterdir())[-1]
            runs.append(p50s(latest))
    worst = 0.0
    print(f"{'artifact (runtime)':<40}" + "".join(f"{'run ' + str(i + 1):>12}" for i in range(len(runs))) + f"{'spread':>10}")
    for name in runs[0]:
        values = [run[name] for run in runs]
        spread = (max(values) - min(values)) / statistics.median(values)
        worst = max(worst, spread)
        print(f"{name:<40}" + "".join(f"{v:>12.4f}" for v in values) + f"{spread:>9.1%}")
    print(f"\nworst p50 spread: {worst:.1%} (target <= 10%)")


if __name__ == "__main__":
    main()
