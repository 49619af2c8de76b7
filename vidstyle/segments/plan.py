"""Where one video is cut: its frames split into parts at keyframes, or at the calmest moment near each even split.

``plan_segments`` reads the video's packets (``probe_video``: every frame's timestamp, in presentation order,
and which are keyframes) and cuts them into N parts of about equal length; each part starts ``overlap`` frames
early (its warm-up, painted for the stabiliser's history and thrown away). With ``calm``, each cut goes to
the pair of frames with the lowest warping error of the input itself (``input_changes``), within a few
seconds of the even split: the least visible place for a seam.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av

from ..errors import VidstyleError
from ..io.protocols import is_url


@dataclass
class Part:
    """Frames ``start`` .. ``end`` - 1 (presentation order) are kept; painting starts at ``warm``."""

    index: int
    start: int
    end: int
    warm: int
    warm_pts: int
    start_pts: int
    end_pts: int | None  # pts of frame ``end`` (excluded); None for the last part

    @property
    def frames(self) -> int:
        return self.end - self.start


@dataclass
class SegmentPlan:
    src: str
    frames: int
    time_base: Fraction
    keyframes: list[int]  # frame indices (presentation order) of the keyframes
    parts: list[Part]
    overlap: int

    @property
    def cuts(self) -> list[int]:
        """Index of the first frame of every part but the first."""
        return [p.start for p in self.parts[1:]]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["time_base"] = str(self.time_base)
        return d


class NoSegments(VidstyleError):
    """This input cannot be cut into segments (it is painted in one piece instead)."""


def cannot_segment(src: str, dst: Path) -> str | None:
    """Why ``src`` cannot be painted in segments into ``dst``, or None when it can."""
    from ..io.reader import VideoReader

    if is_url(src):
        return "--segments needs a local file"
    if dst.suffix.lower() == ".gif":
        return "GIF output"
    with VideoReader(src) as r:
        if not r.info.timestamps:
            return "the input has no timestamps"
    return None


def probe_video(src: str | Path) -> tuple[list[int], list[int], Fraction]:
    """(sorted pts of every frame, indices of the keyframes among them, time base), from packets only."""
    from ..io.protocols import open_container
    from ..io.reader import TimestampJumps, main_video_stream

    c = open_container(src)
    try:
        vs = main_video_stream(c)
        if vs is None:
            raise VidstyleError(f"{src} has no video stream")
        tb = vs.time_base or Fraction(1, 90000)
        header = int(vs.frames or 0)  # counts the frames an edit list discards too
        pts, keys = [], set()
        discarded = 0
        # joined files: the reader moves each piece to follow on, but parts seek by the file's own timestamps
        jumps = TimestampJumps.of(c, [vs])
        for p in c.demux(vs):
            if p.dts is None and p.pts is None:  # the flush packet
                continue
            if jumps is not None:
                jumps(p)
                if jumps.jumps:
                    raise NoSegments("the timestamps jump (joined files, or a recording restarted)")
            if p.pts is None:
                raise NoSegments("video packets without timestamps")
            if p.is_discard:  # cut away by an edit list (as ffmpeg -ss -c copy writes): never shown
                discarded += 1
                continue
            pts.append(int(p.pts))
            if p.is_keyframe:
                keys.add(int(p.pts))
    except av.error.FFmpegError as e:  # truncated or corrupt: one piece, where the reader copes with it
        raise NoSegments(f"the file could not be read to the end ({e.strerror or e})") from None
    finally:
        c.close()
    pts.sort()
    if header and len(pts) + discarded < header * 0.98 - 1:
        raise NoSegments(f"the file ends early ({len(pts)} of the {header} frames its header announces)")
    if len(set(pts)) != len(pts):
        raise NoSegments("repeated video timestamps")
    return pts, [i for i, t in enumerate(pts) if t in keys], tb


CALM_SECONDS = 2.0  # how far a calm cut may move from the even split, at most (and a quarter of a part)
CALM_SIDE = 160  # the frames' long side when their motion is measured
KEYFRAME_TIE = 1.05  # a keyframe wins over a calmer plain frame by less than this


def plan_segments(src: str | Path, segments: int, overlap: int = 30, calm: bool = False) -> SegmentPlan:
    """Cut ``src`` into at most ``segments`` parts of about equal length.

    By default each cut is the keyframe nearest the even split, within half a part (a plain frame where
    none is near): a part then starts decoding at its first frame. With ``calm`` (painting with the
    temporal stabiliser, whose parts start decoding ``overlap`` frames early anyway) each cut is the
    calmest moment within ``CALM_SECONDS`` (and a quarter of a part) of the even split: the frame pair
    that the input's own short-term warping error says changes least, measured on frames decoded around
    the split only. A seam there is the least visible, as a cut in an edit is; a keyframe wins a near tie.
    """
    pts, keys, tb = probe_video(src)
    n = len(pts)
    if n == 0:
        raise VidstyleError(f"{src}: no video frame to paint")
    want = max(1, min(int(segments), n))
    cuts: list[int] = []
    inner = [k for k in keys if 0 < k < n]
    keyset = set(inner)
    seconds = float((pts[-1] - pts[0]) * tb) if n > 1 else 0.0
    fps = (n - 1) / seconds if seconds > 0 else 0.0
    for i in range(1, want):
        ideal = round(i * n / want)
        slack = n / want / 2
        after = cuts[-1] if cuts else 0
        reach = int(min(slack / 2, CALM_SECONDS * fps))
        if calm and reach >= 1:
            lo, hi = max(after + 1, ideal - reach), min(n - 1, ideal + reach)
            change = input_changes(src, pts, lo, hi) if hi > lo else {}
            c = min(change, key=lambda k: (change[k] / (KEYFRAME_TIE if k in keyset else 1), abs(k - ideal)),
                    default=ideal)
        else:
            near = [k for k in inner if abs(k - ideal) <= slack and k > after]
            c = min(near, key=lambda k: (abs(k - ideal), k)) if near else ideal
        if c > after and c < n:
            cuts.append(c)
    bounds = [0] + cuts + [n]
    parts = []
    for i in range(len(bounds) - 1):
        s, e = bounds[i], bounds[i + 1]
        w = max(0, s - max(0, int(overlap)))
        parts.append(Part(i, s, e, w, pts[w], pts[s], pts[e] if e < n else None))
    return SegmentPlan(str(src), n, tb, keys, parts, int(overlap))


def input_changes(src: str | Path, pts: list[int], lo: int, hi: int) -> dict[int, float]:
    """{t: short-term warping error of the input's own pair (t-1, t)} for t in ``lo`` .. ``hi``: how much
    the picture changes beyond what moves (``vidstyle.evaluate``'s metric, DIS flow), at ``CALM_SIDE``."""
    from ..evaluate import FlowBank, warping_errors
    from ..io.reader import VideoReader
    from ..stylizer import shrunk_to

    with VideoReader(src) as r:
        end = pts[hi + 1] if hi + 1 < len(pts) else None
        frames = [shrunk_to(f.rgb, CALM_SIDE) for f in r.frames(start_pts=pts[lo - 1], end_pts=end)]
    if len(frames) != hi - lo + 2:  # a range that does not decode as probed: no preference
        return {}
    return dict(zip(range(lo, hi + 1), warping_errors(frames, FlowBank(frames), 1)))
