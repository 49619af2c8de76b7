"""Any picture as a style: a local file or a URL read to RGB uint8, with one-line errors for what cannot be used.

``read_picture`` reads the file once (its size checked from the header first, ``images.check_pixels``), refuses a
truncated JPEG or PNG before OpenCV sees it, decodes with OpenCV (EXIF orientation applied, grey, CMYK and 16-bit
pictures to 8-bit RGB), paints transparent pixels white and takes an animation's first frame. A URL is read
through FFmpeg (its bytes, as FFmpeg's ``data`` format gives them) only when the caller allows its protocol.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import re
import struct
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable
from urllib.parse import urlsplit

import av
import cv2
import numpy as np

from ..errors import VidstyleError
from .images import IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, MAX_PIXELS, check_pixels
from .protocols import NETWORK_PROTOCOLS, input_protocol, is_url, local_path

PICTURE_SUFFIXES = IMAGE_SUFFIXES | {".gif", ".jpe", ".jfif", ".pbm", ".pnm", ".pxm", ".dib", ".jp2", ".avif",
                                    ".sr", ".ras"}
MIN_SIDE = 16  # a smaller picture cannot carry a style: error
MAX_BYTES = 1 << 30  # a style picture's file is read into memory whole
HEADER_BYTES = 1 << 20  # what check_pixels is given: a JPEG may put 64 KB of EXIF first

_PNG = b"\x89PNG\r\n\x1a\n"
_ALPHA_MAGIC = (_PNG[:4], b"RIFF", b"GIF8", b"II*\x00", b"MM\x00*")  # PNG, WebP, GIF, TIFF: may hold transparency
# The next JPEG marker: 0xFF then a byte that is not a stuffed 0x00, a fill 0xFF, TEM, a restart marker or SOI.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\x01\xd0-\xd8\xff]")
# The smallest GIF (1x1): whether this OpenCV reads GIFs at all (4.11 and later).
_TINY_GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
             b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
_QUIET = threading.Lock()  # one thread at a time turns OpenCV's log off and back on


@dataclass(frozen=True)
class Picture:
    rgb: np.ndarray  # (H, W, 3) uint8 RGB, EXIF orientation applied
    notes: tuple[str, ...]  # one-line notes for the user, e.g. "x.gif is animated: its first frame is the style"
    digest: str  # sha256 hex of the file's bytes (the cache key of its style vector)


def is_picture(spec: str | Path) -> bool:
    """Whether ``spec`` names a picture: a path with a picture's suffix (any case), or a URL whose path ends in one."""
    s = str(spec)
    path = urlsplit(s).path if is_url(s) else local_path(s)
    return PurePosixPath(path.replace("\\", "/")).suffix.lower() in PICTURE_SUFFIXES


def read_picture(spec: str | Path, *, max_pixels: int | None = None, allow_protocols: Iterable[str] = ()) -> Picture:
    """The picture at ``spec`` (a path, ``file:PATH`` or a URL) as a ``Picture``; a one-line VidstyleError naming it
    when it is missing, not a picture, truncated, under ``MIN_SIDE`` or over ``max_pixels`` (default ``MAX_PIXELS``,
    checked from its header before decoding), or a URL whose protocol is not in ``allow_protocols``."""
    s = str(spec)
    if is_url(s):
        name, data = s, _fetch(s, allow_protocols)
        if not data:
            raise VidstyleError(f"style picture {name} is empty (0 bytes)")
        _check_size(name, data[:HEADER_BYTES], max_pixels)
    else:
        name = local_path(s)
        data = _read_file(Path(name), max_pixels)
    rgb, notes = _decode(name, data, MAX_PIXELS if max_pixels is None else max_pixels)
    return Picture(rgb, tuple(notes), hashlib.sha256(data).hexdigest())


def _check_size(name, head: bytes, max_pixels: int | None) -> None:
    """``images.check_pixels`` for a style picture: its advice is a smaller picture (no option raises this limit:
    a style is read at a few hundred pixels anyway)."""
    try:
        check_pixels(name, head, max_pixels)  # type: ignore[arg-type]  # a URL is only printed
    except VidstyleError as e:
        raise VidstyleError(str(e).replace("; --max-pixels raises it", "; a style needs far fewer: shrink it "
                                           "first")) from None


