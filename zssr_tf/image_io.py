"""Image files in and out: the one place that reads and writes pixels.

Every image inside the library is float32, H x W x C, in [0, 1], whatever the file held (8 or 16 bits; the original
read PNG as 0..1 but JPEG as 0..255). Outputs are rounded (the original truncated) and written atomically: encoded
in memory, written to a temporary name beside the target, then renamed, so an interrupted run never leaves a
truncated image behind.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, NamedTuple, Sequence

import warnings

import cv2
import numpy as np
from absl import logging
from PIL import Image

_UMASK = os.umask(0)
os.umask(_UMASK)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


class ImageError(ValueError):
    """An image file is missing, unreadable or of an unsupported kind (the message is one line)."""


class ImageFile(NamedTuple):
    pixels: np.ndarray  # float32, H x W x C in [0, 1]
    bit_depth: int  # 8 or 16


class ImageHeader(NamedTuple):
    height: int
    width: int
    frames: int
    unsupported: str = ""  # why a valid file of this kind cannot be read here (bit depth, channels), in words


def read_header(path: str | os.PathLike) -> ImageHeader | None:
    """The size and frame count a file's header declares, without decoding its pixels (Pillow reads headers
    lazily; where Pillow gives up, a PNG's IHDR or a JPEG's frame header is read directly), or None where neither
    knows the format (`read_image` then refuses it when it has a size limit).

    Raises:
      ImageError: missing or empty file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageError(f"{path}: no such image file")
    if os.path.getsize(path) == 0:
        raise ImageError(f"{path}: the file is empty")
    own = _own_header(path)  # first: Pillow opens a 12-bit JPEG's header that no decoder here reads
    if own is not None and own.unsupported:
        return own
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's decompression-bomb warning: our limit is the caller's
            limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(path) as image:
                    width, height = image.size
                    return ImageHeader(height, width, getattr(image, "n_frames", 1))
            finally:
                Image.MAX_IMAGE_PIXELS = limit
    except Exception:  # e.g. an ancillary PNG chunk Pillow refuses (a zTXt over MAX_TEXT_CHUNK) before the size
        return own


JPEG_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _kind_check(bits: int, channels: int, what: str = "images") -> str:
    if bits not in (8, 16):
        return f"{bits}-bit {what} are not supported (8- or 16-bit images only)"
    if channels not in (1, 2, 3, 4):
        return f"{channels}-channel images are not supported (gray, RGB or RGBA only)"
    return ""


def _own_header(path: str) -> ImageHeader | None:
    """What a PNG's IHDR, a JPEG's frame header or a TIFF's first directory declare, read from the bytes themselves
    (where Pillow gives up); None for other formats or where the bytes do not say."""
    with open(path, "rb") as f:
        start = f.read(26)
        if start.startswith(PNG_SIGNATURE) and start[12:16] == b"IHDR":  # IHDR is the first chunk
            return ImageHeader(int.from_bytes(start[20:24], "big"), int.from_bytes(start[16:20], "big"), 1)
        if start[:4] in (b"II*\0", b"MM\0*"):
            return _tiff_header(f, "little" if start[:2] == b"II" else "big")
        if not start.startswith(b"\xff\xd8"):
            return None
        f.seek(2)
        while True:  # segments: 0xFF, marker, 2-byte length (which counts itself), payload
            marker = f.read(2)
            if len(marker) < 2 or marker[0] != 0xFF:
                return None
            if marker[1] == 0xFF:  # fill byte
                f.seek(-1, os.SEEK_CUR)
                continue
            if 0xD0 <= marker[1] <= 0xD7 or marker[1] == 0x01:  # no payload
                continue
            length = int.from_bytes(f.read(2), "big")
            if marker[1] in JPEG_SOF_MARKERS:
                frame = f.read(6)  # precision, height, width, components
                if len(frame) < 6:
                    return None
                return ImageHeader(int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big"), 1,
                                   "" if frame[0] == 8 else f"{frame[0]}-bit JPEGs are not supported (8 bits only)")
            if marker[1] == 0xDA or length < 2:  # scan data before any frame header, or a broken length
                return None
            f.seek(length - 2, os.SEEK_CUR)


