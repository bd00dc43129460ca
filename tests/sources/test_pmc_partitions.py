"""PMC discovery in pieces: partitions (driver, cheap) -> expand -> settle (workers), including
the S3 inventory of the cloud layout. The pieces must give exactly what one walk gives."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from curate import fs
from curate.demo.pmc import generate_pmc_demo
from curate.demo.pmc_inventory import complete_flat_metadata, write_inventory
from curate.errors import CurateError, MalformedMetadata, MissingFile, SpecError
from curate.sources.base import Unit, discover_units
from curate.sources.pmc import PMCSource
from curate.sources.pmc_discovery import cloud_prefixes
from curate.sources.pmc_inventory import data_file_path, inventory_shards, metadata_versions
from curate.stages import Failed, Rejected


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return generate_pmc_demo(str(tmp_path_factory.mktemp("pmc_demo")), seed=0)


@pytest.fixture(scope="module")
def mirror(demo: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A copy of the demo cloud mirror with every version's flat metadata (as in the real
    bucket), and its inventory: two gzipped shards that split articles' versions."""
    base = tmp_path_factory.mktemp("pmc_inventory")
    root = base / "cloud"
    shutil.copytree(demo["layouts"]["cloud"]["path"], root)
    complete_flat_metadata(str(root))
    inventory = write_inventory(str(root), str(base / "dest"), shards=2)
    return {"root": str(root), "base": base, **inventory}


def walk_reference(path: str, options: dict | None = None) -> list[Unit]:
    """What one walk of the whole root gives: the whole-input piece, settled."""
    source = PMCSource(path, options)
    groups: dict[str, list[Unit]] = {}
    for unit in source.expand("cloud:*"):
        groups.setdefault(source.settle_key(unit), []).append(unit)
    return sorted((u for g in groups.values() for u in source.settle(g)), key=lambda u: u.unit_id)


def without(unit: Unit, *keys: str) -> dict[str, Any]:
    data = unit.as_dict()
    data["meta"] = {k: v for k, v in data["meta"].items() if k not in keys}
    return data


def read_all(source: PMCSource, units: list[Unit]) -> list[tuple]:
    out: list[tuple] = []
    for unit in units:
        if unit.skip_reason:
            continue
        try:
            for item in source.read(unit):
                if isinstance(item, Rejected):
                    out.append(("rejected", item.reason, item.record))
                elif isinstance(item, Failed):
                    out.append(("failed", item.reason, item.source_uri, item.record_id))
                else:
                    out.append(("record", item))
        except CurateError as exc:
            out.append(("unit_error", unit.unit_id, exc.reason))
    return out


# ---- partitions -----------------------------------------------------------------------------


