"""The rule machinery: chain order and stage names, parameter checks, registration and aliases."""

from __future__ import annotations

from pathlib import Path

import pytest

from curate.errors import SpecError
from curate.rules import registry
from curate.rules.chain import get_rule, instantiate
from curate.rules.files import load_rule_chain, validate_rule_file
from curate.rules.registry import Filter, register_alias, register_rule
from curate.stages import Rejected

CAPTION_FIRST = """\
name: order
version: 1
rules:
  - rule: caption_words.v1
    params: {min_words: 3, min_chars: 6}
    why: captions that say something
  - rule: image_min_side.v1
    params: {min_side: 64}
    why: no icons
"""
SIZE_FIRST = """\
name: order
version: 1
rules:
  - rule: image_min_side.v1
    params: {min_side: 64}
    why: no icons
  - rule: caption_words.v1
    params: {min_words: 3, min_chars: 6}
    why: captions that say something
"""
OLD_NAMES = """\
name: old_names
version: 1
rules:
  - rule: image_min_size.v1
    params: {min_short_side: 64}
    why: old quality name
  - rule: image_aspect_ratio.v1
    params: {max_aspect: 5.0}
    why: old quality name
"""

SHORT_AND_SMALL = {"caption": "a b", "image_width": 10, "image_height": 10}
SMALL_ONLY = {"caption": "a long enough caption", "image_width": 10, "image_height": 10}
GOOD = {"caption": "a long enough caption", "image_width": 100, "image_height": 100}


def write(tmp_path: Path, stem: str, text: str) -> Path:
    path = tmp_path / f"{stem}.yaml"
    path.write_text(text)
    return path


def outcomes(chain, records):
    """(reason, stage) per dropped record, None per kept one."""
    out = []
    for record in records:
        [outcome] = chain.process(record)
        out.append((outcome.reason, outcome.stage) if isinstance(outcome, Rejected) else None)
    return out


def test_first_dropping_rule_names_reason_and_stage(tmp_path: Path) -> None:
    chain = load_rule_chain(str(write(tmp_path, "caption_first", CAPTION_FIRST)))
    assert outcomes(chain, [SHORT_AND_SMALL, SMALL_ONLY, GOOD]) == [
        ("caption_too_short", "rules:caption_first:caption_words.v1"),
        ("image_too_small", "rules:caption_first:image_min_side.v1"),
        None,
    ]


def test_order_in_the_file_decides_which_rule_reports(tmp_path: Path) -> None:
    chain = load_rule_chain(str(write(tmp_path, "size_first", SIZE_FIRST)))
    assert outcomes(chain, [SHORT_AND_SMALL, SMALL_ONLY, GOOD]) == [
        ("image_too_small", "rules:size_first:image_min_side.v1"),
        ("image_too_small", "rules:size_first:image_min_side.v1"),
        None,
    ]


def test_kept_record_passes_unchanged(tmp_path: Path) -> None:
    chain = load_rule_chain(str(write(tmp_path, "caption_first", CAPTION_FIRST)))
    assert list(chain.process(GOOD)) == [GOOD]


def test_rule_file_naming_aliases_validates_and_names_them(tmp_path: Path) -> None:
    path = write(tmp_path, "old_names", OLD_NAMES)
    assert validate_rule_file(path) == []
    chain = load_rule_chain(str(path))
    small = {"image_width": 10, "image_height": 100}
    strip = {"image_width": 600, "image_height": 100}
    assert outcomes(chain, [small, strip, {}]) == [
        ("image_too_small", "rules:old_names:image_min_size.v1"),
        ("aspect_ratio_extreme", "rules:old_names:image_aspect_ratio.v1"),
        None,
    ]


def test_alias_with_canonical_parameter_is_a_file_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "bad", OLD_NAMES.replace("{min_short_side: 64}", "{min_side: 64}"))
    assert [str(p) for p in validate_rule_file(path)] == [
        f"{path}:4: rule image_min_size.v1: unknown parameters ['min_side']"
    ]


def test_instantiate_refuses_unknown_parameters() -> None:
    with pytest.raises(SpecError, match=r"rule caption_words.v1: unknown parameters \['colour'\]"):
        instantiate("caption_words.v1", {"min_words": 1, "min_chars": 1, "colour": "blue"})


