"""The card's SVG charts: bar lengths proportional to the values, every label present as
text, round axis ticks, histogram bins that count every value, and well-formed SVG."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from curate.datacard import svgchart

SVG = "{http://www.w3.org/2000/svg}"


def _rects(svg: str) -> list[ET.Element]:
    return ET.fromstring(svg).findall(f".//{SVG}rect")


def test_bars_are_proportional_and_labelled() -> None:
    svg = svgchart.bars(
        ["kept <records>", "rejected"], [300, 100], "Funnel & drops", "count", "#123"
    )
    root = ET.fromstring(svg)  # well-formed, labels escaped
    widths = [float(r.get("width")) for r in _rects(svg)]
    assert len(widths) == 2 and abs(widths[0] / widths[1] - 3.0) < 0.01
    texts = [t.text for t in root.findall(f".//{SVG}text")]
    assert "kept <records>" in texts and "Funnel & drops" in texts
    assert "300" in texts and "100" in texts  # values at the bars' ends
    assert root.find(f"{SVG}title").text == "Funnel & drops"


def test_stacked_bars_sum_their_segments_and_show_a_legend() -> None:
    series = [("present", [2, 4], "#1"), ("absent", [1, 0], "#2"), ("uncertain", [1, 0], "#3")]
    svg = svgchart.stacked_bars(["a", "b"], series, "Concepts", "mentions")
    texts = [t.text for t in ET.fromstring(svg).findall(f".//{SVG}text")]
    assert {"present", "absent", "uncertain"} <= set(texts)
    segments = [r for r in _rects(svg) if float(r.get("height")) > 10]  # not legend swatches
    # row a: 2 + 1 + 1 = 4, row b: 4 alone -> the same total length
    row_a = sum(float(r.get("width")) for r in segments[:3])
    assert abs(row_a - float(segments[3].get("width"))) < 0.2


def test_nice_ticks_are_round_and_cover_the_data() -> None:
    assert svgchart.nice_ticks(1190) == [0, 250, 500, 750, 1000, 1250]
    assert svgchart.nice_ticks(0.37)[-1] >= 0.37
    assert svgchart.nice_ticks(0) == [0.0, 1.0]


def test_histogram_counts_every_value_once() -> None:
    values = [1, 1, 2, 3, 3, 3, 10]
    svg = svgchart.histogram({"words": values}, 5, "Lengths", "words", "records")
    heights = [float(r.get("height")) for r in _rects(svg)]
    assert len(heights) == 3  # bins [1,2.8) [2.8,4.6) [8.2,10]: 3, 3 and 1 values
    assert abs(sorted(heights)[0] * 3 - sorted(heights)[-1]) < 0.5  # height proportional to count
    assert re.search(r">\s*0\s*<", svg)  # the y axis starts at 0


def test_scatter_draws_one_point_per_position() -> None:
    svg = svgchart.scatter([100, 100, 200], [50, 50, 80], "Size", "w", "h", "#123")
    assert len(ET.fromstring(svg).findall(f".//{SVG}circle")) == 2
