"""How fast is tfbuild? Prints, for the default recipe on an empty cache:

  plain script   the same TensorFlow work with no build system (benchmarks/plain_digits.py)
  cold build     `tfbuild recipe=digits` on an empty cache
  no-op rebuild  the same command again: every step cached
  quant change   `export.tflite.quantization=int16x8`: one new conversion, training reused

Each figure is the median wall time of --repeat fresh runs, in subprocesses, as a user sees
it. Targets (issue #15): no-op <= 0.35 s and <= 5% of the cold build, without importing
TensorFlow; cold <= 1.0x plain (every step built at once where it can, jobs = CPUs).

    python benchmarks/build_speed.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
TFBUILD = Path(sys.executable).parent / "tfbuild"
NOOP_PROBE = (
    "import sys; from tfbuild.cli import main; sys.argv = ['tfbuild', *sys.argv[1:]]\n"
    "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
    "print('TF_IMPORTED', 'tensorflow' in sys.modules)"
)


def timed(command: list[str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return seconds, result.stdout


def one_round(work: Path) -> dict[str, float]:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    figures = {"plain script": timed([sys.executable, str(HERE / "plain_digits.py"), str(work / "plain")], work)[0]}
    figures["cold build"] = timed([str(TFBUILD), "recipe=digits"], work)[0]
    seconds, stdout = timed([sys.executable, "-c", NOOP_PROBE, "recipe=digits"], work)
    if "TF_IMPORTED False" not in stdout:
        sys.exit("the no-op rebuild imported TensorFlow")
    figures["no-op rebuild"] = seconds
    figures["quant change"] = timed([str(TFBUILD), "recipe=digits", "export.tflite.quantization=int16x8"], work)[0]
    return figures


def median_rounds(one_round: Callable[[Path], dict[str, float]], doc: str, default_repeat: int) -> dict[str, float]:
    """Run `one_round` in fresh folders --repeat times, print each round, return the medians."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=default_repeat, help="fresh rounds; medians are printed")
    args = parser.parse_args()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="tfbuild-bench-") as tmp:
        for i in range(args.repeat):
            rounds.append(one_round(Path(tmp) / f"round{i}"))
            print(f"round {i + 1}/{args.repeat}: " + ", ".join(f"{k} {v:.2f} s" for k, v in rounds[-1].items()), flush=True)
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def main() -> None:
    median = median_rounds(one_round, __doc__, 3)
    plain = median["plain script"]
    print(f"\n{'measure':<16}{'seconds':>9}{'vs plain':>10}  target")
    cold = median["cold build"]
    targets = {"cold build": f"<= {plain:.2f} s (1.0x plain)",
               "no-op rebuild": f"<= 0.35 s and <= {0.05 * cold:.2f} s (5% of cold), no TensorFlow import"}
    for key, seconds in median.items():
        print(f"{key:<16}{seconds:>9.2f}{seconds / plain:>9.2f}x  {targets.get(key, '')}")


if __name__ == "__main__":
    main()
