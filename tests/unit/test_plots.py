"""The report's charts: labels that never cover each other, axes that fit the data with round
ticks, a log latency axis when latencies span more than ten times, well-formed SVG."""

from __future__ import annotations

import itertools
import math
import re
import xml.etree.ElementTree as ET

import pytest

from tfbuild.plot_axes import axis_for, nice_step, use_log_axis
from tfbuild.plot_labels import Box, place_labels, text_box
from tfbuild.plots import latency_chart, scatter_plot

SVG = "{http://www.w3.org/2000/svg}"

# digits_all's size/accuracy points: ten artifacts, nine on one accuracy, several within a few KB.
CROWDED = [(250.0, 95.54, "saved_model"), (152.5, 95.54, "tflite/float"), (44.1, 95.54, "tflite/dynamic"),
           (78.7, 95.54, "tflite/fp16"), (44.0, 95.82, "tflite/int8"), (46.0, 95.54, "tflite/int16x8"),
           (156.6, 95.54, "tfjs/none"), (82.3, 95.54, "tfjs/float16"), (45.4, 95.54, "tfjs/uint8"),
           (82.8, 95.54, "tfjs/uint16")]  # fmt: skip


def label_boxes(svg: str) -> list[Box]:
    """The boxes of the drawn labels, measured as the layout measures them."""
    root = ET.fromstring(svg)
    boxes = []
    for text in root.iter(f"{SVG}text"):
        if text.get("class") == "label":
            boxes.append(text_box(text.text or "", float(text.get("x")), float(text.get("y")),
                                  text.get("text-anchor"), float(text.get("font-size"))))  # fmt: skip
    return boxes


def markers(svg: str) -> list[Box]:
    return [Box(float(c.get("cx")) - 4, float(c.get("cy")) - 4, float(c.get("cx")) + 4, float(c.get("cy")) + 4)
            for c in ET.fromstring(svg).iter(f"{SVG}circle")]  # fmt: skip


def split(fragment: str) -> tuple[str, str]:
    """(the SVG, the key under it or "")."""
    end = fragment.index("</svg>") + len("</svg>")
    return fragment[:end], fragment[end:]