def test_partition_strings(demo: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    layouts = demo["layouts"]
    assert PMCSource(layouts["folder"]["path"]).partitions() == ["folder:*"]
    assert PMCSource(layouts["legacy"]["path"]).partitions() == ["legacy:*"]
    # The layout sample saw the whole demo mirror: one piece, however many digits are asked.
    cloud = PMCSource(layouts["cloud"]["path"], {"layout": "cloud"})
    assert cloud.partitions() == ["cloud:PMC"]
    monkeypatch.setattr("curate.sources.pmc.LAYOUT_SAMPLE", 10)  # now it looks large
    pieces = PMCSource(layouts["cloud"]["path"]).partitions()
    assert len(pieces) == 1000 and pieces[:3] == ["cloud:PMC0", "cloud:PMC1.", "cloud:PMC2."]
    assert pieces[-1] == "cloud:PMC999" and len(set(pieces)) == 1000
    assert json.loads(json.dumps(pieces)) == pieces
    one = PMCSource(layouts["cloud"]["path"], {"partition_digits": 1}).partitions()
    assert one == ["cloud:PMC0", *(f"cloud:PMC{n}" for n in range(1, 10))]
    assert PMCSource(layouts["cloud"]["path"], {"partition_digits": 0}).partitions() == [
        "cloud:PMC"
    ]


def test_single_cloud_file_is_one_piece(demo: dict) -> None:
    xml = Path(demo["layouts"]["cloud"]["path"]) / "PMC9000002.1" / "PMC9000002.1.xml"
    source = PMCSource(str(xml))
    assert source.partitions() == ["cloud:*"]
    (unit,) = source.discover()
    assert (unit.uri, unit.meta["pmcid"], unit.meta["media"]) == (str(xml), "PMC9000002", [])


def test_unknown_partition_is_refused(demo: dict) -> None:
    source = PMCSource(demo["layouts"]["cloud"]["path"])
    for bad in ("*", "cloud", "cloud:", "tape:PMC1"):
        with pytest.raises(SpecError):
            list(source.expand(bad))


@pytest.mark.parametrize("digits", [1, 2, 3])
def test_cloud_prefixes_are_disjoint_and_complete(digits: int) -> None:
    prefixes = cloud_prefixes(digits)
    assert len(prefixes) == 10**digits
    for pmcid in ("PMC1", "PMC7", "PMC10", "PMC99", "PMC100", "PMC712", "PMC9000001", "PMC012"):
        for version in (1, 12):
            name = f"{pmcid}.{version}"
            assert sum(name.startswith(p) for p in prefixes) == 1, name
            assert sum(f"{name}.json".startswith(p) for p in prefixes) == 1, name


@pytest.mark.parametrize("digits", [0, 1, 3])
def test_prefix_pieces_cover_the_walk_exactly_once(
    demo: dict, digits: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("curate.sources.pmc.LAYOUT_SAMPLE", 10)
    path = demo["layouts"]["cloud"]["path"]
    source = PMCSource(path, {"partition_digits": digits})
    assert len(source.partitions()) == 10**digits
    seen: Counter[str] = Counter()
    for piece in source.partitions():
        seen.update(u.unit_id for u in source.expand(piece))
    whole = [u.unit_id for u in source.expand("cloud:*")]
    assert seen == Counter(whole) and len(whole) == 11
    assert list(source.discover()) == walk_reference(path)


def test_flat_metadata_is_listed_only_when_a_folder_lacks_its_json(
    demo: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "cloud"
    shutil.copytree(demo["layouts"]["cloud"]["path"], root)
    listed: list[str] = []
    real = fs.files_with_prefix

    def spy(directory: str, prefix: str) -> list[str]:
        listed.append(f"{Path(directory).name}/{prefix}")
        return real(directory, prefix)

    monkeypatch.setattr(fs, "files_with_prefix", spy)
    source = PMCSource(str(root))
    assert list(source.expand("cloud:PMC900")) and listed == ["cloud/PMC900"]
    (root / "PMC9000001.2" / "PMC9000001.2.json").unlink()
    listed.clear()
    units = {u.unit_id: u for u in source.expand("cloud:PMC900")}
    assert listed == ["cloud/PMC900", "metadata/PMC900"]
    (unit,) = [u for u in units.values() if u.unit_id.startswith("pmc_cloud_PMC9000001.2")]
    assert unit.meta["metadata_uri"] == str(root / "metadata" / "PMC9000001.2.json")


def test_discover_is_the_three_steps(demo: dict) -> None:
    for spec in demo["layouts"].values():
        source = PMCSource(spec["path"])
        assert list(source.discover()) == discover_units(source)


def test_partitions_never_walk_the_root(
    demo: dict, mirror: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(root: str) -> Any:
        raise AssertionError(f"the driver walked {root}")

    monkeypatch.setattr(fs, "walk_files", refuse)
    for spec in demo["layouts"].values():
        assert PMCSource(spec["path"]).partitions()
    assert len(PMCSource(mirror["root"], {"inventory": mirror["manifest"]}).partitions()) == 2


def test_layout_detection_looks_at_a_bounded_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(30):
        (tmp_path / f"a{n:02d}.xml").write_text("<article/>")
    samples: list[int] = []
    real = fs.sample_files

    def spy(root: str, limit: int) -> list[str]:
        found = real(root, limit)
        samples.append(len(found))
        return found

    monkeypatch.setattr(fs, "sample_files", spy)
    monkeypatch.setattr("curate.sources.pmc.LAYOUT_SAMPLE", 5)
    assert PMCSource(str(tmp_path)).detect_layout() == "folder"
    assert samples == [5]


def test_object_store_listing_is_bounded_and_by_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """No bucket needed: the listing calls themselves are checked."""
    from apache_beam.io.filesystem import MatchResult

    matches: list[tuple[list[str], Any]] = []

    def fake_match(patterns: list[str], limits: Any = None) -> list[MatchResult]:
        matches.append((patterns, limits))
        return [MatchResult(p, []) for p in patterns]

    monkeypatch.setattr(fs.FileSystems, "match", fake_match)
    source = PMCSource("s3://pmc-oa-opendata")
    assert source.detect_layout() == "folder"  # nothing listed: nothing recognised
    assert matches == [(["s3://pmc-oa-opendata/**"], [1000])]
    matches.clear()
    cloud = PMCSource("s3://pmc-oa-opendata/", {"layout": "cloud"})
    assert cloud.partitions() == ["cloud:PMC"]  # the bounded sample saw everything (nothing)
    assert matches == [(["s3://pmc-oa-opendata/**"], [1000])]
    matches.clear()
    assert list(cloud.expand("cloud:PMC712")) == []
    assert matches == [(["s3://pmc-oa-opendata/PMC712**"], None)]


# ---- inventory ------------------------------------------------------------------------------


def test_inventory_splits_versions_across_shards(mirror: dict) -> None:
    source = PMCSource(mirror["root"], {"inventory": mirror["manifest"]})
    pieces = source.partitions()
    assert pieces == [f"inventory:{s}" for s in sorted(mirror["shards"])]
    shard_of = {
        f"{u.meta['pmcid']}.{u.meta['version']}": i
        for i, piece in enumerate(pieces)
        for u in source.expand(piece)
    }
    assert len(shard_of) == len(mirror["keys"]) == 11
    assert shard_of["PMC9000001.1"] != shard_of["PMC9000001.2"]
    assert len({shard_of[f"PMC9000003.{v}"] for v in (1, 2, 3)}) == 2


def test_inventory_candidate_unit(mirror: dict) -> None:
    source = PMCSource(mirror["root"], {"inventory": mirror["manifest"]})
    units = [u for p in source.partitions() for u in source.expand(p)]
    (unit,) = [u for u in units if u.meta["pmcid"] == "PMC9000006"]
    root = Path(mirror["root"])
    assert unit.uri == str(root / "PMC9000006.1" / "PMC9000006.1.xml")
    assert unit.meta == {
        "layout": "cloud",
        "pmcid": "PMC9000006",
        "version": 1,
        "metadata_uri": str(root / "metadata" / "PMC9000006.1.json"),
        "media": None,
    }
    assert (
        unit.skip_reason is None and Unit.from_dict(json.loads(json.dumps(unit.as_dict()))) == unit
    )


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"versions": {"PMC9000003": 2}, "include_retracted": True},
        {"versions": {"PMC9000001": 7}, "include_non_open_access": True},
    ],
)
def test_inventory_settles_like_the_walk(mirror: dict, options: dict) -> None:
    walked = list(PMCSource(mirror["root"], options).discover())
    listed = list(
        PMCSource(mirror["root"], {**options, "inventory": mirror["manifest"]}).discover()
    )
    assert [without(u, "media", "metadata_uri") for u in listed] == [
        without(u, "media", "metadata_uri") for u in walked
    ]
    assert all(u.meta["media"] is None for u in listed)
    assert all("/metadata/" in u.meta["metadata_uri"] for u in listed)
    if not options:
        skipped = Counter(u.skip_reason for u in listed if u.skip_reason)
        assert skipped == {"superseded_version": 3, "retracted": 1, "not_open_access": 1}


def test_inventory_units_read_like_walked_units(demo: dict, mirror: dict) -> None:
    walked_source = PMCSource(mirror["root"])
    listed_source = PMCSource(mirror["root"], {"inventory": mirror["manifest"]})
    walked = read_all(walked_source, list(walked_source.discover()))
    listed = read_all(listed_source, list(listed_source.discover()))
    assert listed == walked
    planted = demo["layouts"]["cloud"]
    assert Counter(x[0] for x in listed) == {"record": planted["records"], "rejected": 1}
    assert [x[1] for x in listed if x[0] == "rejected"] == list(planted["rejected"])


def test_inventory_over_a_mirror_without_flat_metadata(mirror: dict, tmp_path: Path) -> None:
    """A mirror synced without `metadata/` (as the README's `aws s3 sync` does): the version
    folder's copy of the metadata decides and is read instead."""
    root = tmp_path / "cloud"
    shutil.copytree(mirror["root"], root)
    shutil.rmtree(root / "metadata")
    walked_source = PMCSource(str(root))
    listed_source = PMCSource(str(root), {"inventory": mirror["manifest"]})
    walked = list(walked_source.discover())
    listed = list(listed_source.discover())
    assert [(u.unit_id, u.skip_reason) for u in listed] == [
        (u.unit_id, u.skip_reason) for u in walked
    ]
    assert read_all(listed_source, listed) == read_all(walked_source, walked)


def test_inventory_option_forms_agree(mirror: dict, tmp_path: Path) -> None:
    data = str(Path(mirror["shards"][0]).parent)
    plain = tmp_path / "plain"
    plain.mkdir()
    for shard in mirror["shards"]:
        name = Path(shard).name.removesuffix(".gz")
        (plain / name).write_bytes(gzip.decompress(Path(shard).read_bytes()))
    (plain / "notes.txt").write_text("not a shard")
    forms = [mirror["manifest"], data, f"{data}/*.csv.gz", str(plain), str(plain / "*.csv")]
    results = []
    for form in forms:
        source = PMCSource(mirror["root"], {"inventory": form})
        assert len(source.partitions()) == 2, form
        results.append([u.unit_id for u in source.discover()])
    assert all(r == results[0] for r in results) and len(results[0]) == 11
    single = PMCSource(mirror["root"], {"inventory": mirror["shards"][0]})
    assert single.partitions() == [f"inventory:{mirror['shards'][0]}"]


def test_empty_inventory_gives_no_units(mirror: dict, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv.gz"
    empty.write_bytes(gzip.compress(b""))
    source = PMCSource(mirror["root"], {"inventory": str(empty)})
    assert list(source.expand(f"inventory:{empty}")) == []
    assert list(source.discover()) == []
    manifest = json.loads(Path(mirror["manifest"]).read_text())
    copy = Path(mirror["manifest"]).with_name("empty-manifest.json")
    copy.write_text(json.dumps({**manifest, "files": []}))
    assert PMCSource(mirror["root"], {"inventory": str(copy)}).partitions() == []
    (tmp_path / "no_shards").mkdir()
    assert PMCSource(mirror["root"], {"inventory": str(tmp_path / "no_shards")}).partitions() == []


def test_rows_that_are_not_metadata_keys_are_ignored(mirror: dict, tmp_path: Path) -> None:
    shard = tmp_path / "mixed.csv"
    shard.write_text(
        '"pmc-oa-opendata","PMC9000002.1/PMC9000002.1.xml","2026-08-31T12:00:00.000Z","e1"\n'
        "\n"
        '"pmc-oa-opendata","metadata/README.txt","2026-08-31T12:00:00.000Z","e2"\n'
        '"pmc-oa-opendata","metadata/PMCabc.1.json","2026-08-31T12:00:00.000Z","e3"\n'
        '"pmc-oa-opendata","metadata%2FPMC9000002.1.json","2026-08-31T12:00:00.000Z","e4"\n'
    )
    assert list(metadata_versions(str(shard), mirror["root"])) == [
        ("PMC9000002.1", "PMC9000002", 1)
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'"pmc-oa-opendata","metadata/PMC9000002.1.json","x","e"\n"broken-row"\n', "line 2"),
        (b'"pmc-oa-opendata","metadata/PMC9000002.1.json\xff","x","e"\n', "can't decode"),
        (gzip.compress(b'"b","metadata/PMC1.1.json","x","e"\n' * 50)[:-20], "shard"),
    ],
    ids=["one_column", "not_utf8", "truncated_gzip"],
)
def test_damaged_shard_is_a_named_error(
    mirror: dict, tmp_path: Path, body: bytes, message: str
) -> None:
    shard = tmp_path / ("bad.csv.gz" if body[:2] == b"\x1f\x8b" else "bad.csv")
    shard.write_bytes(body)
    source = PMCSource(mirror["root"], {"inventory": str(shard)})
    with pytest.raises(MalformedMetadata, match=message) as caught:
        list(source.discover())
    assert caught.value.reason == "malformed_metadata" and str(shard) in str(caught.value)


