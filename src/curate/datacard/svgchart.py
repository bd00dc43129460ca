"""Small charts written straight as SVG for the HTML card: horizontal bars (plain or stacked),
overlaid histograms and a scatter. The card's plots are simple, and writing them takes
milliseconds where a plotting library takes about a second to import and draw (the card is
written at the end of every build). Text is text (searchable); widths are estimated from a
mean glyph width, so labels get room without font metrics."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

FONT = 12  # px
GLYPH = 0.6 * FONT  # a generous mean glyph width of a sans-serif font
ROW = 22  # px a bar row
PLOT_WIDTH = 420  # px of the drawing area
PLOT_HEIGHT = 200
PAD = 10
PALETTE = ("#3b6ea8", "#e07b39", "#5a9e4b", "#8c62aa", "#999999")


def _text(x: float, y: float, text: str, anchor: str = "start", **style: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in style.items())
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{FONT}"{extra}>'
        f"{escape(text)}</text>"
    )


def _width(text: str) -> float:
    return len(text) * GLYPH


def _number(value: float) -> str:
    if value >= 1 or value == 0:
        return f"{value:,.0f}"
    return f"{value:.2g}"


def _round_step(raw: float) -> float:
    """The smallest round step (1, 2, 2.5 or 5 x 10^k) of at least `raw` (> 0)."""
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def nice_ticks(high: float, count: int = 5) -> list[float]:
    """0 and round steps up to at least `high`."""
    if high <= 0:
        return [0.0, 1.0]
    step = _round_step(high / count)
    return [i * step for i in range(int(math.ceil(high / step - 1e-9)) + 1)]


def _tick_label(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:g}"


def _svg(width: float, height: float, title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" role="img">'
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def _legend(x: float, y: float, series: Sequence[tuple[str, str]]) -> list[str]:
    out = []
    for name, color in series:
        out.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{color}"/>')
        out.append(_text(x + 14, y, name))
        x += 14 + _width(name) + 12
    return out


def stacked_bars(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float], str]],
    title: str,
    xlabel: str,
    value_labels: bool = True,
) -> str:
    """Horizontal bars, one row a label, each bar the sum of the series' segments
    (name, values, colour); a legend when there is more than one series."""
    totals = [sum(values[i] for _, values, _ in series) for i in range(len(labels))]
    ticks = nice_ticks(max(totals, default=0))
    scale = PLOT_WIDTH / ticks[-1]
    left = PAD + max((_width(label) for label in labels), default=0) + 8
    top = PAD + 2 * FONT + (2 * FONT if len(series) > 1 else 0)
    bottom = top + ROW * len(labels)
    right_room = max((_width(" " + _number(t)) for t in totals), default=0) if value_labels else 0
    width = left + PLOT_WIDTH + right_room + PAD
    height = bottom + 2.8 * FONT + PAD
    body = [_text(PAD, PAD + FONT, title, font_weight="bold")]
    if len(series) > 1:
        body += _legend(left, PAD + 3 * FONT, [(name, color) for name, _, color in series])
    for tick in ticks:
        x = left + tick * scale
        body.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="#ddd"/>')
        body.append(_text(x, bottom + FONT + 2, _tick_label(tick), "middle"))
    body.append(_text(left + PLOT_WIDTH / 2, bottom + 2.6 * FONT, xlabel, "middle"))
    for row, label in enumerate(labels):
        y = top + row * ROW
        body.append(_text(left - 6, y + ROW / 2 + FONT / 3, label, "end"))
        x = left
        for _, values, color in series:
            w = values[row] * scale
            if w > 0:
                body.append(
                    f'<rect x="{x:.1f}" y="{y + 3:.1f}" width="{w:.1f}" height="{ROW - 6}" '
                    f'fill="{color}"/>'
                )
            x += w
        if value_labels:
            body.append(_text(x + 3, y + ROW / 2 + FONT / 3, _number(totals[row])))
    return _svg(width, height, title, body)


def bars(
    labels: Sequence[str], values: Sequence[float], title: str, xlabel: str, color: str
) -> str:
    """Horizontal bars with their values written at their ends."""
    return stacked_bars(labels, [(xlabel, values, color)], title, xlabel)


class _Axes:
    """A framed drawing area at (left, top) with linear x and y scales from 0 or the data."""

    def __init__(self, left: float, top: float, xs: Sequence[float], y_high: float) -> None:
        self.left, self.top = left, top
        lo, hi = min(xs), max(xs)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        self.x_lo, self.x_hi = lo, hi
        self.y_ticks = nice_ticks(y_high)

    def x(self, value: float) -> float:
        return self.left + (value - self.x_lo) / (self.x_hi - self.x_lo) * PLOT_WIDTH

    def y(self, value: float) -> float:
        return self.top + PLOT_HEIGHT - value / self.y_ticks[-1] * PLOT_HEIGHT

    def frame(self, xlabel: str, ylabel: str) -> list[str]:
        bottom = self.top + PLOT_HEIGHT
        out = [
            f'<line x1="{self.left}" y1="{bottom}" x2="{self.left + PLOT_WIDTH}" y2="{bottom}" '
            'stroke="#333"/>',
            f'<line x1="{self.left}" y1="{self.top}" x2="{self.left}" y2="{bottom}" stroke="#333"/>',
        ]
        for tick in self.y_ticks:
            out.append(_text(self.left - 4, self.y(tick) + FONT / 3, _tick_label(tick), "end"))
        for tick in _spread(self.x_lo, self.x_hi):
            out.append(_text(self.x(tick), bottom + FONT + 2, f"{tick:g}", "middle"))
        out.append(_text(self.left + PLOT_WIDTH / 2, bottom + 2.6 * FONT, xlabel, "middle"))
        mid = self.top + PLOT_HEIGHT / 2
        out.append(
            _text(PAD + FONT, mid, ylabel, "middle", transform=f"rotate(-90 {PAD + FONT} {mid})")
        )
        return out


def _spread(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round values between lo and hi."""
    step = _round_step((hi - lo) / count)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _bin_counts(values: Sequence[float], edges: Sequence[float]) -> list[int]:
    counts = [0] * (len(edges) - 1)
    lo, width = edges[0], edges[1] - edges[0]
    for value in values:
        counts[min(len(counts) - 1, max(0, int((value - lo) / width)))] += 1
    return counts


