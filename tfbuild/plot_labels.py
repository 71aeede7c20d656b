"""Where the labels of a scatter plot's points go, so that none covers another or a point.

Greedy placement, as map makers do it: each label tries a ring of spots around its point
(right, left, above, below, the diagonals), then wider rings joined to the point by a
leader line; the first spot that stays inside the chart and clear of every point and every
label placed so far wins. When some label finds no spot, the caller falls back to short
number labels keyed to a legend, which nearly always fit.

Text widths are estimated (no browser here to measure them) on the wide side, for
DejaVu Sans, the widest of the fonts a `sans-serif` SVG is drawn with on these systems.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

CHAR_WIDTH = 0.64  # of the font size: DejaVu Sans digits (0.636), wider than its average lower case
GAP = 2.0  # pixels kept clear between a label and anything else
RINGS = (1.0, 2.2, 3.6, 5.5)  # spot distances, in multiples of the first ring's
# (dx, dy) directions, in the order a reader expects a label: right, left, above, below, diagonals.
DIRECTIONS = ((1, 0), (-1, 0), (0, -1), (0, 1), (1, -1), (-1, -1), (1, 1), (-1, 1))


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: "Box", gap: float = 0.0) -> bool:
        return not (self.x1 + gap <= other.x0 or other.x1 + gap <= self.x0 or self.y1 + gap <= other.y0 or other.y1 + gap <= self.y0)

    def inside(self, area: "Box") -> bool:
        return self.x0 >= area.x0 and self.y0 >= area.y0 and self.x1 <= area.x1 and self.y1 <= area.y1


@dataclass(frozen=True)
class Label:
    text: str
    x: float  # where the text is drawn (its anchor) and its baseline
    y: float
    anchor: str  # SVG text-anchor: start, middle, end
    box: Box
    leader: tuple[float, float, float, float] | None  # a line from the point to the label, when it is far


def text_box(text: str, x: float, baseline: float, anchor: str, size: float) -> Box:
    width = len(text) * size * CHAR_WIDTH
    left = {"start": x, "middle": x - width / 2, "end": x - width}[anchor]
    return Box(left, baseline - size * 0.8, left + width, baseline + size * 0.25)


def place_labels(points: Sequence[tuple[float, float]], texts: Sequence[str], area: Box,
                 *, size: float = 11.0, radius: float = 5.0, always: bool = False) -> list[Label] | None:
    """A spot for each text beside its point (pixel coordinates), inside `area`, overlapping
    no other label and no point's marker (of `radius`); None when some text finds none,
    unless `always`: then that text goes right of its point regardless (a label drawn over
    another still beats a point without one)."""
    markers = [Box(x - radius, y - radius, x + radius, y + radius) for x, y in points]
    placed: list[Label] = []
    # The most crowded points choose first, while their surroundings are still free.
    order = sorted(range(len(points)), key=lambda i: -sum(_near(points[i], p, size * 6) for p in points))
    chosen: dict[int, Label] = {}
    for i in order:
        label = _first_free_spot(points[i], texts[i], area, markers, placed, size, radius)
        if label is None and not always:
            return None
        if label is None:
            x, y = points[i][0] + radius + 3, points[i][1] + size * 0.35
            label = Label(texts[i], x, y, "start", text_box(texts[i], x, y, "start", size), None)
        placed.append(label)
        chosen[i] = label
    return [chosen[i] for i in range(len(points))]


def _near(a: tuple[float, float], b: tuple[float, float], distance: float) -> bool:
    return abs(a[0] - b[0]) < distance and abs(a[1] - b[1]) < distance


def _first_free_spot(point: tuple[float, float], text: str, area: Box, markers: list[Box],
                     placed: list[Label], size: float, radius: float) -> Label | None:
    x, y = point
    for ring in RINGS:
        distance = (radius + 3) * ring
        for dx, dy in DIRECTIONS:
            anchor = "start" if dx > 0 else "end" if dx < 0 else "middle"
            # Text beside a point is centred on it vertically; above or below, it clears it.
            offset = {-1: -distance * (0.7 if dx else 1), 0: size * 0.35, 1: distance * (0.7 if dx else 1) + size * 0.75}[dy]
            tx = x + dx * distance * (0.8 if dy else 1)
            box = text_box(text, tx, y + offset, anchor, size)
            if not box.inside(area) or any(box.overlaps(m, GAP) for m in markers) or any(box.overlaps(p.box, GAP) for p in placed):
                continue
            return Label(text, tx, y + offset, anchor, box, _leader(point, box) if ring > 1 else None)
    return None


def _leader(point: tuple[float, float], box: Box) -> tuple[float, float, float, float]:
    """A line from the point to the nearest point of the label's box."""
    x = min(max(point[0], box.x0), box.x1)
    y = min(max(point[1], box.y0), box.y1)
    return point[0], point[1], x, y
