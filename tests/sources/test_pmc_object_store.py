"""PMC cloud discovery on an object store (moto's in-process S3, through Beam's S3 filesystem):
key-prefix pieces, the bounded layout sample, and an inventory whose manifest lives in the
bucket it lists, as NCBI's does."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from curate.demo.pmc import generate_pmc_demo
from curate.demo.pmc_inventory import complete_flat_metadata, write_inventory
from curate.sources.base import Unit
from curate.sources.pmc import PMCSource

boto3 = pytest.importorskip("boto3")
moto = pytest.importorskip("moto")

pytestmark = pytest.mark.slow  # an S3 stand-in and a new client per listing call

BUCKET = "pmc-oa-opendata"
ROOT = f"s3://{BUCKET}"


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The demo cloud mirror (flat metadata completed) at the bucket's top, and its inventory
    under `inventory-reports/`, where NCBI's is."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    base = tmp_path_factory.mktemp("pmc_s3")
    demo = generate_pmc_demo(str(base / "demo"), seed=0)
    local = base / "cloud"
    shutil.copytree(demo["layouts"]["cloud"]["path"], local)
    complete_flat_metadata(str(local))
    inventory = write_inventory(str(local), str(base / "dest"), bucket=BUCKET, shards=2)
    saved = FileSystems._pipeline_options
    with pytest.MonkeyPatch.context() as patch, moto.mock_aws():
        for name, value in {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            patch.setenv(name, value)
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        FileSystems.set_options(PipelineOptions([]))
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        for folder in (local, base / "dest"):
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    client.upload_file(str(path), BUCKET, path.relative_to(folder).as_posix())
        manifest = Path(inventory["manifest"]).relative_to(base / "dest").as_posix()
        try:
            yield {"local": str(local), "manifest": f"{ROOT}/{manifest}"}
        finally:
            FileSystems._pipeline_options = saved


def in_bucket(unit: Unit, local: str) -> dict[str, Any]:
    """A local unit as the same unit in the bucket would be."""

    def move(value: Any) -> Any:
        if isinstance(value, str) and value.startswith(local):
            return ROOT + value[len(local) :].replace(os.sep, "/")
        if isinstance(value, list):
            return [move(v) for v in value]
        return value

    data = unit.as_dict()
    data["uri"] = move(data["uri"])
    data["meta"] = {k: move(v) for k, v in data["meta"].items()}
    return data


def records(source: PMCSource, units: list[Unit]) -> list[Any]:
    return [
        item if isinstance(item, dict) else (type(item).__name__, item.reason)
        for unit in units
        if not unit.skip_reason
        for item in source.read(unit)
    ]


def test_bucket_is_one_piece_and_matches_the_local_mirror(bucket: dict) -> None:
    source = PMCSource(ROOT)
    assert source.detect_layout() == "cloud"
    assert source.partitions() == ["cloud:PMC"]  # fewer keys than one listing page
    remote = list(source.discover())
    local = list(PMCSource(bucket["local"]).discover())
    assert [u.as_dict() for u in remote] == [in_bucket(u, bucket["local"]) for u in local]


def test_prefix_pieces_in_a_bucket(bucket: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("curate.sources.pmc.LAYOUT_SAMPLE", 10)  # the bucket looks large
    source = PMCSource(ROOT, {"partition_digits": 1})
    pieces = source.partitions()
    assert len(pieces) == 10
    expanded = sorted(u.unit_id for p in pieces for u in source.expand(p))
    assert expanded == sorted(u.unit_id for u in source.expand("cloud:PMC"))
    assert len(expanded) == 11


def test_inventory_in_the_bucket_reads_like_the_walk(bucket: dict) -> None:
    walked_source = PMCSource(ROOT)
    listed_source = PMCSource(ROOT, {"inventory": bucket["manifest"]})
    pieces = listed_source.partitions()
    assert [p.rsplit("/", 2)[1] for p in pieces] == ["data", "data"]
    assert all(
        p.startswith(f"inventory:{ROOT}/inventory-reports/{BUCKET}/metadata/") for p in pieces
    )
    walked = list(walked_source.discover())
    listed = list(listed_source.discover())
    assert [(u.unit_id, u.uri, u.skip_reason) for u in listed] == [
        (u.unit_id, u.uri, u.skip_reason) for u in walked
    ]
    assert all(u.meta["metadata_uri"].startswith(f"{ROOT}/metadata/") for u in listed)
    assert records(listed_source, listed) == records(walked_source, walked)
