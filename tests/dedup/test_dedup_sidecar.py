"""Near-dup sidecar (curate.dedup.sidecar): rows computed once per task decide exactly as the
full records do, through Parquet and Beam."""

from __future__ import annotations

import io

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from curate.dedup.beam import NearDuplicates
from curate.dedup.config import NearDedupConfig
from curate.dedup.minhash import MinHasher
from curate.dedup.near import find_near_duplicates
from curate.dedup.sidecar import (
    FINGERPRINT_KEY,
    near_sidecar_fingerprint,
    near_sidecar_matches,
    near_sidecar_rows,
    near_sidecar_schema,
    near_sidecar_table,
    sidecar_signature_batch,
)
from curate.demo.near_duplicates import generate
from curate.shuffle import shuffled_bytes

BOILERPLATE = "representative images of the study cohort are shown in this figure panel"


@pytest.fixture(scope="module")
def records() -> list[dict]:
    """Planted image and caption copies, a boilerplate bucket, short captions, no-image rows."""
    out = [p.record for p in generate(n_originals=30, copies_per_variant=6, seed=4)]
    for i, record in enumerate(out[:12]):
        record["caption"] = BOILERPLATE if i % 4 else "CT scan"
    out.append({"record_id": "text-only-1", "caption": out[40]["caption"]})
    out.append({"record_id": "text-only-2", "caption": "Figure 2"})
    return out


def _through_parquet(rows: list[dict], config: NearDedupConfig) -> tuple[list[dict], pa.Schema]:
    buffer = io.BytesIO()
    pq.write_table(near_sidecar_table(rows, config), buffer)
    table = pq.read_table(io.BytesIO(buffer.getvalue()))
    return table.to_pylist(), table.schema


def _sidecar(records: list[dict], config: NearDedupConfig, batch: int = 16) -> list[dict]:
    rows = []
    for start in range(0, len(records), batch):  # as phase 1 does, one batch at a time
        rows.extend(near_sidecar_rows(records[start : start + batch], config))
    return rows


def test_sidecar_rows_schema_and_values(records):
    config = NearDedupConfig()
    rows = _sidecar(records, config)
    read, schema = _through_parquet(rows, config)
    assert schema.field("signature").type == pa.list_(pa.uint32())
    assert schema.field("image_hash").type == pa.uint64()
    assert schema.metadata[FINGERPRINT_KEY] == near_sidecar_fingerprint(config).encode()
    assert near_sidecar_matches(schema, config)
    assert not near_sidecar_matches(schema, NearDedupConfig(caption={"shingle_size": 3}))
    assert near_sidecar_matches(schema, NearDedupConfig(caption={"min_jaccard": 0.7}))
    assert schema.names == near_sidecar_schema(config).names
    by_id = {row["record_id"]: row for row in read}
    assert by_id["text-only-2"]["signature"] is None  # too short to be eligible
    assert by_id["text-only-1"]["image_hash"] is None and by_id["text-only-1"]["pixels"] == 0
    signed = [row for row in rows if row["signature"] is not None]
    assert all(row["signature"].dtype == np.uint32 for row in signed)
    hasher = MinHasher(128, 1, "word", 2)
    caption = next(r["caption"] for r in records if r["record_id"] == signed[0]["record_id"])
    assert (
        by_id[signed[0]["record_id"]]["signature"]
        == hasher.signatures([caption]).values[0].tolist()
    )


def test_sidecar_of_other_settings_is_refused():
    config = NearDedupConfig()
    row = {"record_id": "a", "pixels": 1, "signature": list(range(64))}
    with pytest.raises(ValueError, match="recompute the sidecar"):
        sidecar_signature_batch([row], config)
    other = NearDedupConfig(caption={"num_perm": 64, "bands": 16})
    assert near_sidecar_fingerprint(other) != near_sidecar_fingerprint(config)


@pytest.mark.parametrize("keep", ["highest_resolution", "lowest_record_id"])
def test_decisions_from_sidecar_equal_decisions_from_records(records, keep):
    config = NearDedupConfig(keep=keep)
    expected = [d.as_tuple() for d in find_near_duplicates(records, config)]
    reasons = {reason for _, reason, _ in expected}
    assert "near_duplicate_image" in reasons
    # border crops are found (through the sidecar's crop columns too, checked below); the
    # planted caption copies are crops of their originals, so image evidence names them
    crops = [d for d in expected if "cropped" in d[0] or "cropped" in d[2]]
    assert len(crops) >= 4
    rows, _ = _through_parquet(_sidecar(records, config), config)
    pipeline = beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions([]))
    from_records = (
        pipeline
        | "Records" >> beam.Create(records)
        | "FromRecords" >> NearDuplicates(config, caption_group_size=500, shuffle_prefix="full")
    )
    from_sidecar = (
        pipeline
        | "Rows" >> beam.Create(rows)
        | "FromSidecar"
        >> NearDuplicates(
            config, from_sidecar=True, caption_group_size=500, shuffle_prefix="sidecar"
        )
    )
    assert_that(from_records, equal_to(expected), label="RecordsDecide")
    assert_that(from_sidecar, equal_to(expected), label="SidecarDecides")
    result = pipeline.run()
    result.wait_until_finish()
    shuffle = shuffled_bytes(result.metrics())
    for prefix in ("full", "sidecar"):
        for step in (
            "image_groups",
            "gradient_groups",
            "crop_groups",
            "caption_bands",
            "caption_signatures",
            "caption_candidates",
            "confirm_groups",
        ):
            assert shuffle[f"{prefix}_{step}"]["elements"] > 0