def _tiff_header(f: Any, order: str) -> ImageHeader | None:
    """Size, bits per sample and samples per pixel from a TIFF's first directory (12-byte entries: tag, type,
    count, value or offset; SHORT and LONG values sit in the entry)."""

    def number(data: bytes) -> int:
        return int.from_bytes(data, order)

    f.seek(4)
    f.seek(number(f.read(4)))
    count = number(f.read(2))
    tags = {}
    for _ in range(min(count, 4096)):
        entry = f.read(12)
        if len(entry) < 12:
            return None
        tag, kind, n = number(entry[:2]), number(entry[2:4]), number(entry[4:8])
        size = 2 if kind == 3 else 4
        if tag in (256, 257, 258, 277) and kind in (3, 4):
            if n * size <= 4:
                tags[tag] = number(entry[8:8 + size])
            else:  # the first of several values, elsewhere in the file
                here = f.tell()
                f.seek(number(entry[8:12]))
                tags[tag] = number(f.read(size))
                f.seek(here)
    if 256 not in tags or 257 not in tags:
        return None
    return ImageHeader(tags[257], tags[256], 1, _kind_check(tags.get(258, 1), tags.get(277, 1)))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunks_fit(data: bytes | np.ndarray) -> bool:
    """Whether every chunk a PNG declares fits in the file (True for anything that is not a PNG).

    OpenCV 5's PNG reader spends seconds (3 to 12 s measured on a 437-byte file) on a chunk that declares 2 GB
    before it gives up; walking the chunk lengths (4-byte length, type, data, CRC) finds such files at once."""
    data = data.tobytes() if isinstance(data, np.ndarray) else data
    if not data.startswith(PNG_SIGNATURE):
        return True
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        end = position + 12 + length
        if length > 2**31 - 1 or end > len(data):
            return False
        if data[position + 4:position + 8] == b"IEND":
            return True
        position = end
    return False  # no IEND: truncated


def check_header(path: str | os.PathLike, max_megapixels: float | None = None, why: str = "") -> ImageHeader | None:
    """What `read_image` refuses from the file's header alone (no decoding, no TensorFlow): missing, empty, of
    unknown size (when there is a limit), of an unsupported kind, over `max_megapixels`. Returns the header.

    Raises:
      ImageError: one line.
    """
    path = os.fspath(path)
    header = read_header(path)
    if header is None and max_megapixels is not None:  # never decoded blindly: it could be any size
        raise ImageError(f"{path}: not a readable image (its header does not say its size)")
    if header is not None and header.unsupported:
        raise ImageError(f"{path}: {header.unsupported}")
    if header is not None and max_megapixels is not None and header.height * header.width > max_megapixels * 1e6:
        raise ImageError(f"{path}: {header.height}x{header.width} is too large: over the {max_megapixels:g} "
                         f"megapixels accepted{f' ({why})' if why else ''}")
    return header


def read_image(path: str | os.PathLike, max_megapixels: float | None = None, why: str = "") -> ImageFile:
    """Reads an image file, refusing from its header (before any decoding) one of over `max_megapixels`.

    Args:
      path: a PNG, JPEG, TIFF, BMP or WebP file, 8 or 16 bits, grayscale, RGB or RGBA; of a multi-frame file
        (TIFF, GIF, WebP) the first frame, with a warning.
      max_megapixels: the largest image accepted, or None for any.
      why: the reason for the limit, for the refusal's message (e.g. the flag that raises it).

    Returns:
      ImageFile(pixels float32 H x W x C in [0, 1] with C in {1, 3, 4} in RGB(A) order, bit_depth 8 or 16).

    Raises:
      ImageError: missing, empty, too large, undecodable or unsupported file (one line).
    """
    path = os.fspath(path)
    header = check_header(path, max_megapixels, why)
    if header is not None and header.frames > 1:
        logging.warning("%s: %d frames; only the first is used", path, header.frames)
    data = np.fromfile(path, dtype=np.uint8)
    if not png_chunks_fit(data):
        raise ImageError(f"{path}: not a readable image (a corrupt or truncated PNG: its chunks do not fit the file)")
    # IMREAD_UNCHANGED keeps 16 bits and alpha (palettes are expanded) but ignores the EXIF orientation;
    # ANYDEPTH | ANYCOLOR applies the orientation but drops alpha. Decode both and orient the full image.
    log_level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # truncated files: our one line, not cv2's
    try:
        pixels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        oriented = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    except cv2.error as e:  # e.g. a header over OpenCV's own size limit, or a decoder's failure
        message = next((line.strip() for line in str(e).splitlines() if "error:" in line), str(e).strip())
        raise ImageError(f"{path}: not a readable image ({message.split('error: ')[-1]})") from None
    except MemoryError:
        raise ImageError(f"{path}: out of memory decoding the image") from None
    finally:
        cv2.utils.logging.setLogLevel(log_level)
    if pixels is None or oriented is None:
        raise ImageError(f"{path}: not a readable image (corrupt, truncated or not an image)")
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = _orient_like(pixels, oriented)
    elif pixels.shape[:2] != oriented.shape[:2] or not np.array_equal(pixels, oriented):
        pixels = oriented
    if pixels.dtype == np.uint8:
        bit_depth, scale = 8, 255.0
    elif pixels.dtype == np.uint16:
        bit_depth, scale = 16, 65535.0
    else:
        raise ImageError(f"{path}: {pixels.dtype} pixels are not supported (8- or 16-bit images only)")
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    elif pixels.shape[2] == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    elif pixels.shape[2] == 4:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA)
    else:
        raise ImageError(f"{path}: {pixels.shape[2]}-channel images are not supported")
    return ImageFile(pixels.astype(np.float32) / np.float32(scale), bit_depth)


