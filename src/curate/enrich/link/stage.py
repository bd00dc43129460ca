"""`LinkStage`: entities with assertions on every configured text field, labels on reports.

Engine-agnostic (a `curate.stages.Stage`): `setup()` loads the KB, index and rules once per
worker (building the default KB offline on first use); `process(record)` adds `entities` and,
for records that carry report fields, `derived_labels`.

Bad text, decided here:
- empty or missing field: no entities, no error;
- bytes that are not UTF-8 (or a str with lone surrogates): the record fails with `NotUTF8`
  naming the field (a dead letter, never silently skipped);
- a field longer than `limits.max_chars_per_field`: by default linked up to that length and
  counted in `stats["truncated_fields"]`; with `on_huge_text: reject` the record is rejected
  with reason `text_too_long_for_linking`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from curate.enrich.link.assertion import AssertionDetector, AssertionRules
from curate.enrich.link.config import LinkConfig
from curate.enrich.link.index import LoadedKB, read_manifest
from curate.enrich.link.labels import LabelSet, ReportLabeler
from curate.enrich.link.linker import Linker, LinkerSettings
from curate.enrich.link.store import resolve_kb
from curate.errors import InputError, NotUTF8
from curate.stages import Record, Rejected, Stage


class TextTooLong(InputError):
    """A text field is longer than the linker's per-field limit."""

    reason = "text_too_long_for_linking"


def _as_text(value: Any, where: str) -> str:
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NotUTF8(f"field {where} is not UTF-8 ({exc})") from exc
    if not isinstance(value, str):
        raise InputError(
            f"field {where} holds {type(value).__name__}, expected text", reason="not_text"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise NotUTF8(f"field {where} holds undecodable characters ({exc})") from exc
    return value


def iter_field_texts(record: Record, fields: list[str]) -> Iterable[tuple[str, str, str]]:
    """(entity field label, top-level field, text) for each configured field present."""
    for name in fields:
        value = record.get(name)
        if value is None:
            continue
        if isinstance(value, list | tuple):
            for i, item in enumerate(value):
                if isinstance(item, dict) and "text" in item:
                    # A list of {name, text} structs (report_image.v1 `sections`).
                    label = f"{name}.{item.get('name') or i}"
                    if item["text"] is not None:
                        yield label, name, _as_text(item["text"], label)
                elif item is not None:
                    yield f"{name}[{i}]", name, _as_text(item, f"{name}[{i}]")
        elif isinstance(value, dict):
            for key, item in value.items():
                if item is not None:
                    yield f"{name}.{key}", name, _as_text(item, f"{name}.{key}")
        else:
            yield name, name, _as_text(value, name)


class LinkStage(Stage):
    name = "link"

    def __init__(self, config: LinkConfig | None = None) -> None:
        self.config = config or LinkConfig(enabled=True)
        self.linker: Linker | None = None
        self.labelers: list[ReportLabeler] = []
        self.stats: Counter = Counter()
        self.kb_manifest: dict[str, Any] | None = None

    def setup(self) -> None:
        if self.linker is not None:
            return
        config = self.config
        settings = LinkerSettings.load(Path(config.linker_rules) if config.linker_rules else None)
        assertion = AssertionDetector(
            AssertionRules.load(Path(config.assertion_rules) if config.assertion_rules else None)
        )
        kb_dir = resolve_kb(config.kb, Path(config.kb_cache) if config.kb_cache else None, settings)
        kb = LoadedKB.load(kb_dir, ef_search=settings.index_ef_search)
        self.kb_manifest = kb.manifest
        self.linker = Linker(kb, settings, assertion)
        self.labelers = [
            ReportLabeler(LabelSet.load(s), assertion, config.uncertain_as_for(s))
            for s in config.label_sets
        ]

    def kb_identity(self) -> dict[str, Any]:
        """KB id, sha256 and sources for the build manifest, without loading the index.

        Builds the default KB first if it is not cached yet (so the driver can call this before
        the workers start, and every worker then finds it ready).
        """
        config = self.config
        settings = LinkerSettings.load(Path(config.linker_rules) if config.linker_rules else None)
        kb_dir = resolve_kb(config.kb, Path(config.kb_cache) if config.kb_cache else None, settings)
        manifest = read_manifest(kb_dir)
        return {
            "kb_path": str(kb_dir),
            "kb_id": manifest["kb_id"],
            "kb_sha256": manifest["kb_sha256"],
            "kb_sources": manifest["sources"],
        }

    def describe(self) -> dict[str, Any]:
        """What a build manifest records about this stage (KB identity and rule versions)."""
        self.setup()
        assert self.linker is not None and self.kb_manifest is not None
        return {
            "kb_id": self.kb_manifest["kb_id"],
            "kb_sha256": self.kb_manifest["kb_sha256"],
            "kb_sources": self.kb_manifest["sources"],
            "linker_rules": self.linker.settings.name,
            "assertion_rules": self.linker.assertion.rules.name,
            "label_sets": [labeler.label_set.name for labeler in self.labelers],
            "stats": dict(self.stats),
        }

    def process(self, record: Record) -> Iterable[Record | Rejected]:
        self.setup()
        assert self.linker is not None
        limit = self.linker.settings.max_chars_per_field
        entities: list[dict[str, Any]] = []
        for label, _top, text in iter_field_texts(record, self.config.fields):
            if len(text) > limit:
                if self.config.on_huge_text == "reject":
                    self.stats["rejected_huge_text"] += 1
                    yield Rejected(record, TextTooLong.reason, stage=self.name)
                    return
                self.stats["truncated_fields"] += 1
                text = text[:limit]
            entities.extend(self.linker.link(text, label))
        self.stats["records"] += 1
        self.stats["entities"] += len(entities)
        out = dict(record)
        out["entities"] = entities
        if self.labelers and any(f in record for f in self.config.label_fields):
            # Label sets share some names (Cardiomegaly, Edema, ...): the first set listed in
            # the config decides those, so every observation appears once.
            label_texts = self._label_texts(record, limit)
            labels: dict[str, dict[str, str]] = {}
            for labeler in self.labelers:
                for item in labeler.derived_labels(label_texts, entities):
                    labels.setdefault(item["observation"], item)
            out["derived_labels"] = list(labels.values())
        yield out

    def _label_texts(self, record: Record, limit: int) -> dict[str, str]:
        """Entity field label -> text of the fields that decide labels (read whether or not
        they are linked; their entities count only when they are)."""
        texts = {
            label: text[:limit]
            for label, _top, text in iter_field_texts(record, self.config.label_fields)
            if text.strip()
        }
        if texts or not self.config.label_fallback:
            return texts
        wanted = set(self.config.label_fallback)
        tops = sorted({name.split(".")[0] for name in wanted})
        return {
            label: text[:limit]
            for label, top, text in iter_field_texts(record, tops)
            if text.strip() and (label in wanted or top in wanted)
        }
