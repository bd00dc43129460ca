"""Named errors. Every failure that reaches a dead letter carries a snake_case `reason`.

Parsers raise these (pydicom style: loud and specific); stage wrappers turn them into
`errors/*.parquet` rows with the stage, the error type and the source URI.
"""

from __future__ import annotations


class CurateError(Exception):
    """Base of every error the project raises on purpose."""

    reason: str = "error"

    def __init__(self, message: str = "", *, reason: str | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or self.reason)
        if reason is not None:
            self.reason = reason


class SpecError(CurateError):
    """A spec or rule file does not validate."""

    reason = "invalid_spec"


class SchemaMismatch(CurateError):
    """Shards were written with another schema name, version or hash than the reader expects."""

    reason = "schema_mismatch"


class BudgetExceeded(CurateError):
    """A configured budget (requests, tokens, errors) ran out."""

    reason = "budget_exceeded"


# ---- input errors: one bad input becomes one dead letter, never a crashed run ----


class InputError(CurateError):
    """An input could not be read or parsed."""

    reason = "input_error"


class EmptyInput(InputError):
    """The input has no bytes."""

    reason = "empty_input"


class NotUTF8(InputError):
    """Text input is not valid UTF-8 (or the declared encoding)."""

    reason = "not_utf8"


class MalformedXML(InputError):
    """XML is not well-formed."""

    reason = "malformed_xml"


class HostileXML(InputError):
    """XML uses external entities, DTD tricks or entity expansion (billion laughs)."""

    reason = "hostile_xml"


class NotJATS(InputError):
    """Well-formed XML that is not a JATS/NLM article."""

    reason = "not_jats"


class TruncatedArchive(InputError):
    """A gzip or tar stream ends early or is corrupt."""

    reason = "truncated_archive"


class UnsafeArchiveMember(InputError):
    """A tar member with an absolute path, `..`, a link or a device node."""

    reason = "unsafe_archive_member"


class PackageWithoutXML(InputError):
    """An article package holds no JATS XML file."""

    reason = "package_without_xml"


class UnreadableImage(InputError):
    """Bytes that should be an image are not a readable image."""

    reason = "unreadable_image"


class DecompressionBomb(InputError):
    """An image whose declared pixel count exceeds the configured limit."""

    reason = "decompression_bomb"


class MissingFile(InputError):
    """A file named by metadata does not exist."""

    reason = "missing_file"


class MalformedMetadata(InputError):
    """A metadata file (JSON, CSV) cannot be read as expected."""

    reason = "malformed_metadata"


# ---- knowledge bases for entity linking (curate.enrich.link) ----


class MalformedKB(CurateError):
    """A knowledge-base file (KB jsonl, RRF, lexicon) has a line that cannot be read."""

    reason = "malformed_kb"


class KBIndexMismatch(CurateError):
    """A linking index was built for another KB than the one beside it (hash differs)."""

    reason = "kb_index_mismatch"


# ---- imaging input errors (DICOM, NIfTI, series -> volume) ----


class NotDicom(InputError):
    """Bytes that are not a DICOM dataset (no DICM preamble and nothing parseable with force)."""

    reason = "not_dicom"


class TruncatedDicom(InputError):
    """A DICOM file that ends early: its pixel data or an element is shorter than declared."""

    reason = "truncated_dicom"


class MissingPixelData(InputError):
    """A DICOM object without an image to decode (SR document, DICOMDIR, pixel-less instance)."""

    reason = "missing_pixel_data"


class DecoderMissing(InputError):
    """No installed plugin decodes this transfer syntax; the message names the package to add."""

    reason = "decoder_missing"


class CorruptPixelData(InputError):
    """Pixel data that a decoder for its transfer syntax rejects, or with impossible attributes."""

    reason = "corrupt_pixel_data"


class FrameOutOfRange(InputError):
    """The requested frame index is outside the object's frames."""

    reason = "frame_out_of_range"


class CorruptVolume(InputError):
    """A NIfTI file whose header or data cannot be read, or that is not a 3D image."""

    reason = "corrupt_volume"


class InvalidGeometry(InputError):
    """Spacing, orientation or slice positions that do not describe a regular 3D grid.

    The instance `reason` names the case: zero_spacing, gantry_tilt, missing_slices,
    duplicate_slice_position, inconsistent_spacing, inconsistent_series, too_few_slices.
    """

    reason = "invalid_geometry"


class InputTooLarge(InputError):
    """An input (file, archive member) is larger than the configured cap for its kind."""

    reason = "input_too_large"


class ChecksumMismatch(InputError):
    """File bytes do not match the checksum the source metadata gives (PMC Cloud `?md5=`)."""

    reason = "checksum_mismatch"
