"""Golden summaries of the demo builds: what a refactoring must leave unchanged.

A summary holds the manifest's counts, reasons and identities, and a digest of every output
table's *content* (rows sorted, build folder replaced by `<OUT>`), so it does not depend on
where the build ran nor on the Parquet writer's version string. Floating-point values are not
in the digest: matrix products round differently on different CPUs (an AMD EPYC and the
machine the goldens were first made on differ in the last bits of the embedding vectors), so
each table's floats are summarised by `FloatSummary` and compared within `FLOAT_TOLERANCE`,
while everything else must be equal. Regenerate after an intended change of outputs, and say
why in the commit:

    python tests/core/golden_outputs.py OUT_DIR SPEC > tests/core/golden/SPEC.json
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

MANIFEST_KEYS = (
    "records",
    "units",
    "splits",
    "stages",
    "reject_reasons",
    "error_reasons",
    "error_fraction",
    "identities",
    "instructions",
    "instruction_splits",
    "tasks",
    "status",
)


FLOAT = "<float>"
# Relative to the table's sum of |values|: float noise between CPUs is ~1e-7 per value, while a
# changed vector, score or row moves a summary by far more than 1e-4 of it.
FLOAT_TOLERANCE = 1e-4


def _normalise(value: Any, out_dir: str, floats: list[float] | None = None) -> Any:
    if isinstance(value, float) and floats is not None:
        floats.append(value)
        return FLOAT
    if isinstance(value, str):
        return value.replace(out_dir, "<OUT>")
    if isinstance(value, bytes):
        return "sha256:" + hashlib.sha256(value).hexdigest()
    if isinstance(value, list):
        return [_normalise(v, out_dir, floats) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(value[k], out_dir, floats) for k in sorted(value)}
    return value


def float_summary(rows: list[list[float]]) -> dict[str, float]:
    """Sums of a table's floats (rows in digest order): plain, absolute, and weighted by
    position, so a value moved to another row or column changes the summary too."""
    flat = [v for row in rows for v in row if not math.isnan(v)]
    return {
        "count": len(flat),
        "sum": math.fsum(flat),
        "abs_sum": math.fsum(abs(v) for v in flat),
        "weighted_sum": math.fsum(v * (1 + i % 97) for i, v in enumerate(flat)),
    }


def floats_match(got: dict[str, float], expected: dict[str, float]) -> bool:
    if got.get("count") != expected.get("count"):
        return False
    scale = max(expected.get("abs_sum", 0.0), 1.0)
    return all(
        abs(got[key] - expected[key])
        <= FLOAT_TOLERANCE * scale * (97 if key == "weighted_sum" else 1)
        for key in ("sum", "abs_sum", "weighted_sum")
    )


def table_digest(files: list[Path], out_dir: str) -> dict[str, Any]:
    rows = []
    for path in files:
        for row in pq.read_table(path).to_pylist():
            floats: list[float] = []
            text = json.dumps(_normalise(row, out_dir, floats), sort_keys=True, default=str)
            rows.append((text, floats))
    rows.sort()
    digest = hashlib.sha256("\n".join(text for text, _ in rows).encode()).hexdigest()
    out: dict[str, Any] = {"rows": len(rows), "sha256": digest}
    if any(floats for _, floats in rows):
        out["floats"] = float_summary([floats for _, floats in rows])
    return out


def tables_match(got: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """The tables whose rows, non-float content or float summary differ (empty: all match)."""
    differ = []
    for name in sorted(set(got) | set(expected)):
        a, b = got.get(name), expected.get(name)
        same = (
            a is not None and b is not None and (a["rows"], a["sha256"]) == (b["rows"], b["sha256"])
        )
        if same and ("floats" in a or "floats" in b):
            same = "floats" in a and "floats" in b and floats_match(a["floats"], b["floats"])
        if not same:
            differ.append(name)
    return differ


def summarise(out: Path) -> dict[str, Any]:
    out_dir = str(out)
    manifest = json.loads((out / "manifest.json").read_text())
    tables: dict[str, list[Path]] = {}
    for path in sorted(out.rglob("*.parquet")):
        relative = path.relative_to(out)
        if relative.parts[0] == "_work":
            continue
        tables.setdefault(str(relative.parent), []).append(path)
    return {
        "manifest": {k: _normalise(manifest.get(k), out_dir) for k in MANIFEST_KEYS},
        "tables": {name: table_digest(files, out_dir) for name, files in sorted(tables.items())},
    }


if __name__ == "__main__":
    print(json.dumps(summarise(Path(sys.argv[1])), indent=1, sort_keys=True))
