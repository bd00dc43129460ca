"""Discovery for the PMC source: which layout a root holds, the partitions it splits into, and
the candidate units each partition expands into (the legacy file list is read here too).

Partitions are strings `<kind>:<piece>`, JSON-able and readable in a plan:

    folder:*          the whole folder tree (walked on the worker that expands it)
    legacy:*          the whole legacy mirror, file list included
    cloud:*           a single cloud file given as the input path
    cloud:PMC12       PMC Cloud key prefix: the version folders `PMC12<...>.<v>/` and the flat
                      `metadata/PMC12<...>.<v>.json` files (`PMC1.`, the one-digit ids, and
                      `PMC0`, ids written with a leading zero, complete the set; a root the
                      layout sample saw whole is the one piece `cloud:PMC`)
    inventory:<uri>   one CSV shard of an S3 inventory of `metadata/` (see `pmc_inventory`)

Candidates of the cloud layout are unsettled: the source picks the version to read and the
skip reasons in `settle`, once all versions of an article have met.
"""

from __future__ import annotations

import csv
import io
import os
import posixpath
import re
from collections.abc import Iterable, Iterator
from typing import Any

from curate import fs
from curate.errors import MalformedMetadata, SpecError
from curate.sources.base import Unit, safe_unit_id

CLOUD_DIR = re.compile(r"^(PMC\d+)\.(\d+)$")
XML_SUFFIXES = (".nxml", ".xml")
PACKAGE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
FILE_LIST_NAMES = ("oa_file_list.csv",)
# Files the layout detection looks at: one page of an object-store listing.
LAYOUT_SAMPLE = 1000
WHOLE = "*"
PARTITION_KINDS = ("folder", "legacy", "cloud", "inventory")


# ---- paths ----------------------------------------------------------------------------------


def basename(path: str) -> str:
    return posixpath.basename(path.replace("\\", "/"))


def dirname(path: str) -> str:
    return os.path.dirname(path) if fs.is_local(path) else posixpath.dirname(path)


def rel_path(root: str, path: str) -> str:
    if path == root:  # the input is a single file
        return basename(path)
    if fs.is_local(root):
        return os.path.relpath(path, root).replace(os.sep, "/")
    return path[len(root) :].lstrip("/") if path.startswith(root) else path


# ---- layout ---------------------------------------------------------------------------------


def layout_of_sample(root: str, files: list[str]) -> str:
    """cloud when a version folder right under the root holds its XML, legacy when packages or
    a file list show up, else folder. `files` is a bounded sample, never the whole tree."""
    has_legacy = False
    for path in files:
        name = basename(path)
        parent = basename(dirname(path))
        # Only top-level version folders count: the key-prefix partitions look nowhere else.
        top_level = path == root or rel_path(root, path).count("/") == 1
        if CLOUD_DIR.match(parent) and name == f"{parent}.xml" and top_level:
            return "cloud"
        low = name.lower()
        if low.endswith(PACKAGE_SUFFIXES) or low in FILE_LIST_NAMES:
            has_legacy = True
    return "legacy" if has_legacy else "folder"


# ---- partitions -----------------------------------------------------------------------------


def partition(kind: str, piece: str) -> str:
    return f"{kind}:{piece}"


def split_partition(text: str) -> tuple[str, str]:
    kind, colon, piece = text.partition(":")
    if not colon or kind not in PARTITION_KINDS or not piece:
        raise SpecError(f"pmc source: unknown partition {text!r}")
    return kind, piece


def cloud_prefixes(digits: int) -> list[str]:
    """Disjoint key prefixes that together hold every `PMC<id>.<v>` name: ids shorter than
    `digits` exactly (`PMC7.`), longer ones by their first `digits` digits (`PMC712`), and
    `PMC0` for ids with a leading zero. 10**digits prefixes in all; `PMC` alone for 0."""
    if digits == 0:
        return ["PMC"]
    exact = [f"PMC{n}." for n in range(1, 10 ** (digits - 1))]
    leading = [f"PMC{n}" for n in range(10 ** (digits - 1), 10**digits)]
    return ["PMC0", *exact, *leading]


# ---- candidates -----------------------------------------------------------------------------


def folder_units(root: str, files: Iterable[str], kind: str) -> Iterator[Unit]:
    for path in files:
        if path.lower().endswith(XML_SUFFIXES):
            yield Unit(
                unit_id=safe_unit_id(f"pmc/folder/{rel_path(root, path)}"),
                uri=path,
                kind=kind,
                meta={"layout": "folder"},
            )


def cloud_unit(
    kind: str,
    pmcid: str,
    version: int,
    *,
    uri: str,
    metadata_uri: str | None,
    media: list[str] | None,
) -> Unit:
    """One article version, not yet settled. `media` None: nothing was listed (an inventory
    names only the metadata), so reading takes the file names from the metadata."""
    return Unit(
        unit_id=safe_unit_id(f"pmc/cloud/{pmcid}.{version}"),
        uri=uri,
        kind=kind,
        meta={
            "layout": "cloud",
            "pmcid": pmcid,
            "version": version,
            "metadata_uri": metadata_uri,
            "media": media,
        },
    )