@pytest.mark.parametrize(
    ("rule_name", "params", "unknown"),
    [
        ("image_min_size.v1", {"min_side": 64}, "['min_side']"),
        ("image_min_size.v1", {"size_from_image": False}, "['size_from_image']"),
        ("image_aspect_ratio.v1", {"keep_unknown_size": False}, "['keep_unknown_size']"),
        ("image_aspect_ratio.v1", {"max_ratio": 3.0}, "['max_ratio']"),
        ("aspect_ratio.v1", {"max_aspect": 3.0}, "['max_aspect']"),
    ],
)
def test_aliases_take_only_their_old_parameters(rule_name, params, unknown) -> None:
    with pytest.raises(SpecError) as caught:
        instantiate(rule_name, params)
    assert str(caught.value) == f"rule {rule_name}: unknown parameters {unknown}"


def test_instantiate_refuses_missing_required_parameter() -> None:
    with pytest.raises(SpecError, match=r"^rule image_min_side.v1: .*'min_side'"):
        instantiate("image_min_side.v1", {})


def test_unknown_rule_name() -> None:
    with pytest.raises(SpecError, match=r"unknown rule 'image_min_size.v2'"):
        get_rule("image_min_size.v2")


def test_alias_passes_old_parameters_and_fixed_options() -> None:
    rule = instantiate("image_aspect_ratio.v1", {"max_aspect": 3, "max_pixels": 1000})
    assert (rule.max_ratio, rule.max_pixels) == (3, 1000)
    assert (rule.size_from_image, rule.keep_unknown_size) == (True, True)
    canonical = instantiate("aspect_ratio.v1", {"max_ratio": 3})
    assert (canonical.size_from_image, canonical.keep_unknown_size) == (False, False)


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations in a test go to a copy, so the real catalogue stays as shipped."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


class Shout(Filter):
    name = "shout.v1"
    default_reason = "too_quiet"

    def __init__(self, min_caps: int, strict: bool = False) -> None:
        super().__init__(min_caps=min_caps, strict=strict)
        self.min_caps, self.strict = min_caps, strict

    def filter(self, record):
        return sum(c.isupper() for c in record.get("caption", "")) >= self.min_caps


@pytest.mark.usefixtures("scratch_registry")
def test_registering_a_name_twice_is_refused() -> None:
    register_rule(Shout)
    register_rule(Shout)  # the same class again (a re-import) is harmless

    class OtherShout(Shout):
        pass

    with pytest.raises(ValueError, match="rule name shout.v1 registered twice"):
        register_rule(OtherShout)
    with pytest.raises(ValueError, match="rule name caption_words.v1 registered twice"):
        register_alias("caption_words.v1", Shout)
    with pytest.raises(ValueError, match="rule name image_min_size.v1 registered twice"):
        register_alias("image_min_size.v1", Shout)
    assert get_rule("shout.v1") is Shout


@pytest.mark.usefixtures("scratch_registry")
def test_rule_names_must_be_versioned() -> None:
    class Unversioned(Shout):
        name = "shout"

    with pytest.raises(ValueError, match="versioned name"):
        register_rule(Unversioned)
    register_rule(Shout)
    with pytest.raises(ValueError, match="versioned name"):
        register_alias("yell", Shout)


@pytest.mark.usefixtures("scratch_registry")
def test_alias_needs_a_registered_target_and_real_parameters() -> None:
    with pytest.raises(ValueError, match="Shout is not a registered rule"):
        register_alias("yell.v1", Shout)
    register_rule(Shout)
    with pytest.raises(ValueError, match=r"shout.v1 has no parameters \['loudness'\]"):
        register_alias("yell.v1", Shout, renames={"caps": "loudness"})
    with pytest.raises(ValueError, match=r"shout.v1 has no parameters \['volume'\]"):
        register_alias("yell.v1", Shout, fixed={"volume": 11})
    with pytest.raises(ValueError, match=r"does not take: \['min_caps'\]"):
        register_alias("yell.v1", Shout, renames={"caps": "min_caps"}, defaults={"min_caps": 2})


@pytest.mark.usefixtures("scratch_registry")
def test_alias_renames_defaults_and_fixes() -> None:
    register_rule(Shout)
    yell = register_alias(
        "yell.v1", Shout, renames={"caps": "min_caps"}, defaults={"caps": 2}, fixed={"strict": True}
    )
    assert get_rule("yell.v1") is yell
    assert (yell.__name__, yell.alias_of, yell.default_reason) == ("Yell", "shout.v1", "too_quiet")
    rule = instantiate("yell.v1", {})
    assert (rule.name, rule.min_caps, rule.strict, rule.params) == (
        "yell.v1",
        2,
        True,
        {"min_caps": 2, "strict": True},
    )
    assert instantiate("yell.v1", {"caps": 3}).min_caps == 3
    assert [rule.filter({"caption": c}) for c in ("AB", "Ab")] == [True, False]
    with pytest.raises(SpecError, match=r"unknown parameters \['strict'\]"):
        instantiate("yell.v1", {"strict": False})
