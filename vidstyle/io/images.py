"""Still images: read to RGB uint8, write atomically."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import VidstyleError
from .atomic import AtomicPath, check_target

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
ALPHA_SUFFIXES = {".png", ".webp", ".tif", ".tiff"}  # formats that may hold transparency
ALPHA_WRITERS = {".png", ".webp"}  # OpenCV's TIFF writer does not mark a 4th channel as alpha
MAX_IMAGE_PIXELS = 1 << 30  # OpenCV's default decode limit (CV_IO_MAX_IMAGE_PIXELS); larger raises cv2.error


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def find_images(folder: Path) -> list[Path]:
    """Every image below ``folder`` (recursive), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image(p))


def read_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; a VidstyleError when missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise VidstyleError(f"image not found: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
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
    atomic = AtomicPath(path)
    try:
        buf.tofile(str(atomic.tmp))
        atomic.commit()
    except BaseException:
        atomic.discard()
        raise
    return path
