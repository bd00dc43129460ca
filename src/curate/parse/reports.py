"""Radiology report sectioning: bytes or text in, every section out (pure, no Beam).

Unlike the official MIMIC-CXR `section_parser.py`, which keeps only impression, findings,
comparison and a last paragraph, this parser keeps *every* section, in document order:
known headers map to a canonical name through the versioned lexicon
(`curation_rules/report_sections.v1.yaml`), unknown headers are kept under their own
normalised name, text before the first header becomes `preamble`, and addenda (blocks above
a full line of underscores) become `addendum` sections.

Conventions (documented once, used by every source):

- De-identification placeholders are kept, and every source's placeholder is normalised to the
  MIMIC-CXR marker `___` (IU X-ray's `XXXX` becomes `___`, the PHI redactor writes `___`), so a
  consumer tests for one marker only (CheXinstruct skips samples containing `___`).
- Bytes must be UTF-8 (a BOM is allowed): other bytes raise `NotUTF8`. We do not guess cp1252:
  a wrong guess would silently change clinical text; the dead letter names the file instead.
- Hard line wraps (MIMIC wraps at 79 characters) are undone inside a paragraph; blank lines
  separate paragraphs (kept as one blank line); a line opening a numbered or bulleted item
  starts a new line. Runs of spaces collapse to one.
- A report without any header is kept whole as one section named `text`, `has_sections=False`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import yaml

from curate.errors import EmptyInput, NotUTF8, SpecError
from curate.resources import resource_path

# Sections that get a convenience column of their own in report_image.v1.
CONVENIENCE_SECTIONS = (
    "examination",
    "indication",
    "history",
    "technique",
    "comparison",
    "findings",
    "impression",
)
# A combined "FINDINGS AND IMPRESSION" section fills `impression` when there is no impression
# (what the CheXpert labeler reads); it never fills `findings`, so findings stays honest.
_FALLBACKS = {"impression": ("findings_impression",)}
# Sections that may sit above MIMIC's underscore line (everything else there is an addendum).
_ABOVE_LINE = ("addendum", "wet_read")

# Header at line start: all-caps words (letters, digits after the first letter, spaces and
# ( ) / , & # ' -) then a colon followed by whitespace or the end of the line. Mixed-case
# headers are matched by the same shape, case-insensitively, and accepted only when known.
_HEADER = re.compile(r"^[ \t]*([A-Za-z][A-Za-z0-9 ()/,&#'.-]*?)[ \t]*:")
# Headers sit at the start of a line; only this many characters are scanned for one, which
# also bounds the regex's work on a hostile line of a million spaces.
_HEADER_SCAN_CHARS = 120
_LIST_ITEM = re.compile(r"^(\d{1,2}[.)]|[-*\u2022])\s")
_SPACES = re.compile(r"[ \t\u00a0]+")


@dataclass(frozen=True)
class Section:
    name: str  # canonical (lexicon) or normalised unknown header
    text: str  # unwrapped paragraphs, "\n\n" between paragraphs
    header: str | None = None  # the header exactly as written, None for preamble/text


@dataclass
class ParsedReport:
    sections: list[Section]
    has_sections: bool
    report_text: str  # the full report: line ends normalised, trailing spaces removed
    notes: list[str] = field(default_factory=list)  # quirks seen: addendum, unknown_header:<x>, ...

    def convenience_columns(self) -> dict[str, str | None]:
        """One column per common section: texts of repeated sections joined by a blank line."""
        columns: dict[str, str | None] = {}
        for name in CONVENIENCE_SECTIONS:
            texts = [s.text for s in self.sections if s.name == name and s.text]
            if not texts:
                for fallback in _FALLBACKS.get(name, ()):
                    texts = [s.text for s in self.sections if s.name == fallback and s.text]
                    if texts:
                        break
            columns[name] = "\n\n".join(texts) if texts else None
        return columns


@dataclass(frozen=True)
class SectionLexicon:
    version: str
    synonyms: dict[str, str]  # normalised header -> canonical name
    canonical: frozenset[str]
    title_lines: frozenset[str]
    unknown_header_max_words: int
    unknown_header_min_chars: int
    mixed_case_known_only: bool
    separator_min_underscores: int
    preamble_section: str
    unsectioned_section: str

    @classmethod
    def from_dict(cls, data: dict[str, Any], version: str) -> SectionLexicon:
        try:
            synonyms: dict[str, str] = {}
            for canonical, entry in data["canonical"].items():
                for spelling in [canonical.replace("_", " "), *entry["synonyms"]]:
                    key = normalise_header(str(spelling))
                    if synonyms.get(key, canonical) != canonical:
                        raise SpecError(f"{version}: header {spelling!r} maps to two sections")
                    synonyms[key] = canonical
            rules = data["header_rules"]
            return cls(
                version=version,
                synonyms=synonyms,
                canonical=frozenset(data["canonical"]),
                title_lines=frozenset(
                    _SPACES.sub(" ", t).strip().upper() for t in data["title_lines"]
                ),
                unknown_header_max_words=int(rules["unknown_header_max_words"]["value"]),
                unknown_header_min_chars=int(rules["unknown_header_min_chars"]["value"]),
                mixed_case_known_only=rules["mixed_case_headers"]["value"] == "known_only",
                separator_min_underscores=int(rules["addendum_separator_min_underscores"]["value"]),
                preamble_section=str(data["preamble_section"]),
                unsectioned_section=str(data["unsectioned_section"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SpecError(f"section lexicon {version} is malformed: {exc!r}") from exc

    def canonical_name(self, header: str) -> str | None:
        return self.synonyms.get(normalise_header(header))


def normalise_header(header: str) -> str:
    """Lower-case, whitespace collapsed, trailing colon and spaces removed."""
    return _SPACES.sub(" ", header.replace("\n", " ")).strip().rstrip(":").strip().lower()


def unknown_section_name(header: str) -> str:
    """Snake-case name for a header the lexicon does not know: 'PA VIEW (1)' -> 'pa_view_1'."""
    return re.sub(r"[^a-z0-9]+", "_", header.lower()).strip("_") or "unnamed"


@cache
def load_lexicon(ref: str = "report_sections.v1") -> SectionLexicon:
    path = resource_path("curation_rules", f"{ref}.yaml")
    if not path.is_file():
        raise SpecError(f"unknown section lexicon {ref!r} (no {path})")
    return SectionLexicon.from_dict(yaml.safe_load(path.read_text(encoding="utf-8")), ref)


def decode_report(data: bytes) -> str:
    """UTF-8 text of a report; `EmptyInput` for no (or only blank) text, `NotUTF8` otherwise."""
    if not data:
        raise EmptyInput("report file has no bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NotUTF8(
            f"report is not UTF-8: byte {data[exc.start]:#04x} at offset {exc.start}"
        ) from exc
    if not text.strip():
        raise EmptyInput("report holds only whitespace")
    return text


def normalise_newlines(text: str) -> str:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def unwrap(lines: list[str]) -> str:
    """Join hard-wrapped lines into paragraphs; keep list items and paragraph breaks."""
    paragraphs: list[list[str]] = []
    current: list[str] = []
    for raw in lines:
        line = _SPACES.sub(" ", raw).strip()
        if not line:
            if current:
                paragraphs.append(current)
                current = []
            continue
        if current and _LIST_ITEM.match(line):
            current.append("\n" + line)
        else:
            current.append(line)
    if current:
        paragraphs.append(current)
    out = []
    for para in paragraphs:
        text = ""
        for piece in para:
            if piece.startswith("\n"):
                text += piece
            else:
                text = f"{text} {piece}" if text else piece
        out.append(text)
    return "\n\n".join(out)


def _is_separator(line: str, minimum: int) -> bool:
    stripped = line.strip()
    return len(stripped) >= minimum and set(stripped) == {"_"}


def _match_header(line: str, lexicon: SectionLexicon) -> tuple[str, str, str | None] | None:
    """(header as written, section name, text after the colon) when `line` opens a section."""
    match = _HEADER.match(line[:_HEADER_SCAN_CHARS])
    if not match:
        return None
    header = match.group(1).strip()
    known = lexicon.canonical_name(header)
    glued = line[match.end() : match.end() + 1] not in ("", " ", "\t")
    if known is None and glued:
        return None  # 'FINDINGS:The lungs' opens a known section; 'AB:CD' is not a header
    if known is None:
        if header != header.upper() or not any(c.isalpha() for c in header):
            return None  # mixed case: only known headers open sections
        if len(header) < lexicon.unknown_header_min_chars:
            return None
        if len(header.split()) > lexicon.unknown_header_max_words:
            return None
        if header.count("(") != header.count(")"):
            return None
    elif header != header.upper() and not lexicon.mixed_case_known_only:
        return None
    name = known or unknown_section_name(header)
    rest = line[match.end() :]
    return header, name, rest


def _split_sections(lines: list[str], lexicon: SectionLexicon, notes: list[str]) -> list[Section]:
    sections: list[Section] = []
    header: str | None = None
    name = lexicon.preamble_section
    body: list[str] = []

    def close() -> None:
        text = unwrap(body)
        if header is not None or text:
            sections.append(Section(name=name, text=text, header=header))

    for line in lines:
        if _SPACES.sub(" ", line).strip().upper() in lexicon.title_lines:
            continue
        found = _match_header(line, lexicon)
        if found is None:
            body.append(line)
            continue
        close()
        header, name, rest = found
        if lexicon.canonical_name(header) is None:
            notes.append(f"unknown_header:{name}")
        body = [rest] if rest and rest.strip() else []
    close()
    return sections


def parse_report(text: str, lexicon: SectionLexicon | None = None) -> ParsedReport:
    """Sections of a free-text report (MIMIC-CXR layout or any `HEADER:` layout)."""
    lexicon = lexicon or load_lexicon()
    report_text = normalise_newlines(text)
    if not report_text.strip():
        raise EmptyInput("report holds only whitespace")
    lines = report_text.split("\n")
    notes: list[str] = []

    # Addenda sit above the original report, each block closed by a line of underscores.
    blocks: list[list[str]] = [[]]
    for line in lines:
        if _is_separator(line, lexicon.separator_min_underscores):
            blocks.append([])
        else:
            blocks[-1].append(line)
    blocks = [b for b in blocks if any(line.strip() for line in b)]
    if not blocks:
        raise EmptyInput("report holds only separator lines")
    *addenda, original = blocks

    sections: list[Section] = []
    for block in addenda:
        inner = _split_sections(block, lexicon, [])
        # A block above an underscore line is one section, whatever headers it repeats inside
        # (an addendum's IMPRESSION must not override the original's). It is a `wet_read` when
        # it opens with a WET READ header, else an `addendum`; its leading header is dropped,
        # later headers stay in the text.
        lead = next((s for s in inner if s.header is not None), None)
        name = lead.name if lead is not None and lead.name in _ABOVE_LINE else "addendum"
        notes.append(name)
        parts = []
        for s in inner:
            if s.header is None or (s is lead and s.name in _ABOVE_LINE):
                parts.append(s.text)
            else:
                parts.append(f"{s.header.upper()}: {s.text}".rstrip())
        block_text = "\n\n".join(p for p in parts if p)
        if block_text:
            sections.append(
                Section(
                    name=name, text=block_text, header=lead.header if lead is not None else None
                )
            )

    body_sections = _split_sections(original, lexicon, notes)
    has_headers = any(s.header is not None for s in body_sections)
    if not has_headers and not sections:
        whole = unwrap(
            [
                line
                for line in original
                if _SPACES.sub(" ", line).strip().upper() not in lexicon.title_lines
            ]
        )
        return ParsedReport(
            sections=[Section(name=lexicon.unsectioned_section, text=whole)] if whole else [],
            has_sections=False,
            report_text=report_text,
            notes=notes,
        )
    sections.extend(body_sections)
    return ParsedReport(sections=sections, has_sections=True, report_text=report_text, notes=notes)


def parse_report_bytes(data: bytes, lexicon: SectionLexicon | None = None) -> ParsedReport:
    return parse_report(decode_report(data), lexicon)


def sections_from_fields(
    fields: list[tuple[str, str | None]],
    lexicon: SectionLexicon | None = None,
) -> ParsedReport:
    """A report that arrives already split into columns (IU X-ray CSV): one section per
    non-empty column, in the given order, names mapped through the lexicon."""
    lexicon = lexicon or load_lexicon()
    sections = []
    for column, value in fields:
        text = unwrap(normalise_newlines(value or "").split("\n"))
        if not text:
            continue
        name = lexicon.canonical_name(column) or unknown_section_name(column)
        sections.append(Section(name=name, text=text, header=column))
    if not sections:
        raise EmptyInput("report has no text in any column")
    report_text = "\n\n".join(f"{s.name.upper()}: {s.text}" for s in sections)
    return ParsedReport(sections=sections, has_sections=True, report_text=report_text)