def histogram(
    series: dict[str, Sequence[float]], bins: int, title: str, xlabel: str, ylabel: str
) -> str:
    """Overlaid histograms of each named series over shared, equal-width bins."""
    everything = [v for values in series.values() for v in values]
    lo, hi = min(everything), max(everything)
    if hi <= lo:
        hi = lo + 1
    edges = [lo + (hi - lo) * i / bins for i in range(bins + 1)]
    counts = {name: _bin_counts(values, edges) for name, values in series.items()}
    left = PAD + 2 * FONT + _width(f"{max(max(c) for c in counts.values()):,}") + 6
    top = PAD + 2 * FONT + (2 * FONT if len(series) > 1 else 0)
    axes = _Axes(left, top, edges, max(max(c) for c in counts.values()))
    body = [_text(PAD, PAD + FONT, title, font_weight="bold")]
    colors = dict(zip(series, PALETTE * (len(series) // len(PALETTE) + 1)))
    if len(series) > 1:
        body += _legend(left, PAD + 3 * FONT, list(colors.items()))
    for name, bin_counts in counts.items():
        for i, n in enumerate(bin_counts):
            if n:
                x0, x1, y = axes.x(edges[i]), axes.x(edges[i + 1]), axes.y(n)
                body.append(
                    f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(0.5, x1 - x0 - 0.5):.1f}" '
                    f'height="{axes.y(0) - y:.1f}" fill="{colors[name]}" fill-opacity="0.6"/>'
                )
    body += axes.frame(xlabel, ylabel)
    return _svg(left + PLOT_WIDTH + 2 * PAD, top + PLOT_HEIGHT + 3 * FONT + PAD, title, body)


def scatter(
    xs: Sequence[float], ys: Sequence[float], title: str, xlabel: str, ylabel: str, color: str
) -> str:
    """Points (x, y), y from 0."""
    left = PAD + 2 * FONT + _width(f"{max(ys):,.0f}") + 6
    top = PAD + 2 * FONT
    axes = _Axes(left, top, xs, max(ys))
    body = [_text(PAD, PAD + FONT, title, font_weight="bold")]
    seen = set()
    for x, y in zip(xs, ys):
        point = (round(axes.x(x), 1), round(axes.y(y), 1))
        if point not in seen:  # one circle per drawn position: a big build stays small
            seen.add(point)
            body.append(
                f'<circle cx="{point[0]}" cy="{point[1]}" r="3" fill="{color}" fill-opacity="0.6"/>'
            )
    body += axes.frame(xlabel, ylabel)
    return _svg(left + PLOT_WIDTH + 2 * PAD, top + PLOT_HEIGHT + 3 * FONT + PAD, title, body)


__all__ = ["bars", "histogram", "nice_ticks", "scatter", "stacked_bars"]
