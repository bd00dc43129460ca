"""Concept extractors for the grounding check, backed by `curate.enrich.link`.

Select one in the spec with `verify.concept_extractor: "curate.instruct.grounding:link_concepts"`.
The linker maps synonyms to one concept, so "enlarged heart" in an answer is grounded by
"cardiomegaly" in the caption; concepts are reported by their canonical name (lower case), so
drops read `ungrounded_concept:pneumothorax`.
"""

from __future__ import annotations

from collections.abc import Callable


def link_concepts() -> Callable[[str], set[str]]:
    """Canonical names of the concepts `curate.enrich.link`'s default linker (offline KB) finds."""
    from curate.enrich.link.config import LinkConfig
    from curate.enrich.link.stage import LinkStage

    stage = LinkStage(LinkConfig(enabled=True))
    stage.setup()
    linker = stage.linker
    assert linker is not None

    def extract(text: str) -> set[str]:
        if not text:
            return set()
        return {linker.concepts[m.cui].canonical_name.lower() for m in linker.mentions(text)}

    return extract