def test_missing_shard_is_a_missing_file(mirror: dict, tmp_path: Path) -> None:
    source = PMCSource(mirror["root"], {"inventory": str(tmp_path / "gone.csv.gz")})
    with pytest.raises(MissingFile):
        list(source.discover())
    with pytest.raises(MissingFile):
        PMCSource(mirror["root"], {"inventory": str(tmp_path / "no_folder")}).partitions()


def test_rows_of_another_bucket_are_refused_for_a_bucket_root(mirror: dict) -> None:
    shard = mirror["shards"][0]
    assert list(metadata_versions(shard, "s3://pmc-oa-opendata"))
    with pytest.raises(SpecError, match="bucket 'pmc-oa-opendata'"):
        list(metadata_versions(shard, "s3://my-mirror/pmc"))
    # A root below the bucket's top counts only the keys under its prefix.
    assert list(metadata_versions(shard, "s3://pmc-oa-opendata/elsewhere")) == []
    with pytest.raises(SpecError, match="lists bucket pmc-oa-opendata"):
        inventory_shards(mirror["manifest"], "my-mirror")


def test_the_same_version_in_two_shards_is_refused(mirror: dict, tmp_path: Path) -> None:
    for n in range(2):
        shutil.copy(mirror["shards"][0], tmp_path / f"copy{n}.csv.gz")
    source = PMCSource(mirror["root"], {"inventory": str(tmp_path)})
    with pytest.raises(SpecError, match="listed twice"):
        list(source.discover())


