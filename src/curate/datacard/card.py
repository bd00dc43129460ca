"""Data card: a human-readable summary of a build (`OUT/DATA_CARD.md`), written from the
manifest and the kept shards. It answers what a dataset user asks first: where the data came
from, what was dropped and why, how the splits look, which licences, modalities and findings
the records carry."""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

import pyarrow.parquet as pq

from curate import fs
from curate.datacard import sections
from curate.datacard.frontmatter import front_matter
from curate.shards import layout

# Distributions are computed over at most this many kept rows, so the card stays cheap on
# very large builds (the manifest holds the exact counts).
MAX_ROWS_SCANNED = 200_000
DISTRIBUTION_COLUMNS = (
    "license",
    "license_family",
    "modality",
    "dataset",
    "view_position",
    "article_type",
)


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    # a `|` inside a cell would end it
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _counter_table(counter: Counter | dict, name: str, limit: int = 20) -> str:
    items = sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))[:limit]
    return _table([(k if k is not None else "(none)", v) for k, v in items], (name, "records"))


def scan_shards(out_dir: str) -> dict[str, Any]:
    """Distributions over the kept records (first MAX_ROWS_SCANNED rows)."""
    paths = fs.glob(fs.join(out_dir, "shards", "*", "*.parquet"))
    distributions: dict[str, Counter] = {}
    entities: dict[tuple[str, str], Counter] = {}
    labels: Counter = Counter()
    scanned = 0
    for path in paths:
        if scanned >= MAX_ROWS_SCANNED:
            break
        names = pq.ParquetFile(path).schema_arrow.names
        columns = [
            c for c in (*DISTRIBUTION_COLUMNS, "entities", "derived_labels", "labels") if c in names
        ]
        if not columns:
            continue
        rows = pq.read_table(path, columns=columns).to_pylist()[: MAX_ROWS_SCANNED - scanned]
        scanned += len(rows)
        for row in rows:
            for column in DISTRIBUTION_COLUMNS:
                if column in row:
                    distributions.setdefault(column, Counter())[row[column]] += 1
            for entity in row.get("entities") or []:
                key = (entity.get("cui") or "", entity.get("name") or "")
                entities.setdefault(key, Counter())[entity.get("assertion") or "present"] += 1
            for item in row.get("derived_labels") or row.get("labels") or []:
                if item.get("value") == "positive":
                    labels[item.get("observation")] += 1
    return {
        "scanned": scanned,
        "distributions": distributions,
        "entities": entities,
        "labels": labels,
    }


def render(
    manifest: dict[str, Any], scan: dict[str, Any], example: dict[str, Any] | None = None
) -> str:
    spec = manifest["spec"]
    records = manifest["records"]
    parts = [
        front_matter(manifest, scan),
        f"# Data card: {spec['name']}",
        "",
        *[line for p in sections.uses(manifest)["description"] for line in (p, "")],
        f"Built by curate {manifest['curate_version']} from spec `{spec['path']}` "
        f"(sha256 `{spec['sha256'][:16]}`), record schema `{manifest['schema']['name']}` "
        f"v{manifest['schema']['version']} (hash `{manifest['schema']['hash']}`). "
        f"Status: **{manifest['status']}**{(' — ' + manifest['status_message']) if manifest.get('status_message') else ''}.",
        "",
        "## Inputs",
        "",
        _table(
            [
                (
                    name,
                    src["kind"],
                    src["discovered"],
                    sum(src["skipped"].values()),
                    src["read"],
                    sum(src["failed"].values()),
                )
                for name, src in sorted(manifest["inputs"].items())
            ],
            ("source", "kind", "units found", "skipped", "read", "failed"),
        ),
        "",
        "## Records",
        "",
        f"{records['candidates']} candidate records: **{records['kept']} kept**, {records['rejected']} "
        f"rejected with a reason, {records['errors']} errors with a reason "
        f"(accounting identities: {'all hold' if all(i['holds'] for i in manifest['identities']) else 'BROKEN'}).",
        "",
        _table(sorted(manifest["splits"].items()), ("split", "records")),
    ]
    if manifest["reject_reasons"]:
        parts += [
            "",
            "### Why records were rejected",
            "",
            _counter_table(manifest["reject_reasons"], "reason", 50),
        ]
    if manifest["error_reasons"]:
        parts += ["", "### Errors", "", _counter_table(manifest["error_reasons"], "reason", 50)]
    parts += ["", f"## What the kept records carry (over {scan['scanned']} records)"]
    for column, counter in sorted(scan["distributions"].items()):
        parts += ["", f"### {column}", "", _counter_table(counter, column)]
    if scan["entities"]:
        top = sorted(scan["entities"].items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:25]
        parts += [
            "",
            "### Most frequent linked concepts",
            "",
            _table(
                [(cui, name, c["present"], c["absent"], c["uncertain"]) for (cui, name), c in top],
                ("CUI", "name", "present", "absent", "uncertain"),
            ),
        ]
    if scan["labels"]:
        parts += [
            "",
            "### Positive observation labels",
            "",
            _counter_table(scan["labels"], "observation", 30),
        ]
    instructions = manifest.get("instructions")
    if instructions:
        parts += [
            "",
            "## Instruction data",
            "",
            f"{instructions['records_with_instructions']} of {instructions['records_in']} kept records have "
            f"instructions; {instructions['records_rejected']} rejected, {instructions['records_failed']} failed.",
            "",
            _counter_table(instructions["tasks"], "task", 50),
        ]
    decontam = sections.decontamination(manifest)
    if decontam:
        parts += ["", "## Benchmark decontamination", "", decontam]
    if manifest.get("linking"):
        link = manifest["linking"]
        parts += [
            "",
            "## Linking knowledge base",
            "",
            f"`{link['kb_id']}` (sha256 `{link['kb_sha256'][:16]}`).",
        ]
    parts += usage_sections(manifest, scan, example)
    parts += time_section(manifest)
    parts += [
        "",
        "## Software",
        "",
        ", ".join(f"{k} {v}" for k, v in sorted(manifest["versions"].items())),
        "",
    ]
    return "\n".join(parts)


