"""What does a fully cached build cost? Prints the no-op rebuild's wall time per recipe, with
the stamp the previous build left (tfbuild/stamp.py: no Hydra) and without it (the stamps
folder removed before each call: Hydra composes the config), against the cold build.

A no-op rebuild composes the config, plans, checks every cache entry it would use (manifest,
entry digest, a stat per file), publishes the artifacts into a new run folder and writes the
report. It must not import TensorFlow (checked on every call).

With --compare PATH, the same commands also run with another checkout of tfbuild first on
PYTHONPATH (for example a worktree of the previous release: `git worktree add ../base v0.1`),
interleaved call by call so that both sides see the same machine load, and the ratio is
printed. Each side has its own cache, built once before timing.

    python benchmarks/noop_speed.py [--repeat 9] [--recipes digits digits_all] [--compare ../base]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROBE = (
    "import sys; from tfbuild.cli import main; sys.argv = ['tfbuild', *sys.argv[1:]]\n"
    "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
    "print('TF_IMPORTED', 'tensorflow' in sys.modules)"
)


def run(args: list[str], cwd: Path, checkout: Path | None, cold: bool = False) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_")}
    if checkout is not None:
        env["PYTHONPATH"] = str(checkout)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0 or not (cold or "TF_IMPORTED False" in result.stdout):
        sys.exit(f"tfbuild {' '.join(args)} failed or imported TensorFlow:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=9, help="timed no-op rebuilds per recipe and side (median shown)")
    parser.add_argument("--recipes", nargs="+", default=["digits", "digits_all"])
    parser.add_argument("--compare", type=Path, help="another tfbuild checkout to time the same way, interleaved")
    args = parser.parse_args()
    sides: dict[str, Path | None] = {"this checkout": None}
    if args.compare:
        sides[f"compare ({args.compare})"] = args.compare.resolve()
    print(f"{'recipe':<14}{'side':<22}{'steps':>6}{'cold s':>8}{'no-op s':>9}{'min':>7}{'max':>7}{'% cold':>8}{'no stamp s':>12}")
    with tempfile.TemporaryDirectory(prefix="tfbuild-noop-") as tmp:
        for recipe in args.recipes:
            folders = {}
            for name, checkout in sides.items():
                folders[name] = Path(tmp) / recipe / str(len(folders))
                folders[name].mkdir(parents=True)
            cold = {}
            for name, checkout in sides.items():  # the cold build fills this side's cache
                cold[name] = run([f"recipe={recipe}"], folders[name], checkout, cold=True)
            times: dict[str, list[float]] = {name: [] for name in sides}
            unstamped: dict[str, list[float]] = {name: [] for name in sides}
            for _ in range(args.repeat):
                for name, checkout in sides.items():
                    times[name].append(run([f"recipe={recipe}"], folders[name], checkout))
                    shutil.rmtree(folders[name] / "outputs" / "cache" / "stamps", ignore_errors=True)
                    unstamped[name].append(run([f"recipe={recipe}"], folders[name], checkout))  # stamps again
            for name in sides:
                steps = len(list((folders[name] / "outputs" / "cache" / "entries").glob("*/*")))
                t, median = times[name], statistics.median(times[name])
                print(f"{recipe:<14}{name[:21]:<22}{steps:>6}{cold[name]:>8.2f}{median:>9.3f}{min(t):>7.3f}{max(t):>7.3f}"
                      f"{100 * median / cold[name]:>7.1f}%{statistics.median(unstamped[name]):>12.3f}")
            if args.compare:
                base, this = (statistics.median(times[n]) for n in list(sides)[::-1])
                print(f"{recipe:<14}{'ratio this / compare':<22}{'':>14}{this / base:>9.3f}")


if __name__ == "__main__":
    main()
