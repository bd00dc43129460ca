"""JATS `<fig>` elements -> figures with label, title, captions, group and graphic slots.

Each figure carries two captions (policy: `curation_rules/pmc_figures_captions.v1.yaml`):

* `caption_full`: every readable word of `<caption>`: title, all paragraphs, nested
  supplementary material, eLife's "DOI: http://dx.doi.org/..." paragraph;
* `caption`: the training caption, the full caption less the policy's dropped elements
  (nested `<supplementary-material>`) and boilerplate paragraphs (a paragraph that is only a
  DOI). Identical to `caption_full` for most articles (PMC OA, PLOS, BMC).

The figure's own DOI (`<object-id pub-id-type="doi">`, outside the caption) is kept apart as
`doi` rather than as caption text. A figure without a caption gets `""` for both, never the
previous figure's caption. Graphics inside `<alternatives>` are alternatives of *one* image:
they form one slot whose first href is the primary one; several slots in one `<fig>` give
one record each. Figures inside `<fig-group>` carry the group id and group caption.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import yaml

from curate.parse.jats_text import SKIP, flatten_into, flatten_raw, flatten_text, special_tags
from curate.resources import resource_path

XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
CAPTION_POLICY = "pmc_figures_captions.v1"
_BOILERPLATE_MAX_CHARS = 300  # longer paragraphs are description, never checked for boilerplate


@dataclass
class ParsedFigure:
    figure_id: str | None
    label: str | None
    title: str | None
    caption: str  # training caption (see module doc)
    fig_group_id: str | None
    fig_group_caption: str | None
    # One slot per image; a slot holds the hrefs of <alternatives> of that image (primary first).
    graphics: list[tuple[str, ...]]
    mentions: list[str] = field(default_factory=list)
    position: int = 0  # document order among the article's figures
    caption_full: str = ""  # every readable word of <caption>
    doi: str | None = None  # <object-id pub-id-type="doi"> of the figure


@dataclass(frozen=True)
class CaptionPolicy:
    drop_elements: frozenset[str]
    drop_paragraphs: tuple[re.Pattern[str], ...]

    @property
    def training_skip(self) -> frozenset[str]:
        return SKIP | self.drop_elements

    def is_boilerplate(self, paragraph: str) -> bool:
        return any(p.match(paragraph) for p in self.drop_paragraphs)


@cache
def load_caption_policy(ref: str = CAPTION_POLICY) -> CaptionPolicy:
    data = yaml.safe_load(resource_path("curation_rules", f"{ref}.yaml").read_text())
    return CaptionPolicy(
        drop_elements=frozenset(data["drop_elements"]["names"]),
        drop_paragraphs=tuple(
            re.compile(p, re.IGNORECASE) for p in data["drop_paragraphs"]["patterns"]
        ),
    )


def captions(caption_el: Any, policy: CaptionPolicy) -> tuple[str, str]:
    """(training caption, full caption) of a `<caption>` element, flattened in one pass."""
    if caption_el is None:
        return "", ""
    drop = tuple(policy.drop_elements)
    skip = policy.training_skip
    special = special_tags(skip)
    full: list[str] = []
    training: list[str] = []
    if caption_el.text:
        full.append(caption_el.text)
        training.append(caption_el.text)
    for child in caption_el:
        piece: list[str] = []
        flatten_into(child, piece)
        full.extend(piece)
        if (
            child.tag == "p"
            and sum(map(len, piece)) <= _BOILERPLATE_MAX_CHARS
            and policy.is_boilerplate(" ".join(flatten_raw(child).split()))
        ):
            if child.tail:
                training.append(child.tail)
        elif drop and next(child.iter(*drop), None) is not None:
            flatten_into(child, training, skip, special)
        else:
            training.extend(piece)
    return " ".join("".join(training).split()), " ".join("".join(full).split())


def _graphic_slots(container: Any, slots: list[tuple[str, ...]]) -> None:
    for child in container:
        tag = child.tag
        if not isinstance(tag, str) or tag in ("caption", "label", "fig"):
            continue
        if tag == "graphic":
            href = child.get(XLINK_HREF) or child.get("href")
            slots.append((href.strip(),) if href else ("",))
        elif tag == "alternatives":
            hrefs = tuple(
                h.strip()
                for g in child.iter("graphic")
                if (h := g.get(XLINK_HREF) or g.get("href"))
            )
            if hrefs:
                slots.append(hrefs)
        else:
            _graphic_slots(child, slots)


def _enclosing_group(fig: Any) -> Any:
    for anc in fig.iterancestors():
        tag = anc.tag
        if tag == "fig-group":
            return anc
        if tag in ("sec", "body", "back", "article", "floats-group", "sub-article", "app"):
            return None
    return None


def _figure_doi(fig: Any) -> str | None:
    for oid in fig.iterchildren("object-id"):
        if (oid.get("pub-id-type") or "").lower() == "doi" and (oid.text or "").strip():
            return oid.text.strip()
    return None


def parse_figures(article: Any) -> tuple[list[ParsedFigure], dict[str, list[int]]]:
    """Every `<fig>` in document order, and id (fig or fig-group) -> indexes it names."""
    policy = load_caption_policy()
    figures: list[ParsedFigure] = []
    targets: dict[str, list[int]] = {}
    group_captions: dict[Any, str | None] = {}
    for position, fig in enumerate(article.iter("fig")):
        caption_el = fig.find("caption")
        title_el = caption_el.find("title") if caption_el is not None else None
        group = _enclosing_group(fig)
        group_id = group_caption = None
        if group is not None:
            group_id = group.get("id")
            if group not in group_captions:
                group_captions[group] = flatten_text(group.find("caption")) or None
            group_caption = group_captions[group]
        slots: list[tuple[str, ...]] = []
        _graphic_slots(fig, slots)
        training, full = captions(caption_el, policy)
        figure = ParsedFigure(
            figure_id=fig.get("id"),
            label=flatten_text(fig.find("label")) or None,
            title=flatten_text(title_el) or None,
            caption=training,
            fig_group_id=group_id,
            fig_group_caption=group_caption,
            graphics=slots,
            position=position,
            caption_full=full,
            doi=_figure_doi(fig),
        )
        figures.append(figure)
        if figure.figure_id:
            targets.setdefault(figure.figure_id, []).append(position)
        if group_id:
            targets.setdefault(group_id, []).append(position)
    return figures, targets