def _bullets(items: list[str]) -> list[str]:
    return [f"- {item}" for item in items]


def usage_sections(
    manifest: dict[str, Any], scan: dict[str, Any], example: dict[str, Any] | None
) -> list[str]:
    """Uses, limitations, de-identification, attribution, warnings, example and field docs."""
    about = sections.uses(manifest)
    deid = sections.deidentification(manifest)
    parts = ["", "## Intended uses", "", *_bullets(about["intended"])]
    parts += ["", "## Out-of-scope uses", "", *_bullets(about["out_of_scope"])]
    parts += ["", "## Limitations", "", *_bullets(about["limitations"])]
    fingerprint = f", salt fingerprint `{deid['fingerprint']}`" if deid["fingerprint"] else ""
    parts += [
        "",
        "## De-identification",
        "",
        f"Salt: **{deid['salt']}**{fingerprint}. {deid['text']}",
    ]
    if deid["note"]:
        parts += ["", deid["note"]]
    parts += [
        "",
        "## Licences and attribution",
        "",
        *_bullets(sections.attribution(manifest, scan)),
    ]
    cite = sections.citation(manifest)
    if cite:
        parts += ["", "### Citation", "", "```", cite, "```"]
    warned = sections.warnings(manifest)
    if warned:
        parts += ["", "## Warnings", "", _counter_table(warned, "warning")]
    if example:
        shown = {k: v for k, v in example.items() if k != "thumbnail_png"}
        parts += [
            "",
            "## Example record",
            "",
            "The image is in `DATA_CARD.html`.",
            "",
            "```json",
            json.dumps(shown, indent=1, ensure_ascii=False, default=str)[:4000],
            "```",
        ]
    rows = sections.fields(manifest)
    if rows:
        parts += ["", "## Fields", "", _table(rows, ("field", "type", "description"))]
    return parts


def human_bytes(n: float | None) -> str:
    """Decimal units (1 KB = 1000 B), as storage and cloud bills count them."""
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _stage_row(prefix: str, row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        f"{prefix} {row['stage']}",
        _seconds(row.get("wall_s")),
        _seconds(row.get("cpu_s")),
        row.get("records_in", "—"),
        row.get("records_out", "—"),
        human_bytes(row.get("bytes_read")),
        human_bytes(row.get("bytes_written")),
    )


STAGE_COLUMNS = (
    "stage",
    "wall s",
    "CPU s",
    "records in",
    "records out",
    "bytes read",
    "bytes written",
)


def _phase_table(timings: dict[str, Any]) -> str:
    rows = [
        (p["phase"], _seconds(p["wall_s"]), _seconds(p["cpu_s"]), _seconds(p["cpu_children_s"]))
        for p in timings["phases"]
    ]
    return _table(rows, ("phase", "wall s", "CPU s (driver)", "CPU s (exited workers)"))


def _stage_table(timings: dict[str, Any]) -> str:
    rows = [_stage_row("phase 1:", row) for row in timings["phase1"]["stages"]]
    rows += [_stage_row("phase 2:", row) for row in timings["phase2"]["steps"]]
    return _table(rows, STAGE_COLUMNS)


def _shuffle_line(shuffles: dict[str, dict[str, int]]) -> str:
    moved = human_bytes(sum(s["bytes"] for s in shuffles.values()))
    elements = sum(s["elements"] for s in shuffles.values())
    return f"Phase 2 shuffled {moved} ({elements} elements) through {len(shuffles)} shuffles."


def time_section(manifest: dict[str, Any]) -> list[str]:
    """The card's "Where the time went": the run's phases, then every timed stage."""
    timings = manifest.get("timings")
    if not timings:  # a manifest from before timings existed
        return []
    phase1 = timings["phase1"]
    timed = min((row["tasks_timed"] for row in phase1["stages"]), default=0)
    return [
        "",
        "## Where the time went",
        "",
        _phase_table(timings),
        "",
        f"Per stage: phase-1 seconds are sums over tasks ({timed} of {phase1['tasks_total']} "
        "tasks timed in this run or the run that did them); phase-2 steps from Beam metrics "
        "(the step's own function; shuffles are in the phase-2 total). For read, records in "
        "counts units.",
        "",
        _stage_table(timings),
        "",
        _shuffle_line(manifest.get("shuffle") or {}),
    ]


def write_data_card(out_dir: str, manifest: dict[str, Any]) -> str:
    """`DATA_CARD.md` (with Hugging Face front matter) and the self-contained
    `DATA_CARD.html` with plots, beside it."""
    from curate.datacard.html import HTML_CARD, render_html
    from curate.datacard.stats import example_record, scan_sizes

    scan = scan_shards(out_dir)
    example = example_record(out_dir)
    path = fs.join(out_dir, layout.DATA_CARD)
    fs.write_bytes_atomic(path, render(manifest, scan, example).encode())
    try:
        page = render_html(manifest, scan, scan_sizes(out_dir), example)
    except Exception as exc:  # a plot must never cost the build its manifest
        logging.getLogger(__name__).warning("the HTML data card failed: %r", exc)
        page = f"<!DOCTYPE html><p>The HTML card failed ({exc!r}); see {layout.DATA_CARD}.</p>"
    fs.write_bytes_atomic(fs.join(out_dir, HTML_CARD), page.encode())
    return path


__all__ = ["write_data_card", "render", "scan_shards", "layout"]
