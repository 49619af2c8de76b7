"""Still images: read to RGB uint8, write atomically."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import VidstyleError
from .writer import AtomicPath, check_target

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


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
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise VidstyleError(f"cannot read image {path}: not an image OpenCV can decode")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def check_image_suffix(path: str | Path) -> None:
    """A VidstyleError when OpenCV has no writer for ``path``'s suffix (no suffix: written as PNG)."""
    suffix = Path(path).suffix
    if suffix and not cv2.haveImageWriter("x" + suffix):
        raise VidstyleError(f"cannot write {suffix} images; end the output name in .png, .jpg, .webp, .tif or .bmp")


def write_image(path: str | Path, rgb: np.ndarray, overwrite: bool = True) -> Path:
    path = Path(path)
    check_image_suffix(path)
    check_target(path, overwrite)
    ok, buf = cv2.imencode(path.suffix or ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
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