def _orient_like(pixels: np.ndarray, oriented: np.ndarray) -> np.ndarray:
    """The rotation/mirror of `pixels` (with alpha) whose colour matches the EXIF-oriented decode."""
    reference = oriented if oriented.ndim == 2 else oriented[:, :, 0]
    for k in range(8):
        candidate = np.rot90(pixels, k % 4)
        candidate = np.fliplr(candidate) if k >= 4 else candidate
        if candidate.shape[:2] == reference.shape and np.array_equal(candidate[:, :, 0], reference):
            return np.ascontiguousarray(candidate)
    return pixels


def to_uint(image: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """[0, 1] floats to rounded uint8/uint16 (the original truncated, a -0.5 DN bias)."""
    peak = 255 if bit_depth == 8 else 65535
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return np.round(np.clip(image, 0.0, 1.0) * peak).astype(dtype)


def write_image(path: str | os.PathLike, image: np.ndarray, bit_depth: int = 8) -> None:
    """Writes a float [0, 1] image (H x W, or H x W x C with C in {1, 3, 4}) atomically.

    Raises:
      ImageError: the image cannot be encoded in that format or the file cannot be written.
    """
    path = os.fspath(path)
    write_bytes_atomically(path, encode_image(image, bit_depth, os.path.splitext(path)[1].lower() or ".png", path))


def encode_image(image: np.ndarray, bit_depth: int = 8, extension: str = ".png", name: str = "image") -> bytes:
    """A float [0, 1] image encoded as a file of `extension` (`write_image`'s bytes; `name` for the message).

    Raises:
      ImageError: the image cannot be encoded in that format.
    """
    pixels = to_uint(np.asarray(image), bit_depth)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    elif pixels.ndim == 3 and pixels.shape[2] == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    elif pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA)
    ok, encoded = cv2.imencode(extension, pixels)
    if not ok:
        raise ImageError(f"{name}: cannot encode a {pixels.dtype} image as {extension}")
    return encoded.tobytes()


def write_bytes_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to a temporary file beside `path`, then renames it over `path`."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, temporary = tempfile.mkstemp(prefix=".tmp_", dir=directory)
    except OSError as e:
        raise ImageError(f"cannot write to {directory}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(temporary, path)
    except BaseException as e:  # also Ctrl-C or SIGTERM between the two: no temporary file left behind
        if os.path.exists(temporary):
            os.unlink(temporary)
        if isinstance(e, OSError):
            raise ImageError(f"cannot write {path}: {e.strerror or e}") from None
        raise


def output_name(input_name: str, scale_factor: Sequence[float], method: str = "zssr") -> str:
    """The original's output name, tagged with the method: `<input stem>_zssr_X2.00X2.00.png`."""
    stem = os.path.splitext(os.path.basename(input_name))[0]
    return f"{stem}_{method}_{''.join('X%.2f' % s for s in scale_factor)}.png"
