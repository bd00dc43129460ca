"""`OUT/DATA_CARD.html`: the data card as one self-contained page (inline CSS, plots as inline
SVG from `svgchart`, the example image as a data URI; no script, nothing fetched)."""

from __future__ import annotations

import base64
import html
import json
from typing import Any

from curate.datacard import plots, sections
from curate.shards.layout import HTML_CARD

__all__ = ["HTML_CARD", "render_html"]

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1000px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ddd;padding:.25em .6em;
text-align:left;vertical-align:top;font-size:.92em}th{background:#f3f5f8}
.plots{display:flex;flex-wrap:wrap;gap:1em}figure.plot{margin:0;flex:1 1 440px}
figure.plot svg{max-width:100%;height:auto}.note{color:#555}.warn{color:#a33;font-weight:600}
code{background:#f3f3f3;padding:0 .2em}.example img{max-width:320px;border:1px solid #ccc}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"


def _plots(svgs: dict[str, str]) -> str:
    figures = "".join(
        f'<figure class="plot" data-plot="{_e(title)}">{svg}</figure>'
        for title, svg in svgs.items()
    )
    return f'<div class="plots">{figures}</div>'


def _example(record: dict[str, Any] | None) -> str:
    if not record:
        return "<p class='note'>No kept record to show.</p>"
    picture = record.get("thumbnail_png")
    record = {k: v for k, v in record.items() if k != "thumbnail_png"}
    image = ""
    if picture:
        encoded = base64.b64encode(picture).decode()
        image = f'<img alt="example image" src="data:image/png;base64,{encoded}">'
    rows = [(k, json.dumps(v, ensure_ascii=False, default=str)[:400]) for k, v in record.items()]
    return f'<div class="example">{image}{_table(rows, ("field", "value"))}</div>'


def render_html(
    manifest: dict[str, Any],
    scan: dict[str, Any],
    sizes: dict[str, Any],
    example: dict[str, Any] | None,
) -> str:
    spec = manifest["spec"]
    records = manifest["records"]
    holds = all(i["holds"] for i in manifest["identities"])
    about = sections.uses(manifest)
    deid = sections.deidentification(manifest)
    body = [
        f"<h1>Data card: {_e(spec['name'])}</h1>",
        f"<p class='note'>Built by curate {_e(manifest['curate_version'])} from spec "
        f"<code>{_e(spec['path'])}</code> (sha256 <code>{_e(spec['sha256'][:16])}</code>), record "
        f"schema <code>{_e(manifest['schema']['name'])}</code> v{_e(manifest['schema']['version'])}. "
        f"Status: <b>{_e(manifest['status'])}</b>.</p>",
        *(f"<p>{_e(p)}</p>" for p in about["description"]),
        f"<p><b>{records['kept']:,}</b> of {records['candidates']:,} candidate records kept; "
        f"{records['rejected']:,} rejected and {records['errors']:,} errors, each with a reason "
        f"(accounting identities: {'all hold' if holds else 'BROKEN'}).</p>",
        "<h2>Plots</h2>",
        _plots(plots.all_plots(manifest, scan, sizes)),
        "<h2>Intended uses</h2>",
        _list(about["intended"]),
        "<h2>Out-of-scope uses</h2>",
        _list(about["out_of_scope"]),
        "<h2>Limitations</h2>",
        _list(about["limitations"]),
        "<h2>De-identification</h2>",
        f"<p{' class=warn' if deid['salt'] == 'demo' else ''}>{_e(deid['text'])}</p>",
        _table(
            [("salt", deid["salt"]), ("salt fingerprint", deid["fingerprint"] or "—")]
            + ([("note", deid["note"])] if deid["note"] else []),
            ("", ""),
        ),
        "<h2>Licences and attribution</h2>",
        _list(sections.attribution(manifest, scan)),
    ]
    cite = sections.citation(manifest)
    if cite:
        body += ["<h3>Citation</h3>", f"<pre>{_e(cite)}</pre>"]
    decontam = sections.decontamination(manifest)
    if decontam:
        body += ["<h2>Benchmark decontamination</h2>", f"<p>{_e(decontam)}</p>"]
    warned = sections.warnings(manifest)
    if warned:
        body += ["<h2>Warnings</h2>", _table(sorted(warned.items()), ("warning", "records"))]
    body += [
        "<h2>Example record</h2>",
        _example(example),
        "<h2>Fields</h2>",
        _table(sections.fields(manifest), ("field", "type", "description")),
        "<h2>Software</h2>",
        f"<p class='note'>{_e(', '.join(f'{k} {v}' for k, v in sorted(manifest['versions'].items())))}</p>",
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>Data card: {_e(spec['name'])}</title><style>{STYLE}</style></head>"
        "<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