def _read_file(path: Path, max_pixels: int | None) -> bytes:
    """The bytes of a local file, read once: its header is checked (``check_pixels``) before the rest is read."""
    if not path.exists():
        raise VidstyleError(f"style picture not found: {path}")
    if path.is_dir():
        raise VidstyleError(f"style picture {path} is a folder, not a picture")
    if not path.is_file():
        raise VidstyleError(f"style picture {path} is not a regular file")
    try:
        with open(path, "rb") as f:
            size = path.stat().st_size
            if size == 0:
                raise VidstyleError(f"style picture {path} is empty (0 bytes)")
            if size > MAX_BYTES:
                raise VidstyleError(f"style picture {path} is {size / 1e9:.1f} GB, over the "
                                    f"{MAX_BYTES / 1e9:.1f} GB a picture may take")
            head = f.read(HEADER_BYTES)
            _check_size(path, head, max_pixels)
            return head + f.read()
    except OSError as e:
        raise VidstyleError(f"cannot read style picture {path}: {e.strerror or e}") from None


def _fetch(url: str, allow_protocols: Iterable[str]) -> bytes:
    """The bytes at ``url`` through FFmpeg (at most ``MAX_BYTES``), when its protocol is in ``allow_protocols``;
    the network protocols under it (tls, tcp, ...) are allowed with it, as ``protocols.open_container`` does."""
    allowed = {p.strip().lower() for p in allow_protocols if p.strip()}
    protocol = input_protocol(url)
    if protocol not in allowed:
        raise VidstyleError(f"reading a style picture from {url} needs --allow-protocol {protocol}")
    whitelist = ",".join(sorted(set(NETWORK_PROTOCOLS) | allowed))
    chunks, total = [], 0
    try:
        with av.open(url, format="data", container_options={"protocol_whitelist": whitelist},
                     timeout=(10.0, 10.0)) as container:
            for packet in container.demux():
                total += packet.size
                if total > MAX_BYTES:
                    raise VidstyleError(f"style picture {url} is over the {MAX_BYTES / 1e9:.1f} GB "
                                        f"a picture may take")
                chunks.append(bytes(packet))
    except av.error.FFmpegError as e:
        raise VidstyleError(f"cannot read style picture {url}: {e.strerror or type(e).__name__}") from None
    return b"".join(chunks)


def _decode(name: str, data: bytes, max_pixels: int) -> tuple[np.ndarray, list[str]]:
    """(H, W, 3) uint8 RGB of a picture file's bytes and the notes for the user; a VidstyleError naming ``name``
    when it is truncated, not a picture, or too small or large."""
    reason = _truncation(data)
    if reason:
        raise VidstyleError(f"style picture {name} is truncated ({reason}); copy or download it again")
    buf = np.frombuffer(data, np.uint8)
    notes, alpha = [], None
    rgb = _imdecode(name, buf, cv2.IMREAD_COLOR)
    if rgb is not None:
        rgb = cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB)
        if data[:4] in _ALPHA_MAGIC:
            alpha = _alpha(buf, rgb.shape)
    elif data[:4] == b"GIF8" and not _opencv_reads_gif():  # FFmpeg's decoder instead
        rgba = _gif_first_frame(data)
        if rgba is not None:
            rgb, alpha = np.ascontiguousarray(rgba[..., :3]), rgba[..., 3]
            alpha = None if alpha.min() == 255 else alpha
    if rgb is None:
        raise VidstyleError(f"cannot read style picture {name}: not a picture OpenCV can decode")
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise VidstyleError(f"style picture {name} is {w}x{h}, too small to use as a style: "
                            f"at least {MIN_SIDE}x{MIN_SIDE}")
    if h * w > max_pixels:  # a format whose size check_pixels cannot read from the header
        raise VidstyleError(f"style picture {name} is {w}x{h} ({h * w / 1e6:.0f} megapixels), over the limit of "
                            f"{max_pixels / 1e6:g} megapixels; --max-pixels raises it")
    if _animated(data):
        notes.append(f"{name} is animated: its first frame is the style")
    if alpha is not None:
        rgb = _over_white(rgb, alpha)
        notes.append(f"{name} has transparent pixels: they are painted white")
    return rgb, notes