def test_manifest_data_keys_are_placed_under_the_config_folder(tmp_path: Path) -> None:
    s3 = "s3://pmc-oa-opendata/inventory-reports/pmc-oa-opendata/metadata"
    key = "inventory-reports/pmc-oa-opendata/metadata/data/0a1b.csv.gz"
    assert data_file_path(f"{s3}/2026-09-01T01-00Z/manifest.json", key) == f"{s3}/data/0a1b.csv.gz"
    # AWS's older example: no config id, the data under the timestamp folder.
    old = "s3://dest/Inventory/src-bucket"
    old_key = "Inventory/src-bucket/2016-11-06T21-32Z/files/939c.csv.gz"
    assert data_file_path(f"{old}/2016-11-06T21-32Z/manifest.json", old_key) == (
        f"{old}/2016-11-06T21-32Z/files/939c.csv.gz"
    )
    # A local copy that keeps only the config folder's name.
    local = tmp_path / "copies" / "metadata"
    manifest = str(local / "2026-09-01T01-00Z" / "manifest.json")
    assert data_file_path(manifest, key) == str(local / "data" / "0a1b.csv.gz")
    # A config folder named like the data folder still anchors on the longest run.
    odd = "s3://b/inv/src/data"
    assert data_file_path(f"{odd}/2026-09-01T01-00Z/manifest.json", "inv/src/data/data/x.csv") == (
        f"{odd}/data/x.csv"
    )
    with pytest.raises(MalformedMetadata, match="does not lie under"):
        data_file_path(str(tmp_path / "x" / "2026" / "manifest.json"), key)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"fileFormat": "Parquet"}, SpecError),
        ({"fileSchema": "Key, Bucket, Size"}, MalformedMetadata),
        ({"files": [{"size": 3}]}, MalformedMetadata),
    ],
)
def test_unreadable_manifests_are_refused(
    mirror: dict, tmp_path: Path, change: dict, error: type
) -> None:
    manifest = json.loads(Path(mirror["manifest"]).read_text())
    bad = Path(mirror["manifest"]).with_name(f"bad-{len(change)}-{id(change)}.json")
    bad.write_text(json.dumps({**manifest, **change}))
    with pytest.raises(error):
        PMCSource(mirror["root"], {"inventory": str(bad)}).partitions()
    broken = tmp_path / "manifest.json"
    broken.write_text("{not json")
    with pytest.raises(MalformedMetadata):
        PMCSource(mirror["root"], {"inventory": str(broken)}).partitions()


