"""Small inline-SVG charts for the HTML reports.

Hand-written SVG instead of matplotlib: the report is rendered on every build, cached ones
included, and importing matplotlib would cost a fully cached build more than everything
else it does. The charts need nothing more than points, axes and labels; where the labels
go is plot_labels' job, the axes' ranges and ticks plot_axes'.
"""

from __future__ import annotations

from html import escape
from typing import Callable, Iterable, Sequence

from .plot_axes import Axis, axis_for, use_log_axis
from .plot_labels import CHAR_WIDTH, Box, place_labels

WIDTH, HEIGHT = 500, 330
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 36, 50
FONT = 12
LABEL_ROOM = 210  # pixels for the latency chart's row names; longer ones are cut (in full in a tooltip)
BLUE, ORANGE, RED, GRID = "#1f77b4", "#ff7f0e", "#d62728", "#e6e6e6"
# Labels stay legible where they cross a grid line or a leader: a white outline under the text.
HALO = 'stroke="#fff" stroke-width="3" paint-order="stroke"'


def _svg(width: float, height: float, title: str) -> list[str]:
    # The viewBox lets a page scale the chart down to a phone's width instead of clipping it.
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="{FONT}">',
            f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>']


def _x_axis(axis: Axis, x0: float, x1: float, y0: float, y1: float, label: str) -> list[str]:
    """Vertical grid lines at the ticks, their texts under the frame, the axis' name below."""
    parts = []
    for tick, text in zip(axis.ticks, axis.tick_texts()):
        x = x0 + axis.fraction(tick) * (x1 - x0)
        parts.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y1}" stroke="{GRID}"/>')
        parts.append(f'<text x="{x:.1f}" y="{y1 + 16}" text-anchor="middle" fill="#444">{text}</text>')
    parts.append(f'<text x="{(x0 + x1) / 2}" y="{y1 + 36}" text-anchor="middle">{escape(label)}</text>')
    return parts


def _y_axis(axis: Axis, x0: float, x1: float, y0: float, y1: float, label: str) -> list[str]:
    parts = []
    for tick, text in zip(axis.ticks, axis.tick_texts()):
        y = y1 - axis.fraction(tick) * (y1 - y0)
        parts.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#444">{text}</text>')
    middle = (y0 + y1) / 2
    parts.append(f'<text x="14" y="{middle}" text-anchor="middle" transform="rotate(-90 14 {middle})">{escape(label)}</text>')
    return parts


def _frame(x0: float, x1: float, y0: float, y1: float) -> str:
    return f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" fill="none" stroke="#888"/>'


def scatter_plot(
    points: Sequence[tuple[float, float, str]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    front: Iterable[int] = (),
    x_log: bool = False,
    y_bounds: tuple[float, float] | None = None,
    merge: Callable[[list[str]], str] = ", ".join,
) -> str:
    """Labelled points; the indices in `front` (a Pareto front) are joined and drawn red.
    Points drawn on one spot share one label, `merge`d from theirs. Returns an HTML
    fragment: the SVG, then, when the names do not fit beside their points, the key to the
    numbers drawn there instead (an HTML list, readable at any width)."""
    x_axis = axis_for([p[0] for p in points], log=x_log)
    y_axis = axis_for([p[1] for p in points], bounds=y_bounds)
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM

    def at(x: float, y: float) -> tuple[float, float]:
        return x0 + x_axis.fraction(x) * (x1 - x0), y1 - y_axis.fraction(y) * (y1 - y0)

    pixels = [at(x, y) for x, y, _ in points]
    front = sorted(set(front), key=lambda i: points[i][0])
    parts = _svg(WIDTH, HEIGHT, title)
    parts += _x_axis(x_axis, x0, x1, y0, y1, x_label) + _y_axis(y_axis, x0, x1, y0, y1, y_label) + [_frame(x0, x1, y0, y1)]
    if len(front) > 1:
        path = " ".join(f"{pixels[i][0]:.1f},{pixels[i][1]:.1f}" for i in front)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{RED}" stroke-dasharray="4 3"/>')

    groups = _coincident(pixels)  # points drawn on one spot share one label
    spots = [pixels[g[0]] for g in groups]
    area = Box(x0 + 2, y0 + 2, x1 - 2, y1 - 2)
    names = [merge([points[i][2] for i in g]) for g in groups]
    labels = place_labels(spots, names, area, size=FONT - 1)
    numbered = labels is None
    if numbered:  # the names do not fit: numbers, keyed in a list under the chart
        labels = place_labels(spots, [",".join(str(i + 1) for i in g) for g in groups], area, size=FONT - 1, always=True) or []
    for label in labels:
        if label.leader:
            parts.append('<line x1="{:.1f}" y1="{:.1f}" x2="{:.1f}" y2="{:.1f}" stroke="#999"/>'.format(*label.leader))
    for i, ((px, py), (x, y, name)) in enumerate(zip(pixels, points)):
        on = i in front
        parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{5 if on else 4}" fill="{RED if on else BLUE}">'
                     f'<title>{escape(name)}: {x:.4g}, {y:.4g}</title></circle>')
    for label in labels:
        parts.append(f'<text class="label" x="{label.x:.1f}" y="{label.y:.1f}" text-anchor="{label.anchor}" '
                     f'font-size="{FONT - 1}" fill="#222" {HALO}>{escape(label.text)}</text>')
    parts.append("</svg>")
    svg = "\n".join(parts)
    if not numbered:
        return svg
    # The key: one item per point, numbered as drawn; the front's in bold as its points are red.
    keyed = [f"<strong>{escape(p[2])}</strong>" if i in front else escape(p[2]) for i, p in enumerate(points)]
    return svg + '\n<ol class="key">' + "".join(f"<li>{n}</li>" for n in keyed) + "</ol>"