def _imdecode(name: str, buf: np.ndarray, flags: int) -> np.ndarray | None:
    """cv2.imdecode, None where it cannot decode; a VidstyleError over OpenCV's own pixel limit."""
    try:
        with _opencv_quiet():
            return cv2.imdecode(buf, flags)
    except cv2.error as e:  # e.g. over OpenCV's pixel limit (2^30): an assertion, not None
        if "CV_IO_MAX_IMAGE_PIXELS" in str(e):
            raise VidstyleError(f"cannot read style picture {name}: too large for OpenCV to decode "
                                f"(over {MAX_IMAGE_PIXELS} pixels)") from None
        return None


@contextlib.contextmanager
def _opencv_quiet():
    """OpenCV's own log off while it decodes (its "[ERROR] imdecode_ ... can't read data" and TIFF warnings for a
    broken file; our error says it in one line), restored after. libjpeg's and libpng's own messages go to stderr
    past it: truncated files, the common case, never reach them (``_truncation``)."""
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    if log is None:  # an OpenCV build without the logging API
        yield
        return
    with _QUIET:
        old = log.getLogLevel()
        log.setLogLevel(log.LOG_LEVEL_SILENT)
        try:
            yield
        finally:
            log.setLogLevel(old)


def _truncation(data: bytes) -> str | None:
    """Why a JPEG or PNG is cut short (OpenCV may decode such a file with grey rows, or print libpng errors), or
    None: complete, or another format (left to OpenCV)."""
    if data[:8] == _PNG and b"IEND" not in (kind for kind, _ in _png_chunks(data)):
        return "no IEND chunk at the end of the PNG"
    if data[:2] == b"\xff\xd8" and not _jpeg_complete(data):
        return "no end-of-image marker at the end of the JPEG"
    return None


def _png_chunks(data: bytes) -> list[tuple[bytes, int]]:
    """(type, offset of its data) of each chunk of a PNG in order, up to IEND; a chunk cut by the end is left out."""
    chunks, i = [], len(_PNG)
    while i + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[i:i + 8])
        if i + 12 + length > len(data):
            break
        chunks.append((kind, i + 8))
        if kind == b"IEND":
            break
        i += 12 + length
    return chunks


def _jpeg_complete(data: bytes) -> bool:
    """Whether a JPEG's first picture reaches its end-of-image marker (FFD9). Its segments are skipped by their
    length and the coded data between them searched for the next marker, so the end marker of an EXIF thumbnail
    does not count, nor does data appended after the picture matter (a phone's motion photo)."""
    i, n = 2, len(data)
    while True:
        m = _JPEG_MARKER.search(data, i)
        if m is None:
            return False
        i = m.start()
        if data[i + 1] == 0xD9:
            return True
        if i + 4 > n:
            return False
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]


def _animated(data: bytes) -> bool:
    """Whether a GIF, PNG (APNG) or WebP holds more than one frame."""
    if data[:4] == b"GIF8":
        return _gif_frames(data) > 1
    if data[:8] == _PNG:
        actl = [offset for kind, offset in _png_chunks(data) if kind == b"acTL"]
        return bool(actl) and struct.unpack(">I", data[actl[0]:actl[0] + 4])[0] > 1
    if data[:4] == b"RIFF" and data[8:16] == b"WEBPVP8X" and len(data) > 20:
        return bool(data[20] & 0x02)  # the animation flag
    return False


@functools.cache
def _opencv_reads_gif() -> bool:
    """Whether this OpenCV has a GIF reader; without one, a GIF's first frame comes from FFmpeg."""
    return _imdecode("a 1x1 GIF", np.frombuffer(_TINY_GIF, np.uint8), cv2.IMREAD_COLOR) is not None


