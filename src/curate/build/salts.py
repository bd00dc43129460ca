"""The de-identification salts a build uses, resolved in the driver before anything runs.

A source whose options carry `uid_salt` handles patient identifiers; its salt must resolve (a
secret from the environment or a secrets file, or the declared demo salt) before a worker starts,
so a missing secret is one clear error and not one error per record. The manifest records each
salt's kind and fingerprint, never the salt; the build folder's state records the fingerprints,
so a resume with another salt (which would mix two pseudonym spaces) is refused.
"""

from __future__ import annotations

from typing import Any

from curate.errors import SpecError
from curate.parse.deid import DEMO, Salt, salt_from
from curate.sources.base import get_source_class
from curate.spec import Spec

DEMO_NOTE = "demo salt, not for real data: pseudonyms and date shifts can be recomputed by anyone"
SECRET_NOTE = "secret salt: pseudonyms and date shifts cannot be recomputed without it"
NONE_NOTE = "no source of this build carries patient identifiers (no salt used)"


def source_salts(spec: Spec) -> dict[str, Salt]:
    """{source label: salt} for the sources that pseudonymise identifiers."""
    salts: dict[str, Salt] = {}
    for source in spec.sources:
        if not get_source_class(source.kind).uses_salt(source.options):
            continue
        try:
            salts[source.label] = salt_from(source.options.get("uid_salt"))
        except SpecError as exc:
            raise SpecError(f"source {source.label}: {exc}") from exc
    return salts


def deidentification_section(salts: dict[str, Salt]) -> dict[str, Any]:
    """The manifest's `deidentification`: the weakest salt class used, and its fingerprint."""
    if not salts:
        return {"salt": "none", "salt_fingerprint": None, "note": NONE_NOTE, "sources": {}}
    kinds = {salt.kind for salt in salts.values()}
    fingerprints = sorted({salt.fingerprint for salt in salts.values()})
    kind = DEMO if DEMO in kinds else "secret"
    return {
        "salt": kind,
        "salt_fingerprint": fingerprints[0] if len(fingerprints) == 1 else None,
        "note": DEMO_NOTE if kind == DEMO else SECRET_NOTE,
        "sources": {label: salt.describe() for label, salt in sorted(salts.items())},
    }
