"""Still images: read to RGB uint8 (their size checked from the header first), write atomically."""
from __future__ import annotations

import re
import struct
from pathlib import Path

import cv2
import numpy as np

from ..errors import VidstyleError
from .atomic import AtomicPath, check_target

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
ALPHA_SUFFIXES = {".png", ".webp", ".tif", ".tiff"}  # formats that may hold transparency
ALPHA_WRITERS = {".png", ".webp"}  # OpenCV's TIFF writer does not mark a 4th channel as alpha
MAX_IMAGE_PIXELS = 1 << 30  # OpenCV's default decode limit (CV_IO_MAX_IMAGE_PIXELS); larger raises cv2.error
MAX_PIXELS = 100_000_000  # what read_image decodes by default: 100 megapixels take 300 MB as RGB, 1.2 GB as floats


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def find_images(folder: Path) -> list[Path]:
    """Every image below ``folder`` (recursive), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image(p))


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a PNG, JPEG, WebP, GIF, BMP, TIFF or PNM picture, without decoding it;
    None for anything else or a header too short to tell (OpenCV's own limit then applies)."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            return struct.unpack(">II", data[16:24])
        if data[:4] in (b"GIF8",):
            return struct.unpack("<HH", data[6:10])
        if data[:2] == b"BM":
            if struct.unpack("<I", data[14:18])[0] == 12:
                return struct.unpack("<HH", data[18:22])
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            kind = data[12:16]
            if kind == b"VP8 ":
                w, h = struct.unpack("<HH", data[26:30])
                return w & 0x3FFF, h & 0x3FFF
            if kind == b"VP8L":
                b = struct.unpack("<I", data[21:25])[0]
                return (b & 0x3FFF) + 1, ((b >> 14) & 0x3FFF) + 1
            if kind == b"VP8X":
                return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
            return None
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_size(data)
        m = re.match(rb"P[1-6]\s+(?:#[^\n]*\n\s*)*(\d+)\s+(?:#[^\n]*\n\s*)*(\d+)", data[:256])
        if m:
            return int(m.group(1)), int(m.group(2))
    except struct.error:
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The size in a JPEG's start-of-frame marker (SOF0..SOF15 but DHT, JPG and DAC)."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + length
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """ImageWidth (256) and ImageLength (257) of a TIFF's first directory."""
    order = "<" if data[:2] == b"II" else ">"
    ifd = struct.unpack(order + "I", data[4:8])[0]
    (n,) = struct.unpack(order + "H", data[ifd:ifd + 2])
    found = {}
    for k in range(n):
        tag, kind, _, value = struct.unpack(order + "HHI4s", data[ifd + 2 + 12 * k:ifd + 14 + 12 * k])
        if tag in (256, 257):
            found[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), value[:2 if kind == 3 else 4])[0]
    return (found[256], found[257]) if len(found) == 2 else None


def check_pixels(path: Path, data: bytes | None = None, max_pixels: int | None = None) -> None:
    """A VidstyleError, before anything is decoded, when the picture has more than ``max_pixels`` pixels
    (default ``MAX_PIXELS``): a small file may hold a huge picture (a 1.2 MB PNG of 20000 x 20000).
    ``data``: the file's first bytes, when read already (else its first 64 KB are read here)."""
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if data is None:
        with open(path, "rb") as f:
            data = f.read(1 << 16)
    size = header_size(data)
    if size is not None and size[0] * size[1] > limit:
        raise VidstyleError(f"{path} is {size[0]}x{size[1]} ({size[0] * size[1] / 1e6:.0f} megapixels), over the "
                            f"limit of {limit / 1e6:g} megapixels; --max-pixels raises it")


def read_image(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB; a VidstyleError when missing, unreadable or over ``max_pixels`` (``check_pixels``)."""
    path = Path(path)
    if not path.is_file():
        raise VidstyleError(f"image not found: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    check_pixels(path, data[:1 << 20].tobytes(), max_pixels)  # a JPEG may put 64 KB of EXIF first
    try:
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error as e:  # e.g. over OpenCV's pixel limit (2^30): an assertion, not None
        if "CV_IO_MAX_IMAGE_PIXELS" in str(e):
            raise VidstyleError(f"cannot read image {path}: too large for OpenCV to decode "
                                f"(over {MAX_IMAGE_PIXELS} pixels)") from None
        bgr = None
    if bgr is None:
        raise VidstyleError(f"cannot read image {path}: not an image OpenCV can decode")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_alpha(path: str | Path, shape: tuple[int, ...], size: tuple[int, ...] | None = None) -> np.ndarray | None:
    """The transparency of the picture at ``path`` as (H, W) uint8 (255 opaque), or None when it has none.

    ``shape`` is ``read_image``'s result's: an alpha that does not fit it (a picture turned by its EXIF
    orientation, which OpenCV applies to colour reads only) is left out rather than misplaced. ``size``
    (H, W, ...): resized to it, for a painting of another size than the picture.
    """
    if Path(path).suffix.lower() not in ALPHA_SUFFIXES:
        return None
    try:
        raw = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:  # too large to decode: no alpha rather than a crash
        return None
    if raw is None or raw.ndim != 3 or raw.shape[2] != 4 or raw.shape[:2] != tuple(shape[:2]):
        return None
    alpha = raw[..., 3]
    if alpha.dtype != np.uint8:  # 16-bit PNG/TIFF
        alpha = (alpha.astype(np.float32) * (255.0 / np.iinfo(alpha.dtype).max)).round().astype(np.uint8)
    if alpha.min() == 255:
        return None
    if size is not None and tuple(size[:2]) != alpha.shape:
        alpha = cv2.resize(alpha, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return alpha


def check_image_suffix(path: str | Path) -> None:
    """A VidstyleError when OpenCV has no writer for ``path``'s suffix (no suffix: written as PNG)."""
    suffix = Path(path).suffix
    if suffix and not cv2.haveImageWriter("x" + suffix):
        raise VidstyleError(f"cannot write {suffix} images; end the output name in .png, .jpg, .webp, .tif or .bmp")


def write_image(path: str | Path, rgb: np.ndarray, overwrite: bool = True, alpha: np.ndarray | None = None) -> Path:
    """Write (H, W, 3) uint8 RGB to ``path`` through a temporary file; ``alpha`` (H, W) uint8 is kept in PNG
    and WebP and dropped elsewhere (JPEG, BMP, TIFF)."""
    path = Path(path)
    check_image_suffix(path)
    check_target(path, overwrite)
    suffix = path.suffix or ".png"
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if alpha is not None and suffix.lower() in ALPHA_WRITERS:
        bgr = np.dstack([bgr, alpha])
    ok, buf = cv2.imencode(suffix, bgr)
    if not ok:
        raise VidstyleError(f"cannot encode an image as {path.suffix!r}")
    with AtomicPath(path) as atomic:
        buf.tofile(str(atomic.tmp))
    return path
