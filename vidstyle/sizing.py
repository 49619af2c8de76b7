"""The sizes a frame is painted at, whether painting it fits in memory, and the cores there are: shared by both painters
(``stylizer.Stylizer`` on PyTorch, ``light.painter.FramePainter`` without it). No PyTorch here.
"""
from __future__ import annotations

import os

import numpy as np

# Memory a CPU painting takes, beyond the model: per pixel painted (the network's activations; measured with the
# bundled network on OpenVINO, 1024x1024 to 2048x2048 frames: about 250 B) and per pixel of the frame (its float
# copies on the way in and out). A painting that would take more than FREE_SHARE of the free memory is refused.
BYTES_PER_PAINTED_PIXEL = 320
BYTES_PER_FRAME_PIXEL = 40
FREE_SHARE = 0.8


def free_memory() -> int | None:
    """Bytes of memory this machine can still give (Linux's MemAvailable), or None where it cannot be told."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def cpu_threads() -> int:
    """The cores this process may run on (what OpenVINO and PyTorch use by default)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _shrunk(h: int, w: int, s: float) -> tuple[int, int]:
    """(h, w) times ``s``, rounded, at least 4 px a side: the last step of ``scaled_size`` and ``working_size``."""
    return max(4, round(h * s)), max(4, round(w * s))


def scaled_size(h: int, w: int, max_side: int | None) -> tuple[int, int]:
    """(h, w) shrunk so the longer side is at most ``max_side`` (never enlarged).

    Differs from ``working_size`` (which can target the short side instead) and ``flow.raft_work_size``
    (pixel cap, 128 px minimum, multiples of 8): only the longer side is capped.
    """
    if not max_side or max(h, w) <= max_side:
        return h, w
    return _shrunk(h, w, max_side / max(h, w))


def shrunk_to(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    """(H, W, 3) uint8 ``rgb`` resized (area) to ``scaled_size``: itself when it already fits."""
    import cv2

    h, w = rgb.shape[:2]
    hh, ww = scaled_size(h, w, max_side)
    return cv2.resize(rgb, (ww, hh), interpolation=cv2.INTER_AREA) if (hh, ww) != (h, w) else rgb


def working_size(h: int, w: int, *, max_side: int | None = None, scale: int | None = None,
                 brush: float = 1.0) -> tuple[int, int]:
    """The size a (h, w) frame is painted at (never larger than the frame).

    ``max_side``: the longer side, when given (it overrides the rest). Otherwise ``scale``, the short
    side of the pictures the model learnt on, divided by ``brush``: at that size the strokes are as
    large, relative to the picture, as they were in training, whatever the video's resolution
    (a 1080p frame painted at full size would get strokes a quarter as large). ``brush`` 2 paints
    strokes twice as large; 0.5 half as large.

    Differs from ``scaled_size`` (which it uses for ``max_side``) by shrinking the short side to the model's
    scale, and from ``flow.raft_work_size`` by having no pixel cap, no 128 px minimum and no rounding to 8.
    """
    if max_side:
        return scaled_size(h, w, max_side)
    if not scale or brush <= 0:
        return h, w
    short = max(8, round(scale / brush))
    if min(h, w) <= short:
        return h, w
    return _shrunk(h, w, short / min(h, w))


def memory_refusal(n: int, h: int, w: int, work: tuple[int, int], max_side: int | None, free: int | None) -> str | None:
    """Why painting ``n`` (h, w) frames at ``work`` (hh, ww) on the CPU does not fit in ``free`` bytes (one line),
    or None when it fits or ``free`` is unknown (``--max-side 8000`` on a large picture)."""
    hh, ww = work
    need = n * (hh * ww * BYTES_PER_PAINTED_PIXEL + h * w * BYTES_PER_FRAME_PIXEL)
    if free is None or need <= FREE_SHARE * free:
        return None
    what = "lower --max-side" if max_side else "raise --brush"
    return (f"painting {w}x{h} at {ww}x{hh} needs about {need / 1e9:.1f} GB of memory and "
            f"{free / 1e9:.1f} GB are free; {what}, or paint a smaller picture")
