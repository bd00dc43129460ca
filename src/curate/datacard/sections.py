"""What the cards say beyond the counts, shared by the Markdown and the HTML card: uses and
limitations, de-identification, attribution and citation, field docs, decontamination and
build warnings. The wording is policy: `card_text.v1.yaml` beside this module, with the spec's
own `description`, `intended_uses` and `citation` first."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

TEXT_FILE = Path(__file__).with_name("card_text.v1.yaml")


@cache
def card_text() -> dict[str, Any]:
    return yaml.safe_load(TEXT_FILE.read_text(encoding="utf-8"))


def _as_list(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [" ".join(value.split())]
    return [" ".join(str(v).split()) for v in value]


def spec_field(manifest: dict[str, Any], key: str) -> Any:
    return (manifest["spec"].get("resolved") or {}).get(key)


def uses(manifest: dict[str, Any]) -> dict[str, list[str]]:
    text = card_text()
    schema = manifest["schema"]["name"]
    defaults = text["intended_uses"].get(schema) or text["intended_uses"]["default"]
    return {
        "description": _as_list(spec_field(manifest, "description")),
        "intended": _as_list(spec_field(manifest, "intended_uses")) or list(defaults),
        "out_of_scope": list(text["out_of_scope"]),
        "limitations": list(text["limitations"]),
    }


def deidentification(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest's `deidentification` (salt kind, fingerprint, note) with the sentence that
    explains it; manifests from before it existed say so."""
    deid = manifest.get("deidentification") or {}
    salt = deid.get("salt") or "unknown"
    explained = card_text()["deidentification"].get(
        salt, card_text()["deidentification"]["unknown"]
    )
    return {
        "salt": salt,
        "fingerprint": deid.get("salt_fingerprint"),
        "note": deid.get("note"),
        "text": explained,
    }


def attribution(manifest: dict[str, Any], scan: dict[str, Any]) -> list[str]:
    text = card_text()["attribution"]
    families = (scan.get("distributions") or {}).get("license_family") or {}
    lines = [text[f] for f in ("commercial", "noncommercial", "other", "none") if families.get(f)]
    lines.append(text["dataset"])
    return lines


def citation(manifest: dict[str, Any]) -> str | None:
    value = spec_field(manifest, "citation")
    return str(value).strip() if value else None


def fields(manifest: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(name, type, doc) of the record schema's fields, from its YAML (the single source)."""
    from curate.schema import load_schema

    schema = manifest["schema"]
    try:
        loaded = load_schema(f"{schema['name']}.v{schema['version']}")
    except Exception:  # a schema this installation does not ship: the card goes without it
        return []
    return field_docs(loaded.definition)


def decontamination(manifest: dict[str, Any]) -> str | None:
    matches = manifest.get("benchmark_matches")
    if not matches:
        return None
    removed = matches.get("records_removed", matches.get("total"))
    by = ", ".join(f"{k}: {v}" for k, v in (matches.get("by_benchmark") or {}).items())
    line = f"{removed} training records matched evaluation items and were removed"
    if "records_removed" in matches and matches.get("total") != removed:
        line += f" ({matches.get('total')} matches)"
    line += f" ({by})" if by else ""
    return line + (f"; full list in `{matches['file']}`." if matches.get("file") else ".")


def warnings(manifest: dict[str, Any]) -> dict[str, int]:
    """Counts of things a build noticed but kept (e.g. volumes padded to the target shape):
    the manifest's `warnings`, {name: count}, when a stage reports any."""
    found = manifest.get("warnings") or {}
    return {str(k): int(v) for k, v in found.items() if isinstance(v, int | float) and v}


def field_docs(definition: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(name, type, doc) of every top-level field of a schema definition."""
    rows = []
    for field in definition.get("fields", []):
        kind = field.get("type", "")
        if kind == "list":
            kind = f"list<{field.get('items', {}).get('type', '?')}>"
        nullable = "" if field.get("nullable", True) else ", required"
        rows.append((field["name"], kind + nullable, " ".join(str(field.get("doc", "")).split())))
    return rows
