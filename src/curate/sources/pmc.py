"""PubMed Central Open Access source: figure-caption records from three on-disk layouts.

Layouts (`layout: auto` recognises one from a bounded sample of the input's first files,
never a walk of the whole root: cloud when a top-level `PMC<id>.<v>/` folder holds its XML,
legacy when packages or a file list show up, folder otherwise):

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

  Discovery runs on workers in pieces (`pmc_discovery`): key prefixes of the version folders
  (`partition_digits`, 1000 by default; a root under 1000 files is one piece), or, with
  `inventory: <manifest.json | folder or glob of CSV shards>`, one piece per shard of the
  bucket's S3 inventory of `metadata/` (`pmc_inventory`). An inventory lists no media, so
  its units (`media: null`) take the figure files from `media_urls` alone. Metadata is read
  once per article, for the version chosen.

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

import hashlib
import io
import json
import os
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import Field, model_validator

from curate import fs
from curate.errors import (
    ChecksumMismatch,
    CurateError,
    InputError,
    InputTooLarge,
    MalformedMetadata,
    MissingFile,
    PackageWithoutXML,
    SpecError,
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
from curate.sources.base import Source, SourceOptions, Unit, register_source
from curate.sources.pmc_discovery import (
    FILE_LIST_NAMES,
    LAYOUT_SAMPLE,
    WHOLE,
    XML_SUFFIXES,
    basename,
    chosen_version,
    cloud_candidates,
    cloud_prefixes,
    cloud_unit,
    dirname,
    folder_units,
    layout_of_sample,
    legacy_units,
    partition,
    read_file_list,
    split_partition,
    version_skip,
)
from curate.sources.pmc_inventory import bucket_and_prefix, inventory_shards, metadata_versions
from curate.stages import Failed, Record, Rejected

READ_STAGE = "read"
MiB = 1024 * 1024

_PMCID_IN_NAME = re.compile(r"(PMC\d+)", re.IGNORECASE)


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
    inventory: str | None = Field(
        None,
        description="cloud: S3 inventory manifest.json of metadata/, or a folder or glob of its "
        "CSV(.gz) shards; lists the article versions instead of listing the bucket",
    )
    partition_digits: int = Field(
        3,
        ge=0,
        le=4,
        description="cloud without inventory: leading PMCID digits of each key-prefix partition "
        "(10**digits partitions; 0: one); a root of fewer than 1000 files is always one",
    )

    @model_validator(mode="after")
    def _inventory_is_for_the_cloud_layout(self) -> PMCOptions:
        if self.inventory and self.layout in ("legacy", "folder"):
            raise ValueError(f"inventory lists a PMC Cloud bucket; layout {self.layout} reads none")
        return self


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
    for suffix in XML_SUFFIXES:  # .nxml is the article; a stray .xml may be anything
        found = sorted(n for n in names if n.lower().endswith(suffix))
        if found:
            return found[0]
    return None


# ---------------------------------------------------------------------------------------------
# The source


def _one_unit_per_version(units: list[Unit]) -> dict[int, Unit]:
    by_version: dict[int, Unit] = {}
    for unit in units:
        version = int(unit.meta["version"])
        if version in by_version:
            # The engine refuses repeated unit ids too; say where they come from.
            raise SpecError(
                f"pmc source: {unit.meta['pmcid']}.{version} listed twice "
                "(overlapping inventory shards, or two inventories?)"
            )
        by_version[version] = unit
    return by_version


def _strip_query(url: str) -> str:
    return url.split("?", 1)[0]


_MD5 = re.compile(r"[?&]md5=([0-9a-fA-F]{32})\b")


def _md5_by_name(urls: list[Any]) -> dict[str, str]:
    """File name -> md5 from PMC Cloud URLs (`...?md5=<hex>`), the only checksum offered."""
    out: dict[str, str] = {}
    for url in urls:
        if isinstance(url, str) and (m := _MD5.search(url)):
            out[basename(_strip_query(url)).lower()] = m.group(1).lower()
    return out


def _verify_md5(path: str, data: bytes, checksums: dict[str, str]) -> bytes:
    expected = checksums.get(basename(path).lower())
    if expected and hashlib.md5(data, usedforsecurity=False).hexdigest() != expected:
        raise ChecksumMismatch(f"{path}: md5 differs from the metadata's {expected}")
    return data


def _cloud_media(unit: Unit, meta: dict[str, Any]) -> list[str]:
    """Candidate figure files of a cloud version: the listed files of its folder, plus the
    `media_urls` names under that folder when nothing was listed (an inventory unit) or the
    folder is a bucket prefix (a listing can lag)."""
    listed = unit.meta.get("media")
    local = list(listed or [])
    if listed is not None and fs.is_local(unit.uri):
        return local
    local_names = {basename(p).lower() for p in local}
    named = [
        fs.join(dirname(unit.uri), name)
        for u in meta.get("media_urls") or []
        if isinstance(u, str)
        and (name := basename(_strip_query(u)))
        and name.lower() not in local_names
    ]
    return local + named


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
    also_produces = ("figure_caption.v2",)  # + training caption, caption_full, figure_doi
    options_model = PMCOptions
    group_field = "pmcid"

    options: PMCOptions

    def __init__(
        self, path: str, options: dict[str, Any] | None = None, *, schema_ref: str | None = None
    ) -> None:
        super().__init__(path, options, schema_ref=schema_ref)
        self._dir_cache: dict[str, tuple[str, ...]] = {}  # plain dict: the source must pickle

    def _listing(self, directory: str) -> tuple[str, ...]:
        if directory not in self._dir_cache:
            if len(self._dir_cache) >= 256:
                self._dir_cache.clear()
            self._dir_cache[directory] = self._list_dir(directory)
        return self._dir_cache[directory]

    # ---- discovery: partitions (driver) -> expand, settle (workers) ------------------------

    def _single_file(self) -> bool:
        return fs.is_local(self.path) and os.path.isfile(self.path)

    def _all_files(self) -> list[str]:
        """Every file of the input: only a worker expanding a whole-input partition walks."""
        return [self.path] if self._single_file() else list(fs.walk_files(self.path))

    def detect_layout(self) -> str:
        return self._layout_and_sample()[0]

    def _layout_and_sample(self) -> tuple[str, list[str] | None]:
        """The configured layout, or one recognised from a bounded sample of the input's files
        (never a walk of the whole root: a bucket holds tens of millions of keys)."""
        if self.options.layout != "auto":
            return self.options.layout, None
        if self.options.inventory:
            return "cloud", None
        sample = fs.sample_files(self.path, LAYOUT_SAMPLE)
        return layout_of_sample(self.path, sample), sample

    def partitions(self) -> list[str]:
        """`inventory:<shard>` per inventory shard, `cloud:<key prefix>` for a cloud root, one
        whole-input piece otherwise (see `pmc_discovery`)."""
        layout, sample = self._layout_and_sample()
        if layout == "cloud" and self.options.inventory:
            bucket, _ = bucket_and_prefix(self.path)
            shards = inventory_shards(self.options.inventory, bucket)
            return [partition("inventory", shard) for shard in shards]
        if layout == "cloud" and not self._single_file():
            return [partition("cloud", p) for p in cloud_prefixes(self._prefix_digits(sample))]
        return [partition(layout, WHOLE)]

    def _prefix_digits(self, sample: list[str] | None) -> int:
        """0, one `cloud:PMC` piece, when the bounded sample saw every file of the root: each
        piece costs a listing call (and a new client on S3), so a small mirror stays whole."""
        if sample is None:
            sample = fs.sample_files(self.path, LAYOUT_SAMPLE)
        return 0 if len(sample) < LAYOUT_SAMPLE else self.options.partition_digits

    def expand(self, piece: str) -> Iterator[Unit]:
        kind, what = split_partition(piece)
        if kind == "inventory":
            yield from self._inventory_candidates(what)
        elif kind == "cloud" and what == WHOLE:
            yield from cloud_candidates(self._all_files(), self.kind)
        elif kind == "cloud":
            yield from self._prefix_candidates(what)
        elif kind == "legacy":
            files = self._all_files()
            yield from legacy_units(
                self.path,
                files,
                self._file_list_rows(files),
                kind=self.kind,
                absent_packages=self.options.absent_packages,
                include_retracted=self.options.include_retracted,
            )
        else:
            yield from folder_units(self.path, self._all_files(), self.kind)

    def _prefix_candidates(self, prefix: str) -> list[Unit]:
        """The versions whose folders start with `prefix`. The flat `metadata/` copies under
        the same prefix are listed only when a folder lacks its JSON (the real bucket's never
        do): one listing per piece instead of two."""
        folders = fs.files_with_prefix(self.path, prefix)
        candidates = list(cloud_candidates(folders, self.kind))
        if any(unit.meta["metadata_uri"] is None for unit in candidates):
            flat = fs.files_with_prefix(fs.join(self.path, "metadata"), prefix)
            candidates = list(cloud_candidates(folders + flat, self.kind))
        return candidates

    def _inventory_candidates(self, shard: str) -> Iterator[Unit]:
        for key, pmcid, version in metadata_versions(shard, self.path):
            yield cloud_unit(
                self.kind,
                pmcid,
                version,
                uri=fs.join(self.path, key, f"{key}.xml"),
                metadata_uri=fs.join(self.path, "metadata", f"{key}.json"),
                media=None,
            )

    def _file_list_rows(self, files: list[str]) -> list[dict[str, str]]:
        list_path = self.options.file_list or next(
            (p for p in files if basename(p).lower() in FILE_LIST_NAMES), None
        )
        if not list_path:
            return []
        try:
            data = fs.read_bytes(list_path)
        except OSError as exc:
            raise MissingFile(f"file list {list_path}: {exc}") from exc
        return read_file_list(data)

    def settle_key(self, unit: Unit) -> str:
        if unit.meta.get("layout") == "cloud":
            return f"cloud/{unit.meta['pmcid']}"  # all versions of an article settle together
        return unit.unit_id

    def settle(self, units: list[Unit]) -> list[Unit]:
        """Cloud: the pinned or highest version is read, the others are skipped; metadata is
        read for that one version only (retracted, not open access)."""
        if not units or units[0].meta.get("layout") != "cloud":
            return units
        by_version = _one_unit_per_version(units)
        pinned = self.options.versions.get(units[0].meta["pmcid"])
        chosen = chosen_version(by_version, pinned)
        return [
            replace(
                unit,
                skip_reason=(
                    self._cloud_skip(unit) if version == chosen else version_skip(version, chosen)
                ),
            )
            for version, unit in sorted(by_version.items())
        ]

    def _cloud_skip(self, unit: Unit) -> str | None:
        try:
            data = self._metadata_bytes(unit)
            meta = json.loads(data) if data is not None else None
        except (ValueError, OSError, CurateError):
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

    def _metadata_bytes(self, unit: Unit) -> bytes | None:
        """The version's metadata JSON. An inventory unit names the flat `metadata/` copy; a
        mirror synced without that folder still has the version folder's copy (same name)."""
        uri = unit.meta.get("metadata_uri")
        if not uri:
            return None
        try:
            return self._read_capped(uri, 16 * MiB, "metadata")
        except MissingFile:
            if unit.meta.get("media") is not None:  # listed units name the copy they saw
                raise
            beside = fs.join(dirname(unit.uri), basename(uri))
            return self._read_capped(beside, 16 * MiB, "metadata")

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
        name_pmcid = _PMCID_IN_NAME.search(basename(unit.uri))
        if len(articles) == 1 and name_pmcid:
            apply_metadata_fallbacks(articles[0], pmcid=name_pmcid.group(1).upper())
        index = ImageIndex(self._listing(dirname(unit.uri)))
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
        data = self._metadata_bytes(unit)
        if data is not None:
            try:
                meta = json.loads(data)
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
        version = unit.meta.get("version")
        yield from self._emit(
            articles,
            unit,
            "cloud",
            int(version) if version is not None else None,
            ImageIndex(_cloud_media(unit, meta)),
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
                schema_ref=self.record_schema,
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
