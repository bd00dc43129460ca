"""Ids and URIs derived from file and folder names, pseudonymised.

Hospital exports name folders and files after patients (`DOE^JOHN_1957/CT_CHEST/IM001.dcm`), so a
source that turns names into `unit_id`, `record_id`, `volume_name` or `source_uri` would copy
them into every output. With `pseudonymise_paths` on (the default of the DICOM sources) each
path below the source root is replaced by a salted pseudonym of it (same salt as the patient
pseudonyms, so one file keeps one name across runs), the source root and the file's extension
kept: `/exports/f-3b1c...dcm`. Error messages that quote a raw path get the pseudonym instead.
The build's own `_work/plan` still lists the raw input paths, because workers must open them.
"""

from __future__ import annotations

import posixpath
from typing import Any

from curate.parse.deid import pseudonym
from curate.stages import Failed, Rejected

_SUFFIXES = (".dcm.gz", ".nii.gz", ".dcm", ".dicom", ".nii", ".gz")


class PathPseudonyms:
    def __init__(self, root: str, salt: str) -> None:
        self.root = root.rstrip("/")
        self.salt = salt

    def name(self, raw: str, prefix: str = "n-") -> str:
        """A folder or file name (or a relative path) -> its pseudonym."""
        return pseudonym(raw, self.salt, prefix)

    def relative(self, uri: str) -> str:
        normal = uri.replace("\\", "/")
        if normal.startswith(self.root + "/"):
            return normal[len(self.root) + 1 :]
        return normal

    def uri(self, uri: str) -> str:
        """`root/<relative path>` -> `root/f-<pseudonym><extension>`."""
        if not uri:
            return uri
        rel = self.relative(uri)
        lower = rel.lower()
        suffix = next((s for s in _SUFFIXES if lower.endswith(s)), "")
        return posixpath.join(self.root, self.name(rel, "f-") + suffix)

    def scrub(self, text: str, raw: list[str]) -> str:
        """`text` with every raw path in `raw` (longest first) replaced by its pseudonym."""
        for path in sorted({p for p in raw if p}, key=len, reverse=True):
            text = text.replace(path, self.uri(path))
        return text

    def record(self, record: dict[str, Any]) -> dict[str, Any]:
        for column in ("source_uri", "image_uri"):
            value = record.get(column)
            if isinstance(value, str) and value:
                record[column] = self.uri(value)
        return record

    def item(self, item: Any, unit_uris: list[str]) -> Any:
        """A record, reject or failure of one unit with its paths pseudonymised."""
        if isinstance(item, Rejected):
            self.record(item.record)
        elif isinstance(item, Failed):
            raw = [*unit_uris, item.source_uri]
            item.message = self.scrub(item.message, raw)
            item.source_uri = self.uri(item.source_uri)
        elif isinstance(item, dict):
            self.record(item)
        return item
