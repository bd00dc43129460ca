"""Benchmark: JATS -> figure_caption records (+ Parquet/zstd of the non-image columns).

Baseline: a bare loop of pubmed_parser's `parse_pubmed_caption` + `parse_pubmed_xml` +
`parse_pubmed_paragraph` over the same files (what users run today to get captions, metadata
and citing paragraphs). Also reported as a fraction of a bare `lxml.etree.fromstring` loop
(the floor: parsing alone). Single process, so the numbers are per core. Files: the real JATS
articles in ../shared/realdata/pmc_jats, else the demo corpus XML.

    .venv/bin/python benchmarks/bench_pmc_parse.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from lxml import etree

from curate.parse.jats import figure_records, parse_jats_articles
from curate.schema import load_schema

REALDATA = Path(
    os.environ.get("CURATE_REALDATA", Path(__file__).resolve().parents[2] / "shared" / "realdata")
)


def corpus(tmp: str) -> tuple[list[Path], str]:
    folder = REALDATA / "pmc_jats"
    if folder.is_dir():
        files = sorted(p for p in folder.rglob("*") if p.suffix in (".xml", ".nxml"))
        return files, f"realdata ({len(files)} real JATS files)"
    from curate.demo.pmc import generate_pmc_demo

    generate_pmc_demo(tmp)
    files = sorted(p for p in Path(tmp).rglob("*.nxml"))
    return files, f"demo corpus ({len(files)} generated JATS files; realdata absent)"


def ours(blobs: list[tuple[str, bytes]], out_path: str) -> int:
    schema = load_schema("figure_caption.v1")
    text_schema = pa.schema([f for f in schema.arrow if f.name != "image"])
    rows = []
    for uri, data in blobs:
        for article in parse_jats_articles(data):
            for record, _ in figure_records(
                article, unit_id=uri, source_uri=uri, source_layout="folder"
            ):
                record.pop("image")
                rows.append(record)
    pq.write_table(pa.Table.from_pylist(rows, schema=text_schema), out_path, compression="zstd")
    return len(rows)


def baseline(paths: list[str]) -> int:
    import pubmed_parser as pp

    n = 0
    for path in paths:
        try:
            n += len(pp.parse_pubmed_caption(path) or [])
            pp.parse_pubmed_xml(path)
            pp.parse_pubmed_paragraph(path, all_paragraph=True)
        except Exception:  # noqa: BLE001 - count what the baseline manages, as users see it
            continue
    return n


def bare_lxml(blobs: list[tuple[str, bytes]]) -> int:
    parser = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True)
    return sum(len(etree.fromstring(data, parser)) for _, data in blobs)


def best_of(rounds: int, fn, *args) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        files, label = corpus(tmp)
        # Ours gets bytes as a source would; reading is timed for the baseline (it reads paths).
        blobs = [(str(p), p.read_bytes()) for p in files]
        paths = [str(p) for p in files]
        megabytes = sum(len(b) for _, b in blobs) / 1e6
        t_ours, n_ours = best_of(args.rounds, ours, blobs, os.path.join(tmp, "records.parquet"))
        t_base, n_base = best_of(args.rounds, baseline, paths)
        t_lxml, _ = best_of(args.rounds, bare_lxml, blobs)
    print(f"corpus: {label}, {megabytes:.1f} MB, best of {args.rounds} rounds, one core")
    print(
        f"curate parse->records->parquet(zstd): {t_ours:.3f} s  {len(files) / t_ours:8.1f} files/s  ({n_ours} records)"
    )
    print(
        f"pubmed_parser caption+xml+paragraph:  {t_base:.3f} s  {len(files) / t_base:8.1f} files/s  ({n_base} captions)"
    )
    print(
        f"bare lxml.etree.fromstring:           {t_lxml:.3f} s  {len(files) / t_lxml:8.1f} files/s"
    )
    print(f"speed-up vs pubmed_parser: {t_base / t_ours:.2f}x (target >= 1.5x)")
    print(f"fraction of bare-lxml throughput: {t_lxml / t_ours:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