def test_placed_labels_never_overlap_each_other_or_a_point():
    # Twelve points packed into a 60 px square: every label finds a spot of its own.
    points = [(200 + (i % 4) * 20, 150 + (i // 4) * 20) for i in range(12)]
    area = Box(0, 0, 500, 330)
    labels = place_labels(points, [str(i + 1) for i in range(12)], area)
    assert labels is not None and len(labels) == 12
    for a, b in itertools.combinations(labels, 2):
        assert not a.box.overlaps(b.box), (a, b)
    for label in labels:
        assert label.box.inside(area)
        assert not any(label.box.overlaps(Box(x - 5, y - 5, x + 5, y + 5)) for x, y in points)


def test_labels_that_cannot_fit_are_refused_rather_than_piled_up():
    points = [(50 + i, 50) for i in range(0, 40, 4)]
    texts = ["a long label that needs room"] * len(points)
    assert place_labels(points, texts, Box(0, 0, 120, 100)) is None
    forced = place_labels(points, texts, Box(0, 0, 120, 100), always=True)
    assert forced is not None and len(forced) == len(points), "with always=True no point goes unlabelled"


def test_a_crowded_scatter_falls_back_to_numbers_keyed_in_a_list():
    svg, key = split(scatter_plot(CROWDED, title="Size vs accuracy", x_label="KB", y_label="%"))
    boxes = label_boxes(svg)
    assert boxes and all(not a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
    assert all(not box.overlaps(m) for box in boxes for m in markers(svg))
    items = re.findall(r"<li>(.*?)</li>", key)
    assert items == [name for _, _, name in CROWDED], "the key lists every point, in order"
    drawn = {n for box_text in re.findall(r'class="label"[^>]*>([^<]*)<', svg) for n in box_text.split(",")}
    assert drawn == {str(i) for i in range(1, len(CROWDED) + 1)}, "every point's number is drawn"


def test_a_sparse_scatter_names_its_points_beside_them():
    points = [(250, 95.5, "saved_model"), (150, 95.5, "tflite/float"), (45, 95.8, "tflite/int8")]
    svg, key = split(scatter_plot(points, title="t", x_label="x", y_label="y"))
    assert key == ""
    texts = re.findall(r'class="label"[^>]*>([^<]*)<', svg)
    assert sorted(texts) == sorted(name for _, _, name in points)
    assert all(not a.overlaps(b) for a, b in itertools.combinations(label_boxes(svg), 2))


def test_points_on_one_spot_share_one_label():
    points = [(10, 1, "job 0: saved_model"), (10, 1, "job 1: saved_model"), (5, 2, "job 1: tflite/int8")]
    svg, _ = split(scatter_plot(points, title="t", x_label="x", y_label="y", merge=" + ".join))
    assert re.findall(r'class="label"[^>]*>([^<]*)<', svg).count("job 0: saved_model + job 1: saved_model") == 1


@pytest.mark.parametrize("values, log", [
    ([0.006, 0.3], True),       # a .tflite beside a SavedModel
    ([0.1, 0.9], False),
    ([0.1, 1.0], False),        # exactly ten times: linear
    ([0.1, 1.01], True),
    ([0.0, 0.5], False),        # zero has no logarithm
    ([0.2], False),
    ([None, 0.01, 5.0], True),  # a row that was not timed
])  # fmt: skip
def test_the_latency_axis_is_logarithmic_beyond_ten_times(values, log):
    assert use_log_axis(values) is log


def test_the_latency_chart_says_which_scale_it_uses():
    assert "log scale" in latency_chart([("saved_model", 0.28, 0.35), ("tflite/int8", 0.0063, 0.012)], title="t")
    assert "linear" in latency_chart([("tfjs wasm", 0.15, 0.7), ("tfjs cpu", 0.9, 1.1)], title="t")
    ET.fromstring(latency_chart([("a", 0.1, None), ("b", None, None)], title="t"))


@pytest.mark.parametrize("values", [[0.955, 0.99], [95.54, 95.82], [44.0, 80.6, 153.0, 250.0], [3.5, 3.9],
                                    [0.0, 1.0], [1e5, 2.5e5], [7.0]])
def test_linear_axes_fit_the_data_with_round_ticks(values):
    axis = axis_for(values)
    assert axis.low < min(values) and axis.high > max(values), "no point sits on the frame"
    span = max(values) - min(values)
    if span:
        assert (axis.high - axis.low) < span * 1.2, "the axis is the data's range, not forced to zero"
    assert 3 <= len(axis.ticks) <= 8 and all(axis.low <= t <= axis.high for t in axis.ticks)
    steps = {round(b - a, 12) for a, b in zip(axis.ticks, axis.ticks[1:])}
    assert len(steps) == 1
    step = steps.pop()
    assert round(step / 10 ** math.floor(math.log10(step)), 6) in (1, 2, 2.5, 5)
    texts = axis.tick_texts()
    assert len(set(texts)) == len(texts) and all(len(t) <= 7 for t in texts), texts


def test_accuracy_ticks_stay_within_bounds_while_the_axis_pads_past_them():
    axis = axis_for([99.0, 100.0], bounds=(0.0, 100.0))
    assert axis.high > 100.0 and max(axis.ticks) == 100.0


def test_log_axes_tick_at_decades_or_at_1_2_5():
    wide = axis_for([0.003, 7.4], log=True)
    assert wide.log and wide.tick_texts() == ["0.01", "0.1", "1", "10"]
    narrow = axis_for([0.0063, 0.278], log=True)
    assert narrow.tick_texts() == ["0.01", "0.02", "0.05", "0.1", "0.2"]
    assert narrow.low < 0.0063 and narrow.high > 0.278
    assert narrow.fraction(narrow.low) == pytest.approx(0) and narrow.fraction(narrow.high) == pytest.approx(1)


def test_nice_steps():
    assert [nice_step(x) for x in (0.07, 0.12, 0.21, 0.3, 0.6, 57)] == [0.1, 0.2, 0.25, 0.5, 1, 100]


def test_charts_escape_names():
    hostile = '<script>alert("x")</script>'
    for fragment in (scatter_plot([(1, 2, hostile), (2, 3, "b")], title=hostile, x_label=hostile, y_label="y"),
                     scatter_plot(CROWDED + [(60, 95.6, hostile)], title="t", x_label="x", y_label="y"),
                     latency_chart([(hostile, 0.1, 0.2)], title=hostile)):
        assert "<script>" not in fragment
        ET.fromstring(f"<div>{fragment}</div>")
