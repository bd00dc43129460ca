"""The embedding pass: Beam `RunInference` with a PyTorch model handler, and its sidecar.

`EmbedRecords(config, tower, out_dir)` takes a PCollection of records (dicts) and returns a
PCollection of `(record_id, vector)` (vector: float32 numpy, L2-normalised). When `out_dir` is
given it also writes `out_dir/attributes/embeddings_<tower>.parquet` with columns
`record_id`, `vector` (list<float32>) and `model_id`, so dedup and quality thresholds can be
re-tuned later without embedding again (`read_sidecar`).

Records without a payload for the tower (no text, no image bytes) get no vector; payloads the
tower cannot use (unreadable image) come out on the `failed` tag as `(record_id, reason)`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.ml.inference.base import ModelHandler, RunInference

from curate import fs
from curate.embed.config import EmbedConfig, resolve_device
from curate.embed.models import Tower, load_tower
from curate.stages import Record

FAILED = "failed"

SIDECAR_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("vector", pa.list_(pa.float32()), nullable=False),
        pa.field("model_id", pa.string(), nullable=False),
    ]
)


def sidecar_path(out_dir: str, tower: str) -> str:
    return fs.join(out_dir, "attributes", f"embeddings_{tower}.parquet")


def record_payload(record: Record, tower: str, config: EmbedConfig) -> Any | None:
    """What the tower embeds: the first non-empty text field, or the image bytes."""
    if tower == "image":
        data = record.get("image")
        return bytes(data) if data else None
    for name in config.text_fields:
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            return value
    return None


class TowerModelHandler(ModelHandler[tuple[str, Any], tuple[str, Any, str, Any], Tower]):
    """Keyed examples `(record_id, payload)` -> `(record_id, vector | None, model_id, issue)`.

    Preprocessing (tokenising, decoding) runs inside `run_inference` on the worker's CPU and
    the forward pass on the tower's device; RunInference batches with exactly `batch_size`.
    """

    def __init__(
        self, model_ref: str, tower: str, device: str = "auto", batch_size: int = 64, **options: Any
    ) -> None:
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)
        self.model_ref = model_ref
        self.tower = tower
        self.device = device
        self.batch_size = batch_size
        self.options = options

    def load_model(self) -> Tower:
        return load_tower(self.model_ref, self.tower, resolve_device(self.device), **self.options)

    def run_inference(
        self,
        batch: Sequence[tuple[str, Any]],
        model: Tower,
        inference_args: dict | None = None,
    ) -> Iterable[tuple[str, Any, str, Any]]:
        vectors, issues = model.embed([payload for _, payload in batch])
        row = 0
        for (record_id, _), issue in zip(batch, issues):
            if issue is None:
                yield (record_id, vectors[row], model.model_id, None)
                row += 1
            else:
                yield (record_id, None, model.model_id, issue)

    def get_num_bytes(self, batch: Sequence[tuple[str, Any]]) -> int:
        # The default pickles the whole batch just to count it; image bytes make that costly.
        return sum(len(payload) for _, payload in batch)

    def get_metrics_namespace(self) -> str:
        return f"curate_embed_{self.tower}"


class FixedBatchHandler(TowerModelHandler):
    """Elements are whole batches (lists of `(record_id, payload)`) cut upstream from one
    file's rows in file order, so a record's vector never depends on which records happen to
    share its batch at run time (padding and BLAS blocking move the last bits otherwise)."""

    def __init__(self, model_ref: str, tower: str, device: str = "auto", **options: Any) -> None:
        super().__init__(model_ref, tower, device, batch_size=1, **options)

    def run_inference(  # type: ignore[override]  # elements are batches here
        self,
        batch: Sequence[Sequence[tuple[str, Any]]],
        model: Tower,
        inference_args: dict | None = None,
    ) -> Iterable[tuple[str, Any, str, Any]]:
        for chunk in batch:
            yield from super().run_inference(chunk, model, inference_args)

    def get_num_bytes(self, batch: Sequence[Sequence[tuple[str, Any]]]) -> int:  # type: ignore[override]
        return sum(len(payload) for chunk in batch for _, payload in chunk)


class _SplitResults(beam.DoFn):
    def process(self, element: tuple[str, Any, str, Any]) -> Iterator[Any]:
        record_id, vector, model_id, issue = element
        if vector is None:
            yield beam.pvalue.TaggedOutput(FAILED, (record_id, issue))
        else:
            yield (record_id, np.asarray(vector, dtype=np.float32), model_id)


def _write_sorted_sidecar(items: list[tuple[str, np.ndarray, str]], path: str) -> None:
    ordered = sorted(items, key=lambda item: item[0])
    model_ids = {model_id for _, _, model_id in ordered}
    write_sidecar(path, [(rid, vector) for rid, vector, _ in ordered], ",".join(sorted(model_ids)))


class EmbedRecords(beam.PTransform):
    """records -> `(record_id, vector)`; also `.failed` -> `(record_id, reason)` after expansion.

    Use `EmbedRecords(config, "text", out_dir=OUT)`; with `with_failures=True` the transform
    returns a dict `{"vectors": ..., "failed": ...}` instead of the vectors alone. With
    `fixed_batches=True` the input is lists of records, each embedded as one batch
    (reproducible vectors whatever the runner's delivery order).
    """

    def __init__(
        self,
        config: EmbedConfig,
        tower: str,
        out_dir: str | None = None,
        with_failures: bool = False,
        fixed_batches: bool = False,
    ) -> None:
        super().__init__(label=f"EmbedRecords_{tower}")
        self.config = config
        self.tower = tower
        self.out_dir = out_dir
        self.with_failures = with_failures
        self.fixed_batches = fixed_batches

    def handler(self) -> TowerModelHandler:
        c = self.config
        options = {"max_text_tokens": c.max_text_tokens, "max_image_pixels": c.max_image_pixels}
        if self.fixed_batches:
            return FixedBatchHandler(c.model_for(self.tower), self.tower, c.device, **options)
        return TowerModelHandler(
            c.model_for(self.tower), self.tower, c.device, c.batch_size, **options
        )

    def expand(self, records: beam.PCollection) -> Any:
        tower, config = self.tower, self.config

        def keyed_payloads(rows: list[dict[str, Any]]) -> list[tuple[str, Any]]:
            return [
                (str(r["record_id"]), p)
                for r in rows
                if (p := record_payload(r, tower, config)) is not None
            ]

        if self.fixed_batches:
            keyed = records | f"Payload_{tower}" >> beam.FlatMap(
                lambda rows: [chunk] if (chunk := keyed_payloads(rows)) else []
            )
        else:
            keyed = records | f"Payload_{tower}" >> beam.FlatMap(lambda r: keyed_payloads([r]))
        results = (
            keyed
            | f"RunInference_{tower}" >> RunInference(self.handler())
            | f"Split_{tower}" >> beam.ParDo(_SplitResults()).with_outputs(FAILED, main="ok")
        )
        if self.out_dir:
            # Sorted by record id, so the file does not depend on the order vectors arrive in.
            _ = (
                results.ok
                | f"AllVectors_{tower}" >> beam.combiners.ToList()
                | f"WriteSidecar_{tower}"
                >> beam.Map(_write_sorted_sidecar, sidecar_path(self.out_dir, tower))
            )
        vectors = results.ok | f"Vectors_{tower}" >> beam.Map(lambda t: (t[0], t[1]))
        if self.with_failures:
            return {"vectors": vectors, "failed": results[FAILED]}
        return vectors


# ---- without Beam: the same towers for tests, benchmarks and small runs -----------------------


def embed_records(
    records: Iterable[Record],
    config: EmbedConfig,
    tower: str,
    model: Tower | None = None,
) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, str]], str]:
    """(vectors, failures, model_id) for `records`, batched like the Beam pass."""
    model = model or load_tower(
        config.model_for(tower),
        tower,
        resolve_device(config.device),
        max_text_tokens=config.max_text_tokens,
        max_image_pixels=config.max_image_pixels,
    )
    keyed = [
        (str(r["record_id"]), p)
        for r in records
        if (p := record_payload(r, tower, config)) is not None
    ]
    vectors: list[tuple[str, np.ndarray]] = []
    failed: list[tuple[str, str]] = []
    for lo in range(0, len(keyed), config.batch_size):
        chunk = keyed[lo : lo + config.batch_size]
        out, issues = model.embed([p for _, p in chunk])
        row = 0
        for (record_id, _), issue in zip(chunk, issues):
            if issue is None:
                vectors.append((record_id, out[row]))
                row += 1
            else:
                failed.append((record_id, issue))
    return vectors, failed, model.model_id


def write_sidecar(path: str, vectors: Sequence[tuple[str, np.ndarray]], model_id: str) -> None:
    dim = len(vectors[0][1]) if vectors else 0
    flat = (
        np.concatenate([v for _, v in vectors]).astype(np.float32)
        if vectors
        else np.zeros(0, np.float32)
    )
    offsets = (
        np.arange(0, (len(vectors) + 1) * dim, dim, dtype=np.int32)
        if vectors
        else np.zeros(1, np.int32)
    )
    table = pa.table(
        {
            "record_id": pa.array([r for r, _ in vectors], pa.string()),
            "vector": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)),
            "model_id": pa.array([model_id] * len(vectors), pa.string()),
        },
        schema=SIDECAR_SCHEMA,
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    fs.write_bytes_atomic(path, sink.getvalue().to_pybytes())


def read_sidecar(path: str) -> tuple[list[str], np.ndarray, set[str]]:
    """(record ids, (n, dim) float32 matrix, model ids) from an embeddings sidecar."""
    import io

    table = pq.read_table(io.BytesIO(fs.read_bytes(path)))
    ids = table.column("record_id").to_pylist()
    vec = table.column("vector").combine_chunks()
    if len(ids) == 0:
        return [], np.zeros((0, 0), np.float32), set()
    flat = vec.values.to_numpy(zero_copy_only=False).astype(np.float32)
    matrix = flat.reshape(len(ids), -1)
    return ids, matrix, set(table.column("model_id").to_pylist())
