"""Axis ranges and ticks for the report's charts: linear or logarithmic, with round ticks.

The range is the data's, padded a little on each side, so no point ever sits on the frame
and no axis is forced to zero (accuracies at 95.5-95.8% get an axis of 95.5-95.8%, not
0-100%). Ticks are round numbers (1, 2, 2.5 or 5 times a power of ten) inside that range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

PAD = 0.06  # of the data's span, each side
LOG_SPAN = 10.0  # a latency axis turns logarithmic when max/min exceeds this


def use_log_axis(values: Iterable[float | None]) -> bool:
    """Logarithmic when the values span more than LOG_SPAN times: on a linear axis the small
    ones (a 0.006 ms .tflite beside a 0.3 ms SavedModel) would all sit at zero."""
    measured = [v for v in values if v is not None]
    if len(measured) < 2 or min(measured) <= 0:
        return False
    return max(measured) / min(measured) > LOG_SPAN


@dataclass(frozen=True)
class Axis:
    low: float
    high: float
    ticks: tuple[float, ...]
    log: bool = False

    def fraction(self, value: float) -> float:
        """Where `value` falls between low (0) and high (1)."""
        if self.log:
            return (math.log10(value) - math.log10(self.low)) / (math.log10(self.high) - math.log10(self.low))
        return (value - self.low) / (self.high - self.low)

    def tick_texts(self) -> list[str]:
        return tick_texts(self.ticks, self.log)


def axis_for(values: Sequence[float], *, log: bool = False, bounds: tuple[float, float] | None = None) -> Axis:
    """The axis for these values; `bounds` (e.g. 0-100 for a percentage) limit the ticks, so
    an axis padded past 100% never labels 100.5%."""
    return _log_axis(values) if log else _linear_axis(values, bounds)


def nice_step(raw: float) -> float:
    """The smallest round step (1, 2, 2.5, 5 x 10^k) at least `raw`."""
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * power >= raw * (1 - 1e-9):
            return factor * power
    return 10 * power


def _linear_axis(values: Sequence[float], bounds: tuple[float, float] | None, count: int = 5) -> Axis:
    low, high = min(values), max(values)
    span = high - low
    if span == 0:  # one value (or several equal ones): centre it
        half = abs(high) * 0.05 or 1.0
        low, high = low - half, high + half
    else:
        low, high = low - span * PAD, high + span * PAD
    # The round step whose ticks come nearest `count` (a range of 41-266 KB gets 50, 100, ...
    # 250, not just 100 and 200).
    steps = [nice_step((high - low) / n) for n in range(2, 2 * count)]
    step = min(steps, key=lambda s: (abs(len(_multiples(low, high, s)) - count), -s))
    ticks = [t for t in _multiples(low, high, step) if bounds is None or bounds[0] <= t <= bounds[1]]
    return Axis(low, high, tuple(ticks))


def _multiples(low: float, high: float, step: float) -> list[float]:
    """The multiples of `step` from low to high."""
    return [_clean(i * step) for i in range(math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9) + 1)]


def _log_axis(values: Sequence[float]) -> Axis:
    low, high = math.log10(min(values)), math.log10(max(values))
    pad = (high - low) * PAD or 0.1
    low, high = low - pad, high + pad
    decades = range(math.floor(low), math.ceil(high) + 1)
    ticks = [10.0**d for d in decades if low <= d <= high]
    if len(ticks) < 3:  # two decades or less: 2 and 5 in between too
        ticks = [m * 10.0**d for d in decades for m in (1, 2, 5) if low <= math.log10(m * 10.0**d) <= high]
    return Axis(10**low, 10**high, tuple(_clean(t) for t in ticks), log=True)


def _clean(value: float) -> float:
    """0.30000000000000004 -> 0.3: ticks are computed, their texts must be round."""
    return float(f"{value:.12g}")


def tick_texts(ticks: Sequence[float], log: bool = False) -> list[str]:
    """Round ticks in the fewest digits that tell them apart: 95.5, 95.6 (not 95.50000001);
    on a log axis 0.001, 0.01, 0.1, 1."""
    if log:
        return [f"{t:g}" for t in ticks]
    for decimals in range(0, 10):
        texts = [f"{t:.{decimals}f}" for t in ticks]
        if all(abs(float(text) - t) <= abs(t) * 1e-9 for text, t in zip(texts, ticks)):
            return texts
    return [f"{t:g}" for t in ticks]
