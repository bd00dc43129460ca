"""Source contract: discover input units, then read each unit into records.

A *unit* is the smallest resumable piece of input (one article version, one package, one
study, one series). Discovery runs on workers, in three steps the engine distributes:

    partitions()        driver: a few coarse, JSON-able pieces (key prefixes, inventory files)
    expand(partition)   worker: the candidate units of one piece
    settle(units)       worker: candidates sharing a `settle_key` decided together (the
                        versions of one article: the highest is kept, the others skipped)

A source that cannot split its input keeps the defaults: one partition whose expansion is
`discover()`. A unit the source decides to skip (an older article version, a retracted
article) is still listed, with `skip_reason`, so the manifest accounts for it. `read(unit)` is pure with respect to the engine: it yields
schema records, `Rejected` markers (e.g. `image_missing`) and `Failed` dead letters for parts
of the unit (one unreadable image); it raises a `CurateError` when the whole unit is unusable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from curate.errors import SpecError
from curate.sources.path_privacy import PathPseudonyms
from curate.stages import Failed, Record, Rejected


@dataclass(frozen=True)
class Unit:
    unit_id: str  # deterministic and filesystem-safe; names the unit's intermediate file
    uri: str  # the main input file (XML, package, report, series folder)
    kind: str  # source kind that produced it
    meta: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable
    skip_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Unit:
        return cls(**data)


def safe_unit_id(text: str) -> str:
    """A filesystem-safe, deterministic id: readable prefix plus a short hash of the full text."""
    readable = "".join(c if c.isalnum() or c in "._-" else "_" for c in text)[-80:].strip("._")
    return f"{readable}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


class SourceOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Source:
    kind: ClassVar[str] = ""
    schema_ref: ClassVar[str] = ""  # record schema the source produces, e.g. figure_caption.v1
    also_produces: ClassVar[tuple[str, ...]] = ()  # newer versions it can write when asked
    options_model: ClassVar[type[SourceOptions]] = SourceOptions
    group_field: ClassVar[str] = (
        ""  # field that keeps related records in one split (pmcid, subject_id)
    )

    def __init__(
        self, path: str, options: dict[str, Any] | None = None, *, schema_ref: str | None = None
    ) -> None:
        self.path = path
        self.options = self.options_model(**(options or {}))
        self.record_schema = schema_ref or self.schema_ref  # the spec's schema, one we produce
        if schema_ref and schema_ref not in self.schemas():
            raise SpecError(f"source kind {self.kind} produces {self.schemas()}, not {schema_ref}")

    @classmethod
    def schemas(cls) -> tuple[str, ...]:
        return (cls.schema_ref, *cls.also_produces)

    @classmethod
    def uses_salt(cls, options: dict[str, Any]) -> bool:
        """Whether a build with these options pseudonymises identifiers (and so needs its
        de-identification salt): sources with a `uid_salt` option, except the text-only
        `record_mode: report`, which reads no DICOM and hashes nothing."""
        if "uid_salt" not in cls.options_model.model_fields:
            return False
        return options.get("record_mode") != "report"

    def discover(self) -> Iterator[Unit]:
        """Every unit, settled and sorted by id: the single-process path (tests, small inputs);
        a build runs the same three steps on workers."""
        yield from discover_units(self)

    def partitions(self) -> list[str]:
        return [WHOLE_INPUT]

    def expand(self, partition: str) -> Iterator[Unit]:
        if partition != WHOLE_INPUT:
            raise SpecError(f"{self.kind} source: unknown partition {partition!r}")
        yield from self.discover()

    def settle_key(self, unit: Unit) -> str:
        return unit.unit_id

    def settle(self, units: list[Unit]) -> list[Unit]:
        return units

    def read(self, unit: Unit) -> Iterator[Record | Rejected | Failed]:
        raise NotImplementedError

    @cached_property
    def path_privacy(self) -> PathPseudonyms | None:
        """Pseudonyms for path-derived ids and URIs, when the options say `pseudonymise_paths`
        (the DICOM sources' default): phase 1 passes every output of `read` through it."""
        if not getattr(self.options, "pseudonymise_paths", False):
            return None
        from curate.parse.deid import option_salt

        return PathPseudonyms(self.path, option_salt(getattr(self.options, "uid_salt", None)))

    def read_published(self, unit: Unit) -> Iterator[Record | Rejected | Failed]:
        """`read`, each output as it may leave the worker (`publish`): what phase 1 runs."""
        for item in self.read(unit):
            yield self.publish(item, unit)

    def publish(self, item: Any, unit: Unit) -> Any:
        """A record, reject or failure of `unit` with its raw input paths pseudonymised, when
        the source says so."""
        if self.path_privacy is not None:
            self.path_privacy.item(item, [unit.uri, *unit.meta.get("files", [])])
        return item

    def public_name(self, name: str, prefix: str = "n-") -> str:
        """A file or folder name as it may appear in ids: itself, or its pseudonym."""
        privacy = self.path_privacy
        return privacy.name(name, prefix) if privacy else name


WHOLE_INPUT = "*"  # the one partition of a source that does not split its input


def discover_units(source: Source) -> list[Unit]:
    """partitions -> expand -> settle in one process, sorted by unit id."""
    groups: dict[str, list[Unit]] = {}
    for partition in source.partitions():
        for unit in source.expand(partition):
            groups.setdefault(source.settle_key(unit), []).append(unit)
    settled = [unit for key in sorted(groups) for unit in source.settle(groups[key])]
    return sorted(settled, key=lambda u: u.unit_id)


_SOURCES: dict[str, type[Source]] = {}


def register_source(cls: type[Source]) -> type[Source]:
    _SOURCES[cls.kind] = cls
    return cls


def _import_builtin_sources() -> None:
    import importlib

    for module in ("pmc", "mimic_cxr", "iu_xray", "ct_rate", "dicom_folder", "dicom_series"):
        try:
            importlib.import_module(f"curate.sources.{module}")
        except ModuleNotFoundError as exc:  # a source not (yet) present in this checkout
            if exc.name != f"curate.sources.{module}":
                raise


def get_source_class(kind: str) -> type[Source]:
    _import_builtin_sources()
    if kind not in _SOURCES:
        raise SpecError(f"unknown source kind {kind!r}; available: {sorted(_SOURCES)}")
    return _SOURCES[kind]


def available_sources() -> list[str]:
    _import_builtin_sources()
    return sorted(_SOURCES)
