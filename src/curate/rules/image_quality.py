"""Image quality heuristics as versioned rules, one rule per job:

- `image_not_blank.v1`: drop images whose grayscale standard deviation is below `min_std`
  (blank, uniform or nearly so: placeholders, failed renders), reason `blank_image`;
- `image_min_side.v1`: drop images whose short side is below `min_side` pixels, reason
  `image_too_small`;
- `aspect_ratio.v1`: drop images whose long/short side ratio exceeds `max_ratio` (strips,
  banners, separators; DataComp uses 3 for web images, figures need more room), reason
  `aspect_ratio_extreme`.

The size comes from the `image_width`/`image_height` columns. With `size_from_image` it is read
from the image header when the columns are missing; `keep_unknown_size` says what happens when
there is still no size (a text record: other rules judge it). Unreadable bytes raise
`UnreadableImage`, which the stage turns into an error with that reason.

`image_min_size.v1` and `image_aspect_ratio.v1` (`curation_rules/dedup/quality.v1.yaml`) are old
names of the two size rules, kept as aliases with their old parameters and behaviour: size read
from the image, records without a size kept.
"""

from __future__ import annotations

from curate.dedup.imagehash import DEFAULT_MAX_PIXELS, grayscale, open_image
from curate.rules.registry import Filter, register_alias, register_rule
from curate.stages import Record

# What the old quality rules did: read the size from the image, keep records without one.
_QUALITY_SIZE_OPTIONS = {"size_from_image": True, "keep_unknown_size": True}


def image_size(
    record: Record, from_image: bool, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[int, int] | None:
    """(width, height) from the columns, else (with `from_image`) from the image header."""
    width, height = record.get("image_width"), record.get("image_height")
    if not from_image:
        return None if width is None or height is None else (width, height)
    # A zero column is as good as missing when the image itself can say.
    if width and height:
        return int(width), int(height)
    data = record.get("image")
    if not data:
        return None
    return open_image(data, max_pixels).size


@register_rule
class ImageNotBlank(Filter):
    name = "image_not_blank.v1"
    default_reason = "blank_image"

    def __init__(self, min_std: float = 3.0, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        super().__init__(min_std=min_std, max_pixels=max_pixels)
        self.min_std = float(min_std)
        self.max_pixels = int(max_pixels)

    def filter(self, record: Record) -> bool | tuple[bool, str]:
        data = record.get("image")
        if not data:
            return True
        # A 64x64 thumbnail keeps the spread of real content and is cheap to compute.
        pixels = grayscale(data, (64, 64), self.max_pixels)
        return float(pixels.std()) >= self.min_std


class _SizeRule(Filter):
    """Shared size lookup of the two size rules; `judge` decides on a known size."""

    def __init__(
        self,
        size_from_image: bool = False,
        keep_unknown_size: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        **params: object,
    ) -> None:
        super().__init__(
            **params,
            size_from_image=size_from_image,
            keep_unknown_size=keep_unknown_size,
            max_pixels=max_pixels,
        )
        self.size_from_image = bool(size_from_image)
        self.keep_unknown_size = bool(keep_unknown_size)
        self.max_pixels = int(max_pixels)

    def filter(self, record: Record) -> bool | tuple[bool, str]:
        size = image_size(record, self.size_from_image, self.max_pixels)
        return self.keep_unknown_size if size is None else self.judge(*size)

    def judge(self, width: int, height: int) -> bool:
        raise NotImplementedError


@register_rule
class ImageMinSide(_SizeRule):
    name = "image_min_side.v1"
    default_reason = "image_too_small"

    def __init__(
        self,
        min_side: float,
        size_from_image: bool = False,
        keep_unknown_size: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        super().__init__(size_from_image, keep_unknown_size, max_pixels, min_side=min_side)
        self.min_side = min_side

    def judge(self, width: int, height: int) -> bool:
        return min(width, height) >= self.min_side


@register_rule
class AspectRatio(_SizeRule):
    name = "aspect_ratio.v1"
    default_reason = "aspect_ratio_extreme"

    def __init__(
        self,
        max_ratio: float,
        size_from_image: bool = False,
        keep_unknown_size: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        super().__init__(size_from_image, keep_unknown_size, max_pixels, max_ratio=max_ratio)
        self.max_ratio = max_ratio

    def judge(self, width: int, height: int) -> bool:
        if not width or not height:
            return False  # a zero side has no ratio: a broken size, not an image
        return max(width, height) / min(width, height) <= self.max_ratio


register_alias(
    "image_min_size.v1",
    ImageMinSide,
    renames={"min_short_side": "min_side"},
    defaults={"min_short_side": 64},
    fixed=_QUALITY_SIZE_OPTIONS,
)
register_alias(
    "image_aspect_ratio.v1",
    AspectRatio,
    renames={"max_aspect": "max_ratio"},
    defaults={"max_aspect": 5.0},
    fixed=_QUALITY_SIZE_OPTIONS,
)
