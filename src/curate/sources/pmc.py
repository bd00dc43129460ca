"""PubMed Central Open Access source: figure-caption records from three on-disk layouts.

Layouts (`layout: auto` picks the first that fits, in this order):

**cloud** — the PMC Cloud bucket layout used since 2026 (`s3://pmc-oa-opendata` or a local
mirror of part of it)::

    PMC<id>.<version>/PMC<id>.<version>.xml      JATS
    PMC<id>.<version>/PMC<id>.<version>.json     per-version metadata
    PMC<id>.<version>/<media files>              figures under their original names
    metadata/PMC<id>.<version>.json              (optional) the same metadata, flat

  One unit per article version. The highest version of each article is read (or the version
  pinned in `versions: {PMC123: 1}`); every other version is still listed, with
  `skip_reason: superseded_version` (lower than the chosen one) or `unpinned_version`.
  Metadata `is_retracted: true` gives `skip_reason: retracted` (unless `include_retracted`),
  `is_pmc_openaccess: false` gives `not_open_access` (unless `include_non_open_access`).
  `license_code`, `pmid`, `doi` fill in what the JATS lacks. Figure files are matched among
  the files of the version folder and the names in `media_urls`.

**legacy** — the retired FTP OA packages (`oa_package/xx/yy/PMC<id>.tar.gz`, XML and images
inside) with `oa_file_list.csv` (File, Article Citation, Accession ID, Last Updated, PMID,
License; with or without the header line; the legacy cloud variant Key, ETag, ..., Retracted
works too). One unit per package. A package named in the file list but absent from the
mirror is listed with `skip_reason: package_absent` (`absent_packages: error` makes it a
`missing_file` error instead); packages on disk that the list does not name are read as well.
Packages are read in memory, never extracted: absolute paths, `..`, links and device members
are `unsafe_archive_member` dead letters while the rest of the package is still read; a
truncated or corrupt stream is `truncated_archive`; no XML inside is `package_without_xml`.

**folder** — any folder tree of `.nxml` / `.xml` JATS files with the images beside each XML
(same folder). One unit per XML file (an eFetch `<pmc-articleset>` file gives all its
articles). A missing PMCID is taken from a `PMC<digits>` file name.

For every figure graphic the source yields a complete `figure_caption.v1` record; a graphic
whose image is not found is `Rejected(record, "image_missing")`, a figure without any graphic
is `Rejected(record, "figure_without_graphic")`; an unreadable image or one above
`max_image_pixels` is a `Failed` dead letter (`unreadable_image`, `decompression_bomb`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import posixpath
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from curate import fs
from curate.errors import (
    ChecksumMismatch,
    CurateError,
    InputError,
    InputTooLarge,
    MalformedMetadata,
    MissingFile,
    PackageWithoutXML,
    TruncatedArchive,
    UnsafeArchiveMember,
)
from curate.parse.images import DEFAULT_MAX_IMAGE_PIXELS, ImageIndex, probe_image
from curate.parse.jats import (
    ParsedArticle,
    apply_metadata_fallbacks,
    figure_records,
    parse_jats_articles,
)
from curate.sources.base import Source, SourceOptions, Unit, register_source, safe_unit_id
from curate.stages import Failed, Record, Rejected

READ_STAGE = "read"
MiB = 1024 * 1024

_CLOUD_DIR = re.compile(r"^(PMC\d+)\.(\d+)$")
_PMCID_IN_NAME = re.compile(r"(PMC\d+)", re.IGNORECASE)
_XML_SUFFIXES = (".nxml", ".xml")
_PACKAGE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_FILE_LIST_NAMES = ("oa_file_list.csv",)
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


class PMCOptions(SourceOptions):
    layout: Literal["auto", "cloud", "legacy", "folder"] = Field(
        "auto", description="on-disk layout; auto detects cloud, then legacy, then folder"
    )
    file_list: str | None = Field(
        None, description="legacy oa_file_list.csv; default <path>/oa_file_list.csv if present"
    )
    versions: dict[str, int] = Field(
        default_factory=dict, description="cloud: pin article versions, e.g. {PMC123: 1}"
    )
    include_retracted: bool = False
    include_non_open_access: bool = False
    absent_packages: Literal["skip", "error"] = "skip"
    max_image_pixels: int = Field(DEFAULT_MAX_IMAGE_PIXELS, gt=0)
    max_xml_bytes: int = Field(64 * MiB, gt=0)
    max_image_bytes: int = Field(128 * MiB, gt=0)
    max_package_bytes: int = Field(1024 * MiB, gt=0)
    max_member_bytes: int = Field(256 * MiB, gt=0)


# ---------------------------------------------------------------------------------------------
# Packages (legacy .tar.gz), read in memory


@dataclass
class PackageContents:
    files: dict[str, bytes] = field(default_factory=dict)  # member name -> bytes
    unsafe: list[tuple[str, str]] = field(default_factory=list)  # (member name, why)
    oversized: list[tuple[str, int]] = field(default_factory=list)


def _unsafe_reason(member: tarfile.TarInfo) -> str | None:
    name = member.name
    if member.issym() or member.islnk():
        return f"link to {member.linkname!r}"
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        return "device or fifo"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in re.split(r"[\\/]+", name):
        return "'..' in path"
    if not (member.isfile() or member.isdir()):
        return "not a regular file"
    return None


def read_package(data: bytes, *, max_member_bytes: int = 256 * MiB) -> PackageContents:
    """Regular members of a tar(.gz) in memory; unsafe members listed, never read."""
    contents = PackageContents()
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            while True:
                member = archive.next()
                if member is None:
                    break
                why = _unsafe_reason(member)
                if why:
                    contents.unsafe.append((member.name, why))
                    continue
                if member.isdir():
                    continue
                if member.size > max_member_bytes:
                    contents.oversized.append((member.name, member.size))
                    continue
                handle = archive.extractfile(member)
                payload = handle.read() if handle is not None else b""
                if len(payload) != member.size:
                    raise TruncatedArchive(f"member {member.name!r} ends early")
                contents.files[member.name] = payload
    except TruncatedArchive:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise TruncatedArchive(f"archive is truncated or corrupt: {exc}") from exc
    return contents


def _choose_xml(names: list[str]) -> str | None:
    for suffix in _XML_SUFFIXES:  # .nxml is the article; a stray .xml may be anything
        found = sorted(n for n in names if n.lower().endswith(suffix))
        if found:
            return found[0]
    return None


# ---------------------------------------------------------------------------------------------
# File-list CSV


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


# ---------------------------------------------------------------------------------------------
# The source


def _rel(root: str, path: str) -> str:
    if path == root:  # the input is a single file
        return _basename(path)
    if fs.is_local(root):
        return os.path.relpath(path, root).replace(os.sep, "/")
    return path[len(root) :].lstrip("/") if path.startswith(root) else path


def _basename(path: str) -> str:
    return posixpath.basename(path.replace("\\", "/"))


def _dirname(path: str) -> str:
    return os.path.dirname(path) if fs.is_local(path) else posixpath.dirname(path)


def _strip_query(url: str) -> str:
    return url.split("?", 1)[0]


_MD5 = re.compile(r"[?&]md5=([0-9a-fA-F]{32})\b")


def _md5_by_name(urls: list[Any]) -> dict[str, str]:
    """File name -> md5 from PMC Cloud URLs (`...?md5=<hex>`), the only checksum offered."""
    out: dict[str, str] = {}
    for url in urls:
        if isinstance(url, str) and (m := _MD5.search(url)):
            out[_basename(_strip_query(url)).lower()] = m.group(1).lower()
    return out


def _verify_md5(path: str, data: bytes, checksums: dict[str, str]) -> bytes:
    expected = checksums.get(_basename(path).lower())
    if expected and hashlib.md5(data, usedforsecurity=False).hexdigest() != expected:
        raise ChecksumMismatch(f"{path}: md5 differs from the metadata's {expected}")
    return data


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip():
        return value.strip().lower() in ("yes", "true", "1", "y")
    return None


@register_source
class PMCSource(Source):
    kind = "pmc"
    schema_ref = "figure_caption.v1"
    options_model = PMCOptions
    group_field = "pmcid"

    options: PMCOptions

    def __init__(self, path: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(path, options)
        self._dir_cache: dict[str, tuple[str, ...]] = {}  # plain dict: the source must pickle

    def _listing(self, directory: str) -> tuple[str, ...]:
        if directory not in self._dir_cache:
            if len(self._dir_cache) >= 256:
                self._dir_cache.clear()
            self._dir_cache[directory] = self._list_dir(directory)
        return self._dir_cache[directory]

    # ---- discovery -------------------------------------------------------------------------

    def _files(self) -> list[str]:
        if fs.is_local(self.path) and os.path.isfile(self.path):
            return [self.path]
        return list(fs.walk_files(self.path))

    def detect_layout(self, files: list[str] | None = None) -> str:
        if self.options.layout != "auto":
            return self.options.layout
        files = self._files() if files is None else files
        has_legacy = False
        for path in files:
            name = _basename(path)
            parent = _basename(_dirname(path))
            if _CLOUD_DIR.match(parent) and name == f"{parent}.xml":
                return "cloud"
            low = name.lower()
            if low.endswith(_PACKAGE_SUFFIXES) or low in _FILE_LIST_NAMES:
                has_legacy = True
        return "legacy" if has_legacy else "folder"

    def discover(self) -> Iterator[Unit]:
        files = self._files()
        layout = self.detect_layout(files)
        if layout == "cloud":
            yield from self._discover_cloud(files)
        elif layout == "legacy":
            yield from self._discover_legacy(files)
        else:
            yield from self._discover_folder(files)

    def _discover_folder(self, files: list[str]) -> Iterator[Unit]:
        for path in files:
            if path.lower().endswith(_XML_SUFFIXES):
                rel = _rel(self.path, path)
                yield Unit(
                    unit_id=safe_unit_id(f"pmc/folder/{rel}"),
                    uri=path,
                    kind=self.kind,
                    meta={"layout": "folder"},
                )

    def _discover_cloud(self, files: list[str]) -> Iterator[Unit]:
        versions: dict[str, dict[int, dict[str, Any]]] = {}
        flat_metadata: dict[str, str] = {}
        for path in files:
            name = _basename(path)
            parent = _basename(_dirname(path))
            match = _CLOUD_DIR.match(parent)
            if match:
                entry = versions.setdefault(match[1], {}).setdefault(
                    int(match[2]), {"xml": None, "json": None, "media": [], "dir": _dirname(path)}
                )
                if name == f"{parent}.xml":
                    entry["xml"] = path
                elif name == f"{parent}.json":
                    entry["json"] = path
                elif not name.endswith((".txt", ".pdf")):
                    entry["media"].append(path)
            elif parent == "metadata" and _CLOUD_DIR.match(name.removesuffix(".json")):
                flat_metadata[name.removesuffix(".json")] = path
        for pmcid in sorted(versions, key=lambda p: int(p[3:])):
            by_version = versions[pmcid]
            pinned = self.options.versions.get(pmcid)
            chosen = pinned if pinned in by_version else max(by_version)
            for version in sorted(by_version):
                entry = by_version[version]
                key = f"{pmcid}.{version}"
                meta: dict[str, Any] = {
                    "layout": "cloud",
                    "pmcid": pmcid,
                    "version": version,
                    "metadata_uri": entry["json"] or flat_metadata.get(key),
                    "media": sorted(entry["media"]),
                }
                skip = None
                if version != chosen:
                    skip = "superseded_version" if version < chosen else "unpinned_version"
                else:
                    skip = self._cloud_skip(meta["metadata_uri"])
                uri = entry["xml"] or fs.join(
                    entry["dir"], f"{key}.xml"
                )  # read() reports it missing
                yield Unit(
                    unit_id=safe_unit_id(f"pmc/cloud/{key}"),
                    uri=uri,
                    kind=self.kind,
                    meta=meta,
                    skip_reason=skip,
                )

    def _cloud_skip(self, metadata_uri: str | None) -> str | None:
        if not metadata_uri:
            return None
        try:
            meta = json.loads(fs.read_bytes(metadata_uri, limit=16 * MiB))
        except (ValueError, OSError):
            return None  # read() reports the broken metadata as an error with its reason
        if not isinstance(meta, dict):
            return None
        if _bool(meta.get("is_retracted")) and not self.options.include_retracted:
            return "retracted"
        if (
            _bool(meta.get("is_pmc_openaccess")) is False
            and not self.options.include_non_open_access
        ):
            return "not_open_access"
        return None

    def _discover_legacy(self, files: list[str]) -> Iterator[Unit]:
        packages = {
            _rel(self.path, p): p for p in files if _basename(p).lower().endswith(_PACKAGE_SUFFIXES)
        }
        list_path = self.options.file_list
        if list_path is None:
            for path in files:
                if _basename(path).lower() in _FILE_LIST_NAMES:
                    list_path = path
                    break
        listed: set[str] = set()
        if list_path:
            try:
                data = fs.read_bytes(list_path)
            except OSError as exc:
                raise MissingFile(f"file list {list_path}: {exc}") from exc
            for row in read_file_list(data):
                rel = row.get("file", "").lstrip("/")
                if not rel or rel in listed:
                    continue
                listed.add(rel)
                meta = {
                    "layout": "legacy",
                    "package": rel,
                    **{
                        k: row[k]
                        for k in (
                            "citation",
                            "accession",
                            "updated",
                            "pmid",
                            "license",
                            "retracted",
                        )
                        if row.get(k)
                    },
                }
                skip = None
                if rel not in packages and self.options.absent_packages == "skip":
                    skip = "package_absent"
                elif _bool(row.get("retracted")) and not self.options.include_retracted:
                    skip = "retracted"
                yield Unit(
                    unit_id=safe_unit_id(f"pmc/legacy/{rel}"),
                    uri=packages.get(rel, fs.join(self.path, rel)),
                    kind=self.kind,
                    meta=meta,
                    skip_reason=skip,
                )
        for rel in sorted(set(packages) - listed):
            yield Unit(
                unit_id=safe_unit_id(f"pmc/legacy/{rel}"),
                uri=packages[rel],
                kind=self.kind,
                meta={"layout": "legacy", "package": rel},
            )

    # ---- reading ---------------------------------------------------------------------------

    def read(self, unit: Unit) -> Iterator[Record | Rejected | Failed]:
        layout = unit.meta.get("layout") or self.detect_layout()
        if layout == "cloud":
            yield from self._read_cloud(unit)
        elif layout == "legacy":
            yield from self._read_legacy(unit)
        else:
            yield from self._read_folder(unit)

    def _read_capped(self, path: str, cap: int, what: str) -> bytes:
        try:
            data = fs.read_bytes(path, limit=cap + 1)
        except FileNotFoundError as exc:
            raise MissingFile(f"{what} {path} does not exist") from exc
        except OSError as exc:
            if not fs.exists(path):
                raise MissingFile(f"{what} {path} does not exist") from exc
            raise
        if len(data) > cap:
            raise InputTooLarge(f"{what} {path} is larger than {cap} bytes")
        return data

    def _list_dir(self, directory: str) -> tuple[str, ...]:
        if fs.is_local(directory):
            try:
                names = sorted(os.listdir(directory))
            except OSError:
                return ()
            return tuple(
                os.path.join(directory, n)
                for n in names
                if os.path.isfile(os.path.join(directory, n))
            )
        return tuple(p for p in fs.glob(directory.rstrip("/") + "/*"))

    def _read_folder(self, unit: Unit) -> Iterator[Record | Rejected | Failed]:
        data = self._read_capped(unit.uri, self.options.max_xml_bytes, "XML")
        articles = parse_jats_articles(data)
        name_pmcid = _PMCID_IN_NAME.search(_basename(unit.uri))
        if len(articles) == 1 and name_pmcid:
            apply_metadata_fallbacks(articles[0], pmcid=name_pmcid.group(1).upper())
        index = ImageIndex(self._listing(_dirname(unit.uri)))
        yield from self._emit(
            articles,
            unit,
            "folder",
            None,
            index,
            fetch=lambda p: self._read_capped(p, self.options.max_image_bytes, "image"),
            image_uri=lambda p: p,
        )

    def _read_cloud(self, unit: Unit) -> Iterator[Record | Rejected | Failed]:
        meta: dict[str, Any] = {}
        metadata_uri = unit.meta.get("metadata_uri")
        if metadata_uri:
            try:
                meta = json.loads(self._read_capped(metadata_uri, 16 * MiB, "metadata"))
            except ValueError as exc:
                raise MalformedMetadata(f"{metadata_uri}: {exc}") from exc
            if not isinstance(meta, dict):
                raise MalformedMetadata(f"{metadata_uri}: expected a JSON object")
        checksums = _md5_by_name([meta.get("xml_url"), *(meta.get("media_urls") or [])])
        data = self._read_capped(unit.uri, self.options.max_xml_bytes, "XML")
        _verify_md5(unit.uri, data, checksums)
        articles = parse_jats_articles(data)
        pmid = meta.get("pmid")
        for article in articles:
            apply_metadata_fallbacks(
                article,
                pmcid=meta.get("pmcid") or unit.meta.get("pmcid"),
                pmid=str(pmid) if pmid not in (None, "") else None,
                doi=meta.get("doi"),
                license_code=meta.get("license_code"),
            )
        local = list(unit.meta.get("media", []))
        remote: list[str] = []
        if not fs.is_local(unit.uri):
            # A listing of a bucket prefix can lag; `media_urls` names files of the same prefix.
            local_names = {_basename(p).lower() for p in local}
            remote = [
                fs.join(_dirname(unit.uri), name)
                for u in meta.get("media_urls") or []
                if isinstance(u, str)
                and (name := _basename(_strip_query(u)))
                and name.lower() not in local_names
            ]
        version = unit.meta.get("version")
        yield from self._emit(
            articles,
            unit,
            "cloud",
            int(version) if version is not None else None,
            ImageIndex(local + remote),
            fetch=lambda p: _verify_md5(
                p, self._read_capped(p, self.options.max_image_bytes, "image"), checksums
            ),
            image_uri=lambda p: p,
        )

    def _read_legacy(self, unit: Unit) -> Iterator[Record | Rejected | Failed]:
        data = self._read_capped(unit.uri, self.options.max_package_bytes, "package")
        contents = read_package(data, max_member_bytes=self.options.max_member_bytes)
        problems = [f"{n} ({why})" for n, why in contents.unsafe]
        xml_name = _choose_xml(list(contents.files))
        if xml_name is None:
            detail = f"; unsafe members skipped: {', '.join(problems)}" if problems else ""
            raise PackageWithoutXML(f"{unit.uri} holds no .nxml/.xml file{detail}")
        for name, why in contents.unsafe:
            yield Failed.from_exception(
                UnsafeArchiveMember(f"member {name!r}: {why}"),
                stage=READ_STAGE,
                source_uri=f"{unit.uri}!{name}",
                unit_id=unit.unit_id,
            )
        for name, size in contents.oversized:
            yield Failed.from_exception(
                InputTooLarge(
                    f"member {name!r} has {size} bytes, cap {self.options.max_member_bytes}"
                ),
                stage=READ_STAGE,
                source_uri=f"{unit.uri}!{name}",
                unit_id=unit.unit_id,
            )
        articles = parse_jats_articles(contents.files[xml_name])
        for article in articles:
            apply_metadata_fallbacks(
                article,
                pmcid=unit.meta.get("accession"),
                pmid=unit.meta.get("pmid") or None,
                license_code=unit.meta.get("license"),
            )
        yield from self._emit(
            articles,
            unit,
            "legacy",
            None,
            ImageIndex(list(contents.files)),
            fetch=contents.files.__getitem__,
            image_uri=lambda n: f"{unit.uri}!{n}",
        )

    def _emit(
        self,
        articles: list[ParsedArticle],
        unit: Unit,
        layout: str,
        version: int | None,
        index: ImageIndex,
        *,
        fetch: Callable[[str], bytes],
        image_uri: Callable[[str], str],
    ) -> Iterator[Record | Rejected | Failed]:
        for article in articles:
            for record, hrefs in figure_records(
                article,
                unit_id=unit.unit_id,
                source_uri=unit.uri,
                source_layout=layout,
                article_version=version,
            ):
                if record["graphic_count"] == 0:
                    yield Rejected(record, "figure_without_graphic", stage=READ_STAGE)
                    continue
                found = index.resolve_any(hrefs)
                if found is None:
                    yield Rejected(record, "image_missing", stage=READ_STAGE)
                    continue
                uri = image_uri(found)
                try:
                    image = fetch(found)
                    info = probe_image(image, max_pixels=self.options.max_image_pixels)
                except MissingFile:
                    # Named by the metadata but absent from the store: the same outcome as a
                    # graphic no listing holds, whether the mirror is local or a bucket.
                    yield Rejected(record, "image_missing", stage=READ_STAGE)
                    continue
                except (InputError, CurateError) as exc:
                    yield Failed.from_exception(
                        exc,
                        stage=READ_STAGE,
                        source_uri=uri,
                        unit_id=unit.unit_id,
                        record_id=record["record_id"],
                    )
                    continue
                record.update(
                    image=image,
                    image_uri=uri,
                    image_format=info.format,
                    image_width=info.width,
                    image_height=info.height,
                    image_sha256=info.sha256,
                )
                yield record
