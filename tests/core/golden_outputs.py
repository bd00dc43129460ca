"""Golden summaries of the demo builds: what a refactoring must leave unchanged.

A summary holds the manifest's counts, reasons and identities, and a digest of every output
table's *content* (rows sorted, build folder replaced by `<OUT>`), so it does not depend on
where the build ran nor on the Parquet writer's version string. Regenerate after an intended
change of outputs, and say why in the commit:

    python tests/core/golden_outputs.py OUT_DIR SPEC > tests/core/golden/SPEC.json
"""

from __future__ import annotations

import hashlib
import json
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


def _normalise(value: Any, out_dir: str) -> Any:
    if isinstance(value, str):
        return value.replace(out_dir, "<OUT>")
    if isinstance(value, bytes):
        return "sha256:" + hashlib.sha256(value).hexdigest()
    if isinstance(value, list):
        return [_normalise(v, out_dir) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v, out_dir) for k, v in value.items()}
    return value


def table_digest(files: list[Path], out_dir: str) -> dict[str, Any]:
    rows = []
    for path in files:
        for row in pq.read_table(path).to_pylist():
            rows.append(json.dumps(_normalise(row, out_dir), sort_keys=True, default=str))
    rows.sort()
    return {"rows": len(rows), "sha256": hashlib.sha256("\n".join(rows).encode()).hexdigest()}


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
