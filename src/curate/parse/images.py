"""Figure images: match a JATS graphic href to a file, and read the image header.

Matching (`ImageIndex.resolve`): a `<graphic xlink:href="pone.0046493.g001">` names a file whose
name equals the href, or whose stem equals it (the extension dropped), compared
case-insensitively on the last path component. When several files match (a package with both
`g001.tif` and `g001.jpg`), the web formats win in the order jpg, jpeg, png, gif, then
tif/tiff, then anything else: web JPEG/PNG are what PMC serves and what trainers read, TIFF
originals are 10-50x larger for the same figure. Ties break by name, so matching is
deterministic.

Probing (`probe_image`): Pillow opens the bytes and reads format and size from the header only
(no `.load()`, so no full decode); the bytes are kept unchanged and hashed with SHA-256. A
declared pixel count above the limit is a `DecompressionBomb` (Pillow's own
DecompressionBombError/Warning are caught and mapped too); anything Pillow cannot identify is
`UnreadableImage`.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from curate.errors import DecompressionBomb, UnreadableImage

# PIL's own default limit (~89.5 Mpx, a 0.25 GB RGB decode): large enough for any journal figure
# at print resolution, small enough that a crafted header cannot make a worker allocate GBs.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485

WEB_FIRST_PREFERENCE = ("jpg", "jpeg", "png", "gif", "tif", "tiff")
IMAGE_EXTENSIONS = frozenset({*WEB_FIRST_PREFERENCE, "bmp", "webp", "eps", "svg", "jp2"})
# Files in an article folder that are never figure images.
NON_IMAGE_EXTENSIONS = frozenset({"xml", "nxml", "json", "txt", "pdf"})


def _split_ext(name: str) -> tuple[str, str]:
    stem, dot, ext = name.rpartition(".")
    return (stem, ext.lower()) if dot and stem else (name, "")


class ImageIndex:
    """Candidate image files of one article, looked up by graphic href."""

    def __init__(
        self,
        paths: Iterable[str],
        preference: tuple[str, ...] = WEB_FIRST_PREFERENCE,
    ) -> None:
        self._rank = {ext: i for i, ext in enumerate(preference)}
        self._by_name: dict[str, list[str]] = {}
        self._by_stem: dict[str, list[str]] = {}
        for path in paths:
            name = posixpath.basename(path.replace("\\", "/"))
            if not name:
                continue
            stem, ext = _split_ext(name)
            if ext in NON_IMAGE_EXTENSIONS:
                continue
            self._by_name.setdefault(name.lower(), []).append(path)
            if ext:
                self._by_stem.setdefault(stem.lower(), []).append(path)

    def _best(self, paths: list[str]) -> str:
        def key(path: str) -> tuple[int, str]:
            ext = _split_ext(posixpath.basename(path))[1]
            return (self._rank.get(ext, len(self._rank)), path)

        return min(paths, key=key)

    def resolve(self, href: str | None) -> str | None:
        if not href:
            return None
        name = posixpath.basename(href.strip().replace("\\", "/")).lower()
        if not name:
            return None
        candidates: list[str] = []
        stem, ext = _split_ext(name)
        # `pone.0046493.g001` has a dot that is not an extension: try the whole name as a stem.
        candidates.extend(self._by_stem.get(name, ()))
        if ext in IMAGE_EXTENSIONS:
            # The href names a format (`fig1.tif`); another format of the same figure counts.
            candidates.extend(self._by_stem.get(stem, ()))
        exact = self._by_name.get(name, ())
        if exact and not candidates:
            return self._best(list(exact))
        candidates.extend(exact)
        return self._best(candidates) if candidates else None

    def resolve_any(self, hrefs: Iterable[str]) -> str | None:
        """The first href (primary, then alternatives) that resolves."""
        for href in hrefs:
            if found := self.resolve(href):
                return found
        return None


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    sha256: str


def probe_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> ImageInfo:
    """Format and size from the header, SHA-256 of the unchanged bytes; named errors."""
    if not data:
        raise UnreadableImage("image file is empty")
    try:
        with warnings.catch_warnings():
            # Our own limit decides; Pillow's warning above its default is not a verdict.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = img.format
                width, height = img.size
    except Image.DecompressionBombError as exc:
        raise DecompressionBomb(str(exc)) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UnreadableImage(f"not a readable image: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - crafted headers can trip plugin bugs (struct.error, ...)
        raise UnreadableImage(f"not a readable image ({type(exc).__name__}: {exc})") from exc
    if width <= 0 or height <= 0:
        raise UnreadableImage(f"image declares size {width}x{height}")
    if width * height > max_pixels:
        raise DecompressionBomb(
            f"image declares {width}x{height} = {width * height} pixels, limit {max_pixels}"
        )
    return ImageInfo(
        format=fmt or "UNKNOWN",
        width=width,
        height=height,
        sha256=hashlib.sha256(data).hexdigest(),
    )
