"""Read and write the video track's display matrix in MP4/MOV files by patching the ``tkhd`` box.

The library no longer uses this module: the reader takes the display matrix from the
decoded frames' side data and the writer stores it with ``VideoStream.set_display_matrix``
(PyAV 18), which also works for MKV and WebM. It is kept only because the test helper
``tests/conftest.py:make_clip(rotation=...)`` still imports it; once that helper calls
``stream.set_display_rotation(rotation)`` instead, this file can be deleted.

The matrix is nine big-endian 32-bit numbers (a b u / c d v / x y w; 16.16 fixed
point except u, v, w in 2.30), as ISO/IEC 14496-12 defines it.
"""
from __future__ import annotations

import math
import struct
from pathlib import Path

MP4_SUFFIXES = {".mp4", ".m4v", ".mov", ".3gp"}
_CONTAINERS = {b"moov", b"trak", b"mdia"}
IDENTITY = (0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _boxes(f, start: int, end: int):
    """Yield (type, box_start, payload_start, box_end) for the boxes in [start, end)."""
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        size, kind = struct.unpack(">I4s", f.read(8))
        header = 8
        if size == 1:
            size = struct.unpack(">Q", f.read(8))[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header:
            return
        yield kind, pos, pos + header, pos + size
        pos += size


def _video_tkhd_offsets(f, file_size: int) -> list[int]:
    """File offsets of the 36-byte matrix in each video track's tkhd."""
    found = []
    for kind, _, body, end in _boxes(f, 0, file_size):
        if kind != b"moov":
            continue
        for tkind, _, tbody, tend in _boxes(f, body, end):
            if tkind != b"trak":
                continue
            matrix_at, is_video = None, False
            for k, _, b, e in _boxes(f, tbody, tend):
                if k == b"tkhd":
                    f.seek(b)
                    version = f.read(1)[0]
                    # version/flags 4, times+id+reserved+duration, reserved 8, layer/group/volume/reserved 8
                    matrix_at = b + 4 + (32 if version == 1 else 20) + 8 + 8
                elif k == b"mdia":
                    for hk, _, hb, _ in _boxes(f, b, e):
                        if hk == b"hdlr":
                            f.seek(hb + 8)
                            is_video = f.read(4) == b"vide"
            if is_video and matrix_at is not None:
                found.append(matrix_at)
    return found


def read_display_matrix(path: str | Path) -> tuple[int, ...] | None:
    """The first video track's matrix, or None when the file is not MP4/MOV or has none."""
    path = Path(path)
    if path.suffix.lower() not in MP4_SUFFIXES or not path.is_file():
        return None
    try:
        with open(path, "rb") as f:
            offsets = _video_tkhd_offsets(f, path.stat().st_size)
            if not offsets:
                return None
            f.seek(offsets[0])
            return struct.unpack(">9i", f.read(36))
    except (OSError, struct.error, IndexError):
        return None


def write_display_matrix(path: str | Path, matrix: tuple[int, ...]) -> bool:
    """Patch every video track's tkhd matrix in place; False when there is none."""
    path = Path(path)
    with open(path, "r+b") as f:
        offsets = _video_tkhd_offsets(f, path.stat().st_size)
        for at in offsets:
            f.seek(at)
            f.write(struct.pack(">9i", *matrix))
    return bool(offsets)


def rotation_matrix(degrees: float) -> tuple[int, ...]:
    """A display matrix that rotates by ``degrees`` (the angle VideoFrame.rotation reports)."""
    r = math.radians(degrees)
    c, s = round(math.cos(r) * 65536), round(math.sin(r) * 65536)
    return (c, -s, 0, s, c, 0, 0, 0, 0x40000000)
