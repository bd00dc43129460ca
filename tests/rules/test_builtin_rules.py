"""Every registered rule (aliases included) against exact keep/drop decisions and exact reasons,
on the values either side of each threshold, missing fields and empty strings.

`CASES` is keyed by rule name; `test_every_registered_rule_has_cases` fails when a rule is
registered without a keep case and a drop case here, so a new rule cannot ship untested.
"""

from __future__ import annotations

import io
from typing import Any, NamedTuple

import numpy as np
import pytest
from PIL import Image

from curate.errors import UnreadableImage
from curate.rules.chain import RuleChain, get_rule, instantiate, registered_rules
from curate.stages import Record, Rejected


def png(width: int, height: int, right_half: int = 0) -> bytes:
    """A grayscale PNG: left half black, right half `right_half` (std = right_half / 2)."""
    pixels = np.zeros((height, width), np.uint8)
    pixels[:, width // 2 :] = right_half
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


class Case(NamedTuple):
    label: str
    params: dict[str, Any]
    record: Record
    expected: str | None  # None: kept; otherwise the reason it is dropped with


def sized(width: Any, height: Any, **more: Any) -> Record:
    return {"image_width": width, "image_height": height, **more}


COMMERCIAL = {"families": ["commercial"]}
CAPTION = {"min_words": 3, "min_chars": 6}
MIN_SIDE = {"min_side": 64}
MAX_RATIO = {"max_ratio": 5.0}
FROM_IMAGE = {"size_from_image": True}
KEEP_UNKNOWN = {"keep_unknown_size": True}
MIN_SHORT = {"min_short_side": 64}
MAX_ASPECT = {"max_aspect": 5.0}
EXCLUDED = {"types": ["Correction", "editorial"]}
BOTH = {"fields": ["findings", "impression"]}
EITHER = {"fields": ["findings", "impression"], "any_of": True}

CASES: dict[str, list[Case]] = {
    "license_allowed.v1": [
        Case("allowed family", COMMERCIAL, {"license_family": "commercial"}, None),
        Case(
            "other family",
            COMMERCIAL,
            {"license_family": "noncommercial"},
            "license_not_allowed:noncommercial",
        ),
        Case(
            "family is case-sensitive",
            COMMERCIAL,
            {"license_family": "Commercial"},
            "license_not_allowed:Commercial",
        ),
        Case("no family", COMMERCIAL, {"license": "cc-by"}, "license_not_allowed:none"),
        Case("empty family", COMMERCIAL, {"license_family": ""}, "license_not_allowed:none"),
        Case(
            "exact licence allowed",
            {**COMMERCIAL, "licenses": ["cc-by-nc"]},
            {"license": "cc-by-nc", "license_family": "noncommercial"},
            None,
        ),
        Case(
            "other exact licence",
            {**COMMERCIAL, "licenses": ["cc-by-nc"]},
            {"license": "cc-by-nd-nc", "license_family": "noncommercial"},
            "license_not_allowed:noncommercial",
        ),
    ],
    "caption_words.v1": [
        Case("words just below", CAPTION, {"caption": "abcd efghi"}, "caption_too_short"),
        Case("words at", CAPTION, {"caption": "ab cd ef"}, None),
        Case("words above", CAPTION, {"caption": "ab cd ef gh"}, None),
        Case("chars just below", CAPTION, {"caption": "a b c"}, "caption_too_short"),
        Case("chars at", CAPTION, {"caption": "a b cd"}, None),
        Case("chars above", CAPTION, {"caption": "a b cde"}, None),
        Case("padding is not text", CAPTION, {"caption": "  a b c  "}, "caption_too_short"),
        Case("punctuation is not a word", CAPTION, {"caption": "aa -- bb"}, "caption_too_short"),
        Case("empty", CAPTION, {"caption": ""}, "caption_empty"),
        Case("blank", CAPTION, {"caption": " \n\t"}, "caption_empty"),
        Case("missing", CAPTION, {}, "caption_empty"),
        Case("none", CAPTION, {"caption": None}, "caption_empty"),
        Case("other field", {**CAPTION, "field": "alt"}, {"alt": "ab cd ef", "caption": ""}, None),
        Case(
            "other field empty",
            {**CAPTION, "field": "alt"},
            {"caption": "ab cd ef"},
            "caption_empty",
        ),
    ],
    "image_min_side.v1": [
        Case("width just below", MIN_SIDE, sized(63, 100), "image_too_small"),
        Case("width at", MIN_SIDE, sized(64, 100), None),
        Case("width above", MIN_SIDE, sized(65, 100), None),
        Case("height just below", MIN_SIDE, sized(100, 63), "image_too_small"),
        Case("height at", MIN_SIDE, sized(100, 64), None),
        Case("zero side", MIN_SIDE, sized(0, 100), "image_too_small"),
        Case("no width", MIN_SIDE, sized(None, 100), "image_too_small"),
        Case("no height", MIN_SIDE, {"image_width": 100}, "image_too_small"),
        Case("bytes ignored by default", MIN_SIDE, {"image": png(100, 100)}, "image_too_small"),
        Case("size from image", {**MIN_SIDE, **FROM_IMAGE}, {"image": png(100, 64)}, None),
        Case(
            "image just below",
            {**MIN_SIDE, **FROM_IMAGE},
            {"image": png(100, 63)},
            "image_too_small",
        ),
        Case(
            "columns win over image",
            {**MIN_SIDE, **FROM_IMAGE},
            sized(63, 100, image=png(100, 100)),
            "image_too_small",
        ),
        Case("no size at all", {**MIN_SIDE, **FROM_IMAGE}, {"image": b""}, "image_too_small"),
        Case("unknown size kept", {**MIN_SIDE, **KEEP_UNKNOWN}, {}, None),
        Case(
            "known size still judged",
            {**MIN_SIDE, **KEEP_UNKNOWN},
            sized(63, 100),
            "image_too_small",
        ),
    ],
    "aspect_ratio.v1": [
        Case("ratio just below", MAX_RATIO, sized(499, 100), None),
        Case("ratio at", MAX_RATIO, sized(500, 100), None),
        Case("ratio just above", MAX_RATIO, sized(501, 100), "aspect_ratio_extreme"),
        Case("tall just above", MAX_RATIO, sized(100, 501), "aspect_ratio_extreme"),
        Case("tall at", MAX_RATIO, sized(100, 500), None),
        Case("square", MAX_RATIO, sized(64, 64), None),
        Case("zero side", MAX_RATIO, sized(0, 100), "aspect_ratio_extreme"),
        Case("no width", MAX_RATIO, sized(None, 100), "aspect_ratio_extreme"),
        Case("no size", MAX_RATIO, {}, "aspect_ratio_extreme"),
        Case("bytes ignored by default", MAX_RATIO, {"image": png(64, 64)}, "aspect_ratio_extreme"),
        Case("size from image at", {**MAX_RATIO, **FROM_IMAGE}, {"image": png(320, 64)}, None),
        Case(
            "size from image above",
            {**MAX_RATIO, **FROM_IMAGE},
            {"image": png(321, 64)},
            "aspect_ratio_extreme",
        ),
        Case("unknown size kept", {**MAX_RATIO, **KEEP_UNKNOWN}, {}, None),
        Case(
            "known size still judged",
            {**MAX_RATIO, **KEEP_UNKNOWN},
            sized(501, 100),
            "aspect_ratio_extreme",
        ),
    ],
    # Old names: size read from the image when the columns are missing (or zero), records with
    # no size kept, the canonical reason.
    "image_min_size.v1": [
        Case("columns just below", MIN_SHORT, sized(63, 100), "image_too_small"),
        Case("columns at", MIN_SHORT, sized(64, 100), None),
        Case("image just below", MIN_SHORT, {"image": png(80, 63)}, "image_too_small"),
        Case("image at", MIN_SHORT, {"image": png(80, 64)}, None),
        Case("image above", MIN_SHORT, {"image": png(80, 65)}, None),
        Case("zero column reads image", MIN_SHORT, sized(0, 100, image=png(80, 80)), None),
        Case(
            "columns win over image",
            MIN_SHORT,
            sized(63, 100, image=png(80, 80)),
            "image_too_small",
        ),
        Case("no image", MIN_SHORT, {"image": None}, None),
        Case("empty image", MIN_SHORT, {"image": b""}, None),
        Case("missing all", MIN_SHORT, {}, None),
        Case("default 64: below", {}, {"image": png(80, 63)}, "image_too_small"),
        Case("default 64: at", {}, {"image": png(80, 64)}, None),
        Case("other threshold", {"min_short_side": 30}, {"image": png(40, 30)}, None),
    ],
    "image_aspect_ratio.v1": [
        Case("columns at", MAX_ASPECT, sized(500, 100), None),
        Case("columns just above", MAX_ASPECT, sized(501, 100), "aspect_ratio_extreme"),
        Case("image just below", MAX_ASPECT, {"image": png(319, 64)}, None),
        Case("image at", MAX_ASPECT, {"image": png(320, 64)}, None),
        Case("image just above", MAX_ASPECT, {"image": png(321, 64)}, "aspect_ratio_extreme"),
        Case("tall image above", MAX_ASPECT, {"image": png(64, 321)}, "aspect_ratio_extreme"),
        Case("zero column reads image", MAX_ASPECT, sized(0, 100, image=png(64, 64)), None),
        Case("no image", MAX_ASPECT, {"image": None}, None),
        Case("missing all", MAX_ASPECT, {}, None),
        Case("default 5: above", {}, {"image": png(321, 64)}, "aspect_ratio_extreme"),
        Case("default 5: at", {}, {"image": png(320, 64)}, None),
        Case("other threshold", {"max_aspect": 3}, {"image": png(193, 64)}, "aspect_ratio_extreme"),
    ],
    "article_type_excluded.v1": [
        Case(
            "excluded", EXCLUDED, {"article_type": "correction"}, "article_type_excluded:correction"
        ),
        Case(
            "case folded",
            EXCLUDED,
            {"article_type": "EDITORIAL"},
            "article_type_excluded:editorial",
        ),
        Case("research article", EXCLUDED, {"article_type": "research-article"}, None),
        Case("near miss", EXCLUDED, {"article_type": "corrections"}, None),
        Case("missing", EXCLUDED, {}, None),
        Case("empty", EXCLUDED, {"article_type": ""}, None),
    ],
    "field_required.v1": [
        Case("both present", BOTH, {"findings": "clear", "impression": "normal"}, None),
        Case("one missing", BOTH, {"impression": "normal"}, "field_missing:findings"),
        Case(
            "blank string",
            BOTH,
            {"findings": "clear", "impression": "  "},
            "field_missing:impression",
        ),
        Case(
            "empty string", BOTH, {"findings": "", "impression": "normal"}, "field_missing:findings"
        ),
        Case("both missing", BOTH, {}, "field_missing:findings|impression"),
        Case(
            "empty list and bytes",
            BOTH,
            {"findings": [], "impression": b""},
            "field_missing:findings|impression",
        ),
        Case("zero and list count", BOTH, {"findings": 0, "impression": ["x"]}, None),
        Case("any of: one", EITHER, {"impression": "normal"}, None),
        Case(
            "any of: none",
            EITHER,
            {"findings": None, "impression": ""},
            "field_missing:findings|impression",
        ),
    ],
    "image_not_blank.v1": [
        Case("uniform", {}, {"image": png(64, 64)}, "blank_image"),
        Case(
            "std just below", {"min_std": 3.0}, {"image": png(64, 64, right_half=5)}, "blank_image"
        ),
        Case("std at", {"min_std": 3.0}, {"image": png(64, 64, right_half=6)}, None),
        Case("std above", {"min_std": 3.0}, {"image": png(64, 64, right_half=7)}, None),
        Case("default 3: below", {}, {"image": png(64, 64, right_half=5)}, "blank_image"),
        Case("lower threshold", {"min_std": 2.0}, {"image": png(64, 64, right_half=5)}, None),
        Case("no image", {}, {"image": None}, None),
        Case("empty image", {}, {"image": b""}, None),
        Case("missing", {}, {}, None),
    ],
}

ALL_CASES = [(name, case) for name, cases in CASES.items() for case in cases]


def decide(rule_name: str, params: dict[str, Any], record: Record) -> str | None:
    """None when a one-rule chain keeps `record`, else the reason it drops it with."""
    [outcome] = RuleChain([instantiate(rule_name, params)]).process(record)
    return outcome.reason if isinstance(outcome, Rejected) else None


@pytest.mark.parametrize(
    ("rule_name", "case"), ALL_CASES, ids=[f"{n}:{c.label}" for n, c in ALL_CASES]
)
def test_rule_decides(rule_name: str, case: Case) -> None:
    assert decide(rule_name, case.params, case.record) == case.expected


def test_every_registered_rule_has_cases() -> None:
    registered = set(registered_rules())
    assert registered - set(CASES) == set(), "registered rules without test cases"
    assert set(CASES) - registered == set(), "test cases for rules that are not registered"
    for name, cases in CASES.items():
        outcomes = {case.expected is None for case in cases}
        assert outcomes == {True, False}, f"{name} needs a keep case and a drop case"


def test_aliases_are_the_canonical_rules_under_old_names() -> None:
    aliases = {n: cls.alias_of for n, cls in registered_rules().items() if cls.alias_of}
    assert aliases == {
        "image_min_size.v1": "image_min_side.v1",
        "image_aspect_ratio.v1": "aspect_ratio.v1",
    }
    for alias, canonical in aliases.items():
        assert get_rule(alias).name == alias
        assert issubclass(get_rule(alias), get_rule(canonical))
        assert get_rule(alias).default_reason == get_rule(canonical).default_reason


@pytest.mark.parametrize("rule_name", ["image_min_size.v1", "image_aspect_ratio.v1"])
def test_size_aliases_raise_on_unreadable_image(rule_name: str) -> None:
    with pytest.raises(UnreadableImage):
        instantiate(rule_name, {}).filter({"image": b"not an image"})


def test_size_from_image_raises_on_unreadable_image() -> None:
    rule = instantiate("image_min_side.v1", {"min_side": 64, "size_from_image": True})
    with pytest.raises(UnreadableImage):
        rule.filter({"image": b"not an image"})
    # Without the option the bytes are never opened.
    assert instantiate("image_min_side.v1", MIN_SIDE).filter({"image": b"not an image"}) is False


def test_image_not_blank_raises_on_unreadable_image() -> None:
    with pytest.raises(UnreadableImage):
        instantiate("image_not_blank.v1", {}).filter({"image": b"not an image"})


def test_max_pixels_guards_the_size_read() -> None:
    from curate.errors import DecompressionBomb

    small = instantiate("image_min_size.v1", {"max_pixels": 100})
    with pytest.raises(DecompressionBomb):
        small.filter({"image": png(11, 10)})
    assert small.filter({"image": png(10, 10)}) is False  # 100 pixels: read, then too small