def _coincident(pixels: Sequence[tuple[float, float]], within: float = 3.0) -> list[list[int]]:
    """Indices grouped by the spot they are drawn on (e.g. one SavedModel in every job of a sweep)."""
    groups: list[list[int]] = []
    for i, (x, y) in enumerate(pixels):
        group = next((g for g in groups if abs(pixels[g[0]][0] - x) <= within and abs(pixels[g[0]][1] - y) <= within), None)
        if group is None:
            groups.append([i])
        else:
            group.append(i)
    return groups


def latency_chart(rows: Sequence[tuple[str, float | None, float | None]], *, title: str) -> str:
    """One line per artifact from its p50 (dot) to its p95 (diamond), on a log axis when the
    latencies span more than ten times (a .tflite at 0.006 ms beside a SavedModel at 0.3 ms)."""
    values = [v for _, a, b in rows for v in (a, b) if v is not None]
    log = use_log_axis(values)
    axis = axis_for(values or [1.0], log=log)
    fits = int((LABEL_ROOM - 12) / (FONT * CHAR_WIDTH))  # characters a row's label may have
    names = [name if len(name) <= fits else name[: fits - 1] + "…" for name, _, _ in rows]
    left = 12 + max((len(n) for n in names), default=0) * FONT * CHAR_WIDTH
    row_height, top = 22, TOP + 18
    height = top + len(rows) * row_height + 44
    x0, x1, y0, y1 = left, WIDTH - RIGHT, top, top + len(rows) * row_height
    parts = _svg(WIDTH, height, title)
    scale = "log scale" if log else "linear"
    parts += _x_axis(axis, x0, x1, y0, y1, f"ms at batch 1 ({scale})") + [_frame(x0, x1, y0, y1)]
    legend_y = TOP + 4
    parts += [f'<circle cx="{x0 + 6}" cy="{legend_y - 4}" r="4" fill="{BLUE}"/>',
              f'<text x="{x0 + 14}" y="{legend_y}">p50</text>',
              f'<path d="{_diamond(x0 + 56, legend_y - 4)}" fill="{ORANGE}"/>',
              f'<text x="{x0 + 64}" y="{legend_y}">p95</text>']
    for i, (label, p50, p95) in enumerate(rows):
        y = y0 + (i + 0.5) * row_height
        parts.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{escape(names[i])}<title>{escape(label)}</title></text>')
        at = {name: x0 + axis.fraction(v) * (x1 - x0) for name, v in (("p50", p50), ("p95", p95)) if v is not None}
        if len(at) == 2:
            parts.append(f'<line x1="{at["p50"]:.1f}" y1="{y:.1f}" x2="{at["p95"]:.1f}" y2="{y:.1f}" stroke="#999" stroke-width="2"/>')
        if p95 is not None:  # drawn first: a p50 equal to it stays visible on top
            tip = f"<title>{escape(label)}: p95 {p95:.4g} ms</title>"
            parts.append(f'<path d="{_diamond(at["p95"], y)}" fill="{ORANGE}">{tip}</path>')
        if p50 is not None:
            tip = f"<title>{escape(label)}: p50 {p50:.4g} ms</title>"
            parts.append(f'<circle cx="{at["p50"]:.1f}" cy="{y:.1f}" r="4.5" fill="{BLUE}">{tip}</circle>')
    parts.append("</svg>")
    return "\n".join(parts)


def _diamond(x: float, y: float, r: float = 5.0) -> str:
    return f"M{x:.1f},{y - r:.1f} L{x + r:.1f},{y:.1f} L{x:.1f},{y + r:.1f} L{x - r:.1f},{y:.1f} Z"
