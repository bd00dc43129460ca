"""The HTML card's plots, drawn with matplotlib (Agg) and inlined as SVG: the funnel from
inputs to kept records with the drops by reason, text lengths, image sizes and aspect ratios,
the categorical mixes, top concepts and where the time went. Each function returns an SVG
string, or None when the build has nothing to plot for it."""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402

matplotlib.rcParams["svg.hashsalt"] = "curate"  # stable element ids: same build, same card
matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text (small, searchable)
COLOR = "#3b6ea8"
DROP = "#c0504d"
MAX_BARS = 20


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: inlined in HTML


def _barh(labels: list[str], values: list[float], title: str, xlabel: str, color: str = COLOR):
    height = 0.6 + 0.32 * len(labels)
    figure, axes = plt.subplots(figsize=(7.5, height))
    positions = range(len(labels))
    axes.barh(list(positions), values, color=color)
    axes.set_yticks(list(positions), labels=labels)
    axes.invert_yaxis()
    axes.set_xlabel(xlabel)
    axes.set_title(title, loc="left")
    for y, value in zip(positions, values):
        axes.text(value, y, f" {value:,.0f}" if value >= 1 else f" {value:.2g}", va="center")
    axes.spines[["top", "right"]].set_visible(False)
    return figure


def funnel(manifest: dict[str, Any]) -> str:
    units = manifest["units"]
    records = manifest["records"]
    steps = [
        ("input units found", units.get("discovered", 0)),
        ("input units read", units.get("read", 0)),
        ("candidate records", records.get("candidates", 0)),
        ("kept records", records.get("kept", 0)),
    ]
    figure = _barh(
        [s[0] for s in steps], [s[1] for s in steps], "From inputs to kept records", "count"
    )
    return _svg(figure)


def drops(manifest: dict[str, Any]) -> str | None:
    reasons: Counter = Counter()
    for reason, n in (manifest.get("reject_reasons") or {}).items():
        reasons[f"rejected: {reason}"] += n
    for reason, n in (manifest.get("error_reasons") or {}).items():
        reasons[f"error: {reason}"] += n
    for source in (manifest.get("inputs") or {}).values():
        for reason, n in (source.get("skipped") or {}).items():
            reasons[f"skipped unit: {reason}"] += n
    if not reasons:
        return None
    top = reasons.most_common(MAX_BARS)
    figure = _barh(
        [k for k, _ in top], [v for _, v in top], "What was dropped, by reason", "count", DROP
    )
    return _svg(figure)


def text_lengths(sizes: dict[str, Any]) -> str | None:
    columns = {k: v for k, v in sizes["text_words"].items() if any(v)}
    if not columns:
        return None
    figure, axes = plt.subplots(figsize=(7.5, 3.2))
    for name, words in sorted(columns.items()):
        axes.hist(words, bins=min(40, max(5, len(set(words)))), alpha=0.6, label=name)
    axes.set_xlabel("words")
    axes.set_ylabel("records")
    axes.set_title("Text length (kept records)", loc="left")
    axes.legend()
    axes.spines[["top", "right"]].set_visible(False)
    return _svg(figure)


def image_sizes(sizes: dict[str, Any]) -> str | None:
    widths, heights = sizes["widths"], sizes["heights"]
    if not widths:
        return None
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.scatter(widths, heights, s=10, alpha=0.6, color=COLOR)
    left.set_xlabel("width (px)")
    left.set_ylabel("height (px)")
    left.set_title("Image size", loc="left")
    aspects = [w / h for w, h in zip(widths, heights)]
    right.hist(aspects, bins=min(40, max(5, len(set(aspects)))), color=COLOR)
    right.set_xlabel("aspect ratio (width / height)")
    right.set_ylabel("images")
    right.set_title("Aspect ratio", loc="left")
    for axes in (left, right):
        axes.spines[["top", "right"]].set_visible(False)
    return _svg(figure)


def mix(counter: Counter | dict, title: str) -> str | None:
    items = sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))[:MAX_BARS]
    if not items:
        return None
    figure = _barh(
        [str(k) if k is not None else "(none)" for k, _ in items],
        [v for _, v in items],
        title,
        "records",
    )
    return _svg(figure)


def concepts(entities: dict[tuple[str, str], Counter]) -> str | None:
    if not entities:
        return None
    top = sorted(entities.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:MAX_BARS]
    labels = [f"{name or cui} ({cui})" for (cui, name), _ in top]
    figure, axes = plt.subplots(figsize=(7.5, 0.6 + 0.32 * len(top)))
    left = [0.0] * len(top)
    for assertion, color in (("present", COLOR), ("absent", DROP), ("uncertain", "#999999")):
        values = [counts.get(assertion, 0) for _, counts in top]
        axes.barh(range(len(top)), values, left=left, color=color, label=assertion)
        left = [a + b for a, b in zip(left, values)]
    axes.set_yticks(range(len(top)), labels=labels)
    axes.invert_yaxis()
    axes.set_xlabel("mentions")
    axes.set_title("Most frequent linked concepts", loc="left")
    axes.legend()
    axes.spines[["top", "right"]].set_visible(False)
    return _svg(figure)


def timings(manifest: dict[str, Any]) -> str | None:
    timed = manifest.get("timings")
    if not timed:
        return None
    rows = [(f"phase: {p['phase']}", p.get("wall_s")) for p in timed.get("phases", [])]
    rows += [(f"phase 1: {s['stage']}", s.get("wall_s")) for s in timed["phase1"]["stages"]]
    rows += [(f"phase 2: {s['stage']}", s.get("wall_s")) for s in timed["phase2"]["steps"]]
    rows = [(name, seconds) for name, seconds in rows if seconds is not None]
    if not rows:
        return None
    figure = _barh([r[0] for r in rows], [r[1] for r in rows], "Where the time went", "wall s")
    return _svg(figure)


def all_plots(manifest: dict[str, Any], scan: dict[str, Any], sizes: dict[str, Any]) -> dict:
    """{title: svg} in the card's order; plots with nothing to show are left out."""
    distributions = scan.get("distributions") or {}
    plots = {
        "Funnel": funnel(manifest),
        "Drops by reason": drops(manifest),
        "Text length": text_lengths(sizes),
        "Image size and aspect ratio": image_sizes(sizes),
        "Split mix": mix(manifest.get("splits") or {}, "Records per split"),
    }
    for column in ("modality", "license", "dataset", "view_position"):
        if distributions.get(column):
            plots[f"{column} mix"] = mix(distributions[column], f"Records per {column}")
    plots["Top concepts"] = concepts(scan.get("entities") or {})
    plots["Stage timings"] = timings(manifest)
    return {title: svg for title, svg in plots.items() if svg}