def _gif_frames(data: bytes, stop: int = 2) -> int:
    """How many frames a GIF has, counting up to ``stop`` (packets, as FFmpeg's GIF demuxer splits it); 1 when
    FFmpeg cannot tell."""
    try:
        with av.open(io.BytesIO(data), format="gif") as container:
            n = 0
            for packet in container.demux(video=0):
                n += packet.size > 0
                if n >= stop:
                    break
            return max(n, 1)
    except (av.error.FFmpegError, IndexError):
        return 1


def _gif_first_frame(data: bytes) -> np.ndarray | None:
    """(H, W, 4) uint8 RGBA of a GIF's first frame through FFmpeg, or None when it cannot decode it."""
    try:
        with av.open(io.BytesIO(data), format="gif") as container:
            for frame in container.decode(video=0):
                return frame.to_ndarray(format="rgba")
    except (av.error.FFmpegError, IndexError):
        return None
    return None


def _alpha(buf: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """A picture's transparency as (H, W) uint8 (255 opaque), turned by its EXIF orientation as OpenCV turns the
    colours (it does not for the 4-channel read); None when it has none, or none that fits ``shape``."""
    read_meta = getattr(cv2, "imdecodeWithMetadata", None)  # OpenCV 4.12 and later
    try:
        with _opencv_quiet():
            if read_meta is not None:
                raw, kinds, blobs = read_meta(buf, cv2.IMREAD_UNCHANGED)
                exif = [bytes(b) for k, b in zip(np.ravel(kinds), blobs) if k == cv2.IMAGE_METADATA_EXIF]
            else:
                raw, exif = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED), []
    except cv2.error:
        return None
    if raw is None or raw.ndim != 3 or raw.shape[2] != 4:
        return None
    alpha = raw[..., 3]
    if alpha.dtype != np.uint8:  # 16-bit PNG/TIFF, float TIFF
        top = np.iinfo(alpha.dtype).max if alpha.dtype.kind in "ui" else 1.0
        alpha = np.clip(alpha.astype(np.float32) * (255.0 / top), 0, 255).round().astype(np.uint8)
    if alpha.min() == 255:
        return None
    alpha = _orient(alpha, _exif_orientation(exif[0]) if exif else 1)
    return alpha if alpha.shape == tuple(shape[:2]) else None


def _exif_orientation(exif: bytes) -> int:
    """The Orientation tag (1..8) of EXIF data (a TIFF directory, maybe after "Exif\\0\\0"); 1 when it has none."""
    if exif[:6] == b"Exif\x00\x00":
        exif = exif[6:]
    if exif[:4] not in (b"II*\x00", b"MM\x00*"):
        return 1
    order = "<" if exif[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack(order + "I", exif[4:8])
        (n,) = struct.unpack(order + "H", exif[ifd:ifd + 2])
        for k in range(n):
            tag, kind, _, value = struct.unpack(order + "HHI4s", exif[ifd + 2 + 12 * k:ifd + 14 + 12 * k])
            if tag == 0x0112 and kind == 3:
                (orientation,) = struct.unpack(order + "H", value[:2])
                return orientation if 1 <= orientation <= 8 else 1
    except struct.error:
        return 1
    return 1


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """``a`` (H, W, ...) turned and mirrored for an EXIF orientation, as OpenCV's ApplyExifOrientation does."""
    if orientation >= 5:
        a = a.swapaxes(0, 1)  # 5..8 transpose first
    flips = {2: (slice(None), slice(None, None, -1)), 3: (slice(None, None, -1),) * 2, 4: (slice(None, None, -1),),
             6: (slice(None), slice(None, None, -1)), 7: (slice(None, None, -1),) * 2, 8: (slice(None, None, -1),)}
    if orientation in flips:
        a = a[flips[orientation]]
    return np.ascontiguousarray(a)


def _over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 ``rgb`` composited over white by ``alpha`` (H, W) uint8, in integers (no float copy)."""
    a = alpha[..., None].astype(np.uint16)
    return ((rgb * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)
