"""A chest radiograph's source file (MIMIC-CXR DICOM or MIMIC-CXR-JPG) decoded into a
display-ready, shrunk 8-bit grayscale image, with what the source says about itself.

Knows nothing of where images are stored: `ingestion.images` hands the result to
`ingestion.image_store`. Every failure is a `RejectedSource` with a specific reason.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pydicom
from PIL import Image, UnidentifiedImageError
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.uid import UID

_JPEG_SUFFIXES = (".jpg", ".jpeg")
_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
_UNDEFINED_LENGTH = 0xFFFFFFFF


@dataclass(frozen=True)
class ShrunkImage:
    """A decoded, display-ready, resized grayscale image and what the source said about itself;
    the DICOM attributes are None for JPG sources."""

    image: Image.Image
    rows: int
    cols: int
    photometric_interpretation: str | None = None
    transfer_syntax_uid: str | None = None
    bits_stored: int | None = None
    view_position: str | None = None


class RejectedSource(Exception):
    """A source that cannot become an image; the message is the reason its `ImageReject` gives."""


def decode_source(path: str, longest_side: int) -> ShrunkImage:
    """Decode a DICOM (or, by its `.jpg`/`.jpeg` suffix, a JPEG) file and shrink it so its
    longest side is at most `longest_side`; raises `RejectedSource` for anything unusable."""
    decode = _decode_jpeg if path.lower().endswith(_JPEG_SUFFIXES) else _decode_dicom
    return decode(path, longest_side)


def _shrink(image: Image.Image, longest_side: int) -> None:
    # thumbnail keeps the aspect ratio, never enlarges (upscaling adds no information, only
    # bytes; the model's processor resizes anyway) and lets the JPEG decoder skip detail it
    # would throw away.
    image.thumbnail((longest_side, longest_side), Image.Resampling.LANCZOS)


def _open_dicom(path: str) -> Dataset:
    """Parse a DICOM file, telling truncation apart from other damage."""
    # pydicom reads a cut file leniently: an undefined-length element (encapsulated pixel data)
    # that hits the end only warns, and a defined-length one silently keeps the bytes it got.
    # Recording its warnings loses nothing: pydicom logs each one as well.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            dataset = pydicom.dcmread(path)
        except InvalidDicomError as error:
            raise RejectedSource("not a DICOM file (no DICM preamble at byte 128)") from error
        except Exception as error:
            raise RejectedSource(
                f"malformed or truncated DICOM: {type(error).__name__}: {error}"
            ) from error
    for warning in caught:
        if str(warning.message).startswith("End of file"):
            raise RejectedSource(f"truncated DICOM: {warning.message}")
    if len(dataset):
        # Only the element the file ends in can be short, and it is the one with the last tag.
        last_tag = max(dataset.keys())
        last = dataset.get_item(last_tag)
        if (
            isinstance(last, RawDataElement)
            and last.value is not None
            and last.length != _UNDEFINED_LENGTH
            and len(last.value) < last.length
        ):
            raise RejectedSource(
                f"truncated DICOM: the file ends inside {last_tag} {keyword_for_tag(last_tag)}, "
                f"{len(last.value)} of {last.length} bytes present"
            )
    return dataset


def _require_decoder(syntax: UID) -> None:
    try:
        available = get_decoder(syntax).is_available
    except NotImplementedError:
        available = False
    if not available:
        name = syntax.name if syntax.name != str(syntax) else "not a syntax pydicom knows"
        raise RejectedSource(
            f"unsupported transfer syntax {syntax} ({name}): no pixel-data plugin can decode it"
        )


def _has_voi(dataset: Dataset) -> bool:
    """(0028,3010) VOI LUT Sequence, or both (0028,1050) Window Center and (0028,1051) Width."""
    windowed = all(dataset.get(name) not in (None, "") for name in ("WindowCenter", "WindowWidth"))
    return bool(dataset.get("VOILUTSequence")) or windowed


def _stored_range(dataset: Dataset) -> tuple[int, int]:
    """The values (0028,0101) Bits Stored can hold, signed when (0028,0103) Pixel
    Representation is 1."""
    bits = int(dataset.BitsStored)
    if int(dataset.get("PixelRepresentation", 0)) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _display_table(dataset: Dataset, lowest: int, highest: int) -> np.ndarray:
    """The 8-bit display value of every storable value, from the lowest one up: modality LUT,
    then VOI LUT or window, else min-max over `lowest..highest` (the image's range);
    MONOCHROME1 inverted.

    The transforms are per value, so running them over at most 65,536 values replaces float math
    over ~7 MP pixels. With a VOI, 0 and 255 are the ends of its output over every storable
    value, which for a window inside that range are the window's own floor and ceiling.
    """
    first, last = _stored_range(dataset)
    presented = apply_modality_lut(np.arange(first, last + 1), dataset)
    if _has_voi(dataset):
        presented = np.asarray(apply_voi_lut(presented, dataset), dtype=np.float64)
        low, high = presented.min(), presented.max()
    else:
        presented = np.asarray(presented, dtype=np.float64)
        in_image = presented[lowest - first : highest - first + 1]
        low, high = in_image.min(), in_image.max()
    if high > low:
        scaled = np.clip(np.rint((presented - low) * (255.0 / (high - low))), 0, 255)
    else:
        scaled = np.zeros_like(presented)
    table = scaled.astype(np.uint8)
    if dataset.PhotometricInterpretation == "MONOCHROME1":
        table = 255 - table
    return table


def _stored_values(dataset: Dataset) -> np.ndarray:
    """The decoded pixel data, for native syntaxes a read-only view of the file's bytes."""
    # A copy and the unused-bits correction would each cost a pass over ~7 MP; the correction
    # is only needed when the unused high bits actually hold something (PS3.5 8.1.1).
    dataset.pixel_array_options(view_only=True, correct_unused_bits=False)
    stored = dataset.pixel_array
    first, last = _stored_range(dataset)
    if stored.ndim == 2 and not first <= stored.min() <= stored.max() <= last:
        unused = stored.itemsize * 8 - int(dataset.BitsStored)
        # Shifting out and back clears (unsigned) or sign-extends (signed) the unused bits.
        stored = (stored << unused) >> unused
    return stored


def _decode_dicom(path: str, longest_side: int) -> ShrunkImage:
    dataset = _open_dicom(path)
    if "PixelData" not in dataset:
        raise RejectedSource("no pixel data: the file has no (7FE0,0010) Pixel Data element")
    syntax = dataset.file_meta.get("TransferSyntaxUID")
    if syntax is None:
        raise RejectedSource("no (0002,0010) Transfer Syntax UID in the file meta information")
    _require_decoder(syntax)
    photometric = dataset.get("PhotometricInterpretation")
    if photometric not in _MONOCHROME:
        raise RejectedSource(
            f"(0028,0004) Photometric Interpretation is {photometric!r}: "
            "expected MONOCHROME1 or MONOCHROME2"
        )
    try:
        stored = _stored_values(dataset)
    except Exception as error:
        raise RejectedSource(
            f"undecodable pixel data ({syntax.name}): {type(error).__name__}: {error}"
        ) from error
    if stored.ndim != 2:
        raise RejectedSource(
            f"pixel data has shape {stored.shape}: expected a single grayscale frame"
        )
    table = _display_table(dataset, int(stored.min()), int(stored.max()))
    first, _ = _stored_range(dataset)
    # Index arithmetic must not wrap around in the stored (16-bit) dtype.
    offsets = stored if first == 0 else stored.astype(np.int32) - first
    # Every offset is inside the table; "clip" skips the bounds checks (~30% faster).
    image = Image.fromarray(np.take(table, offsets, mode="clip"))
    _shrink(image, longest_side)
    rows, cols = stored.shape
    view = str(dataset.get("ViewPosition") or "").strip()
    return ShrunkImage(
        image=image,
        rows=rows,
        cols=cols,
        photometric_interpretation=photometric,
        transfer_syntax_uid=str(syntax),
        bits_stored=int(dataset.BitsStored),
        view_position=view or None,
    )


def _decode_jpeg(path: str, longest_side: int) -> ShrunkImage:
    try:
        image = Image.open(path)
    except UnidentifiedImageError as error:
        raise RejectedSource("not a JPEG file: no image format recognised in its bytes") from error
    with image:
        if image.format != "JPEG":
            raise RejectedSource(f"not a JPEG file: it holds {image.format} data")
        cols, rows = image.size
        try:
            _shrink(image, longest_side)
            # Pillow decodes lazily: a damaged stream only fails here.
            return ShrunkImage(image=image.convert("L"), rows=rows, cols=cols)
        except OSError as error:
            raise RejectedSource(f"corrupt JPEG: {error}") from error
