"""Input URIs as records store them: relative to their source's root (the root itself is in
the manifest, `inputs.<source>.path`), so the same data gives the same shard bytes wherever the
input or the output lives (`/data/pmc`, `s3://bucket/pmc`, a demo corpus under `--out`)."""

from __future__ import annotations

from typing import Any

URI_FIELDS = ("source_uri", "image_uri")


def relative_uri(uri: str | None, root: str) -> str | None:
    """`uri` below `root` -> the part after it (forward slashes); others unchanged. A URI equal
    to the root (a source that is one file) keeps its last path component."""
    if not uri:
        return uri
    base = root.rstrip("/\\")
    if uri == base:
        return base.replace("\\", "/").rsplit("/", 1)[-1]
    for separator in ("/", "\\"):
        if uri.startswith(base + separator):
            return uri[len(base) + 1 :].replace("\\", "/")
    return uri


def relativise_text(text: str, root: str) -> str:
    """Paths below `root` inside free text (an error message) made relative the same way."""
    base = root.rstrip("/\\")
    return text.replace(base + "/", "").replace(base + "\\", "") if base else text


def relativise_record(record: dict[str, Any], root: str) -> dict[str, Any]:
    """The record with its URI fields (and those of nested image structs) made relative."""
    for name in URI_FIELDS:
        if isinstance(record.get(name), str):
            record[name] = relative_uri(record[name], root)
    images = record.get("images")
    if isinstance(images, list):
        for image in images:
            if isinstance(image, dict) and isinstance(image.get("image_uri"), str):
                image["image_uri"] = relative_uri(image["image_uri"], root)
    return record
