"""Small inline-SVG charts for the HTML reports.

Hand-written SVG instead of matplotlib: the report is rendered on every build, cached ones
included, and importing matplotlib would cost a fully cached build more than everything
else it does. The charts need nothing more than points, bars, axes and labels.
"""

from __future__ import annotations

from html import escape
from typing import Iterable, Sequence

WIDTH, HEIGHT = 640, 400
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 40, 60
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def _svg(width: float, height: float) -> str:
    # The viewBox lets a page scale the chart down to a phone's width instead of clipping it.
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">')


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high == low:
        return [low]
    step = (high - low) / (count - 1)
    return [low + i * step for i in range(count)]


def _tick_texts(ticks: Sequence[float]) -> list[str]:
    """Tick labels with as many significant digits as it takes to tell them apart (a range
    of 45.41..45.48 must not read 45.4, 45.4, 45.5)."""
    for digits in range(3, 9):
        texts = [f"{t:.{digits}g}" for t in ticks]
        if len(set(texts)) == len(texts):
            return texts
    return texts


def _padded(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or abs(high) * 0.05 or 1.0
    return low - pad, high + pad


def _frame(title: str, x_label: str, y_label: str) -> list[str]:
    return [
        _svg(WIDTH, HEIGHT),
        f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>',
        f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}" stroke="#444"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" stroke="#444"/>',
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 15}" text-anchor="middle">{escape(x_label)}</text>',
        f'<text x="15" y="{(TOP + HEIGHT - BOTTOM) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 15 {(TOP + HEIGHT - BOTTOM) / 2})">{escape(y_label)}</text>',
    ]


def scatter_plot(
    points: Sequence[tuple[float, float, str]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    front: Iterable[int] = (),
) -> str:
    """Labelled points; the indices in `front` (a Pareto front) are joined and drawn bold."""
    x_low, x_high = _padded([p[0] for p in points])
    y_low, y_high = _padded([p[1] for p in points])

    def sx(x: float) -> float:
        return LEFT + (x - x_low) / (x_high - x_low) * (WIDTH - LEFT - RIGHT)

    def sy(y: float) -> float:
        return HEIGHT - BOTTOM - (y - y_low) / (y_high - y_low) * (HEIGHT - TOP - BOTTOM)

    parts = _frame(title, x_label, y_label)
    x_ticks, y_ticks = _ticks(x_low, x_high), _ticks(y_low, y_high)
    for x, text in zip(x_ticks, _tick_texts(x_ticks)):
        parts.append(f'<text x="{sx(x):.1f}" y="{HEIGHT - BOTTOM + 15}" text-anchor="middle">{text}</text>')
    for y, text in zip(y_ticks, _tick_texts(y_ticks)):
        parts.append(f'<text x="{LEFT - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{text}</text>')
    front = sorted(set(front), key=lambda i: points[i][0])
    if len(front) > 1:
        path = " ".join(f"{sx(points[i][0]):.1f},{sy(points[i][1]):.1f}" for i in front)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#d62728" stroke-dasharray="4 3"/>')
    placed: list[tuple[float, float]] = []
    for i, (x, y, label) in enumerate(points):
        bold = i in front
        color = "#d62728" if bold else COLORS[0]
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="{5 if bold else 4}" fill="{color}"><title>{escape(label)}</title></circle>')
        # Labels of points in the right half go to their left, so they stay inside the chart.
        right = sx(x) > (LEFT + WIDTH - RIGHT) / 2
        anchor = ' text-anchor="end"' if right else ""
        # Points that (nearly) coincide, e.g. a float TFLite and TF.js with equal figures: their
        # labels are stacked, not drawn over each other.
        label_y = sy(y) - 5
        while any(abs(px - sx(x)) < 120 and abs(py - label_y) < 12 for px, py in placed):
            label_y -= 12
        placed.append((sx(x), label_y))
        parts.append(f'<text x="{sx(x) + (-7 if right else 7):.1f}" y="{label_y:.1f}" fill="#333"{anchor}>{escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def bar_chart(
    groups: Sequence[tuple[str, float | None, float | None]],
    *,
    title: str,
    value_label: str,
    series: tuple[str, str],
) -> str:
    """Horizontal bars, two per group (e.g. p50 and p95 per artifact)."""
    values = [v for _, a, b in groups for v in (a, b) if v is not None] or [1.0]
    high = max(values) * 1.1 or 1.0
    row = 26
    height = TOP + len(groups) * row + BOTTOM
    left = 260
    parts = [
        _svg(WIDTH + 120, height),
        f'<text x="{(WIDTH + 120) / 2}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>',
    ]
    scale = (WIDTH + 120 - left - RIGHT - 60) / high
    for i, (label, first, second) in enumerate(groups):
        y = TOP + i * row
        parts.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">{escape(label)}</text>')
        for j, value in enumerate((first, second)):
            if value is None:
                continue
            parts.append(f'<rect x="{left}" y="{y + 3 + j * 10}" width="{max(value * scale, 1):.1f}" height="9" fill="{COLORS[j]}"><title>{series[j]} {value:.4g} {value_label}</title></rect>')
            parts.append(f'<text x="{left + value * scale + 4:.1f}" y="{y + 11 + j * 10}" fill="#333">{value:.3g}</text>')
    legend_y = height - 20
    for j, name in enumerate(series):
        parts.append(f'<rect x="{left + j * 80}" y="{legend_y - 9}" width="10" height="10" fill="{COLORS[j]}"/>')
        parts.append(f'<text x="{left + j * 80 + 14}" y="{legend_y}">{escape(name)} ({escape(value_label)})</text>')
    parts.append("</svg>")
    return "\n".join(parts)