def test_inventory_needs_the_cloud_layout(mirror: dict) -> None:
    with pytest.raises(ValidationError, match="inventory"):
        PMCSource(mirror["root"], {"inventory": mirror["manifest"], "layout": "folder"})
    source = PMCSource(mirror["root"], {"inventory": mirror["manifest"], "layout": "cloud"})
    assert source.detect_layout() == "cloud"


def test_inventory_generation_is_deterministic(mirror: dict, tmp_path: Path) -> None:
    again = write_inventory(mirror["root"], str(tmp_path), shards=2)
    first = Path(mirror["manifest"]).read_text()
    assert Path(again["manifest"]).read_text() == first
    names = [Path(s).name for s in again["shards"]]
    assert names == [Path(s).name for s in mirror["shards"]]
    assert all(re.fullmatch(r"[0-9a-f-]{36}\.csv\.gz", n) for n in names)


# ---- real articles --------------------------------------------------------------------------


@pytest.mark.realdata
def test_real_articles_in_the_cloud_layout(realdata: Path, tmp_path: Path) -> None:
    """Real PMC JATS laid out as the bucket lays it out (two versions of one article), with
    metadata written for them: the inventory and the walk settle and read alike, and every
    real figure graphic is accounted for as when the same files are read as a folder."""
    articles = {"PMC2231364": "tidypmc/PMC2231364.xml", "PMC6095483": "tidypmc/PMC6095483.xml"}
    root = tmp_path / "cloud"
    for pmcid, rel in articles.items():
        for version in (1, 2) if pmcid == "PMC2231364" else (1,):
            key = f"{pmcid}.{version}"
            (root / key).mkdir(parents=True)
            shutil.copy(realdata / "pmc_jats" / rel, root / key / f"{key}.xml")
            meta = {"pmcid": pmcid, "version": version, "is_pmc_openaccess": True}
            (root / key / f"{key}.json").write_text(json.dumps(meta))
    complete_flat_metadata(str(root))
    inventory = write_inventory(str(root), str(tmp_path / "dest"), shards=2, compress=False)
    walked_source = PMCSource(str(root))
    listed_source = PMCSource(str(root), {"inventory": inventory["manifest"]})
    walked = list(walked_source.discover())
    listed = list(listed_source.discover())
    assert [(u.unit_id, u.skip_reason) for u in listed] == [
        (u.unit_id, u.skip_reason) for u in walked
    ]
    assert Counter(u.skip_reason for u in listed) == {None: 2, "superseded_version": 1}
    read = read_all(listed_source, listed)
    assert read == read_all(walked_source, walked)
    folder = tmp_path / "folder"
    folder.mkdir()
    for rel in articles.values():
        shutil.copy(realdata / "pmc_jats" / rel, folder)
    folder_source = PMCSource(str(folder))
    as_folder = read_all(folder_source, list(folder_source.discover()))
    assert Counter(x[:2] for x in read) == Counter(x[:2] for x in as_folder)
    assert len(read) > 0 and {x[1] for x in read} == {"image_missing"}
