"""The HTML card's plots, inlined as SVG (`curate.datacard.svgchart`): the funnel from inputs
to kept records with the drops by reason, text lengths, image sizes and aspect ratios, the
categorical mixes, top concepts and where the time went. Each function returns an SVG string,
or None when the build has nothing to plot for it."""

from __future__ import annotations

from collections import Counter
from typing import Any

from curate.datacard import svgchart

COLOR = "#3b6ea8"
DROP = "#c0504d"
MAX_BARS = 20
MAX_BINS = 40


def _barh(labels: list[str], values: list[float], title: str, xlabel: str, color: str = COLOR):
    return svgchart.bars(labels, values, title, xlabel, color)


def _bins(values: list[float]) -> int:
    return min(MAX_BINS, max(5, len(set(values))))


def funnel(manifest: dict[str, Any]) -> str:
    units = manifest["units"]
    records = manifest["records"]
    steps = [
        ("input units found", units.get("discovered", 0)),
        ("input units read", units.get("read", 0)),
        ("candidate records", records.get("candidates", 0)),
        ("kept records", records.get("kept", 0)),
    ]
    return _barh(
        [s[0] for s in steps], [s[1] for s in steps], "From inputs to kept records", "count"
    )


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
    return _barh(
        [k for k, _ in top], [v for _, v in top], "What was dropped, by reason", "count", DROP
    )


def text_lengths(sizes: dict[str, Any]) -> str | None:
    columns = {k: v for k, v in sizes["text_words"].items() if any(v)}
    if not columns:
        return None
    bins = _bins([w for words in columns.values() for w in words])
    return svgchart.histogram(
        dict(sorted(columns.items())), bins, "Text length (kept records)", "words", "records"
    )


def image_sizes(sizes: dict[str, Any]) -> str | None:
    widths, heights = sizes["widths"], sizes["heights"]
    if not widths:
        return None
    aspects = [w / h for w, h in zip(widths, heights)]
    size = svgchart.scatter(widths, heights, "Image size", "width (px)", "height (px)", COLOR)
    aspect = svgchart.histogram(
        {"images": aspects},
        _bins(aspects),
        "Aspect ratio",
        "aspect ratio (width / height)",
        "images",
    )
    return size + aspect


def mix(counter: Counter | dict, title: str) -> str | None:
    items = sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))[:MAX_BARS]
    if not items:
        return None
    return _barh(
        [str(k) if k is not None else "(none)" for k, _ in items],
        [v for _, v in items],
        title,
        "records",
    )


def concepts(entities: dict[tuple[str, str], Counter]) -> str | None:
    if not entities:
        return None
    top = sorted(entities.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:MAX_BARS]
    labels = [f"{name or cui} ({cui})" for (cui, name), _ in top]
    series = [
        (assertion, [counts.get(assertion, 0) for _, counts in top], color)
        for assertion, color in (("present", COLOR), ("absent", DROP), ("uncertain", "#999999"))
    ]
    return svgchart.stacked_bars(labels, series, "Most frequent linked concepts", "mentions")


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
    return _barh([r[0] for r in rows], [r[1] for r in rows], "Where the time went", "wall s")


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
