"""Does a sweep train once? Prints, on an empty cache:

  4 plain runs   benchmarks/plain_digits.py once per quantization: each run retrains, exports,
                 verifies and benchmarks its one variant (what a sweep without a cache costs)
  tfbuild sweep  `tfbuild -m recipe=digits export.tflite.quantization=float,dynamic,fp16,int8`
                 (Hydra multirun: later jobs find training in the shared cache)

Target (issue #4): the sweep costs <= 0.35x the four plain runs. Also prints the sweep's
report location, so the Pareto plot can be looked at.

    python benchmarks/sweep_speed.py [--repeat 1]
"""

from __future__ import annotations

import sys
from pathlib import Path

from build_speed import HERE, TFBUILD, median_rounds, timed

VARIANTS = ("float", "dynamic", "fp16", "int8")


def one_round(work: Path) -> dict[str, float]:
    work.mkdir(parents=True)
    plain = sum(
        timed([sys.executable, str(HERE / "plain_digits.py"), str(work / f"plain_{v}"), v], work)[0] for v in VARIANTS
    )
    sweep = timed([str(TFBUILD), "-m", "recipe=digits", f"export.tflite.quantization={','.join(VARIANTS)}"], work)[0]
    reports = list((work / "outputs" / "sweeps").glob("*/sweep_report.md"))
    assert len(reports) == 1, "the sweep wrote its report"
    return {"4 plain runs": plain, "tfbuild sweep": sweep}


def main() -> None:
    median = median_rounds(one_round, __doc__, 1)
    ratio = median["tfbuild sweep"] / median["4 plain runs"]
    print(f"\n4 plain runs   {median['4 plain runs']:7.2f} s")
    print(f"tfbuild sweep  {median['tfbuild sweep']:7.2f} s   {ratio:.2f}x of the plain runs (target <= 0.35x)")


if __name__ == "__main__":
    main()