def cloud_candidates(files: Iterable[str], kind: str) -> Iterator[Unit]:
    """Listed files grouped into article versions: the version folder's XML, JSON and media,
    with the flat `metadata/` copy when the folder has no JSON."""
    versions: dict[tuple[str, int], dict[str, Any]] = {}
    flat_metadata: dict[str, str] = {}
    for path in files:
        name = basename(path)
        parent = basename(dirname(path))
        match = CLOUD_DIR.match(parent)
        if match:
            entry = versions.setdefault(
                (match[1], int(match[2])),
                {"xml": None, "json": None, "media": [], "dir": dirname(path)},
            )
            if name == f"{parent}.xml":
                entry["xml"] = path
            elif name == f"{parent}.json":
                entry["json"] = path
            elif not name.endswith((".txt", ".pdf")):
                entry["media"].append(path)
        elif parent == "metadata" and CLOUD_DIR.match(name.removesuffix(".json")):
            flat_metadata[name.removesuffix(".json")] = path
    for (pmcid, version), entry in sorted(versions.items()):
        key = f"{pmcid}.{version}"
        yield cloud_unit(
            kind,
            pmcid,
            version,
            uri=entry["xml"] or fs.join(entry["dir"], f"{key}.xml"),  # read() reports it missing
            metadata_uri=entry["json"] or flat_metadata.get(key),
            media=sorted(entry["media"]),
        )


def chosen_version(versions: Iterable[int], pinned: int | None) -> int:
    """The pinned version when it exists, else the highest."""
    present = set(versions)
    return pinned if pinned in present else max(present)


def version_skip(version: int, chosen: int) -> str | None:
    if version == chosen:
        return None
    return "superseded_version" if version < chosen else "unpinned_version"


def legacy_units(
    root: str,
    files: list[str],
    rows: list[dict[str, str]],
    *,
    kind: str,
    absent_packages: str,
    include_retracted: bool,
) -> Iterator[Unit]:
    """One unit per package: those the file list names (absent ones skipped or kept to fail),
    then packages on disk the list does not name."""
    packages = {
        rel_path(root, p): p for p in files if basename(p).lower().endswith(PACKAGE_SUFFIXES)
    }
    listed: set[str] = set()
    for row in rows:
        rel = row.get("file", "").lstrip("/")
        if not rel or rel in listed:
            continue
        listed.add(rel)
        skip = None
        if rel not in packages and absent_packages == "skip":
            skip = "package_absent"
        elif _yes(row.get("retracted")) and not include_retracted:
            skip = "retracted"
        yield Unit(
            unit_id=safe_unit_id(f"pmc/legacy/{rel}"),
            uri=packages.get(rel, fs.join(root, rel)),
            kind=kind,
            meta={"layout": "legacy", "package": rel, **_row_meta(row)},
            skip_reason=skip,
        )
    for rel in sorted(set(packages) - listed):
        yield Unit(
            unit_id=safe_unit_id(f"pmc/legacy/{rel}"),
            uri=packages[rel],
            kind=kind,
            meta={"layout": "legacy", "package": rel},
        )


# Positional columns of a header-less oa_file_list.csv (the real files often lack the header).
_LEGACY_COLUMNS = ("file", "citation", "accession", "updated", "pmid", "license")
_HEADER_ALIASES = {
    "file": "file",
    "key": "file",
    "article citation": "citation",
    "accession id": "accession",
    "accessionid": "accession",
    "last updated": "updated",
    "last updated utc": "updated",
    "pmid": "pmid",
    "license": "license",
    "retracted": "retracted",
    "etag": "etag",
}


def read_file_list(data: bytes) -> list[dict[str, str]]:
    """Rows of an oa_file_list.csv as dicts with normalised keys; header line optional."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MalformedMetadata(f"file list is not UTF-8 (byte {exc.start})") from exc
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if not rows:
        return []
    first = [c.strip().lower() for c in rows[0]]
    if first[0] in ("file", "key"):
        columns = [_HEADER_ALIASES.get(re.sub(r"\s*\(.*\)$", "", c), c) for c in first]
        rows = rows[1:]
    else:
        columns = list(_LEGACY_COLUMNS)
    out = []
    for number, row in enumerate(rows, start=2 if columns != list(_LEGACY_COLUMNS) else 1):
        if len(row) < 3:
            raise MalformedMetadata(f"file list line {number}: {len(row)} columns")
        out.append({col: (row[i].strip() if i < len(row) else "") for i, col in enumerate(columns)})
    return out


_ROW_META = ("citation", "accession", "updated", "pmid", "license", "retracted")


def _row_meta(row: dict[str, str]) -> dict[str, str]:
    return {k: row[k] for k in _ROW_META if row.get(k)}


def _yes(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("yes", "true", "1", "y")
