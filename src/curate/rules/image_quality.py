"""Image quality heuristics as versioned rules.

The image rules are registered filters (`curate.rules.registry`), picked and parameterised in
`curation_rules/dedup/quality.v1.yaml`:

- `image_not_blank.v1`: drop images whose grayscale standard deviation is below `min_std`
  (blank, uniform or nearly so: placeholders, failed renders);
- `image_min_size.v1`: drop images whose short side is below `min_short_side` pixels;
- `image_aspect_ratio.v1`: drop images whose long/short side ratio exceeds `max_aspect`
  (strips, banners, separators; DataComp uses 3 for web images, figures need more room).

Records without image bytes pass (they are text records; other rules judge them). Unreadable
bytes raise `UnreadableImage`, which the stage turns into an error with that reason.
"""

from __future__ import annotations

from curate.dedup.imagehash import DEFAULT_MAX_PIXELS, grayscale, open_image
from curate.rules.registry import Filter, register_rule
from curate.stages import Record


def _size(record: Record, max_pixels: int) -> tuple[int, int] | None:
    width, height = record.get("image_width"), record.get("image_height")
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


@register_rule
class ImageMinSize(Filter):
    name = "image_min_size.v1"
    default_reason = "image_too_small"

    def __init__(self, min_short_side: int = 64, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        super().__init__(min_short_side=min_short_side, max_pixels=max_pixels)
        self.min_short_side = int(min_short_side)
        self.max_pixels = int(max_pixels)

    def filter(self, record: Record) -> bool | tuple[bool, str]:
        size = _size(record, self.max_pixels)
        return size is None or min(size) >= self.min_short_side


@register_rule
class ImageAspectRatio(Filter):
    name = "image_aspect_ratio.v1"
    default_reason = "extreme_aspect_ratio"

    def __init__(self, max_aspect: float = 5.0, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        super().__init__(max_aspect=max_aspect, max_pixels=max_pixels)
        self.max_aspect = float(max_aspect)
        self.max_pixels = int(max_pixels)

    def filter(self, record: Record) -> bool | tuple[bool, str]:
        size = _size(record, self.max_pixels)
        if size is None:
            return True
        return max(size) / max(1, min(size)) <= self.max_aspect
