"""Painting one part of a video (in a worker) and joining the parts into the output by stream copy.

Every part file starts with a keyframe (x264 starts each file with an IDR); the frame on each side of a seam
is encoded near lossless (``x264_part_params``), so that the keyframe does not show as a jump. ``join_parts``
remuxes the parts' video packets without re-encoding, timestamps kept, and copies the audio, subtitles and
metadata once from the original, as ``vidstyle run`` does.
"""
from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import av

from ..batch.job import StylizeJob
from ..errors import VidstyleError
from ..io.codecs import X264_CRF
from .plan import Part


def _checked(frames: Iterator, src: str, part: Part) -> Iterator:
    """Decoding errors as one line that says what to do."""
    try:
        yield from frames
    except av.error.FFmpegError as e:
        raise VidstyleError(f"{src}: part {part.index} could not be decoded ({e.strerror or e}); "
                            "paint it without --segments") from None


MP4_PART_CODECS = {"libx264", "libx265", "libvpx-vp9", "h264_nvenc", "hevc_nvenc"}


def part_suffix(dst: Path, codec: str | None) -> str:
    """The container of the parts of ``dst``: MP4 for the codecs it holds, whatever ``dst`` is. Matroska and
    MPEG-TS parts would not join: with B-frames Matroska gives a part's first packets no dts, and each TS
    part shifts its own timestamps to keep them positive."""
    from ..io.codecs import default_codec, resolve_codec

    enc = resolve_codec(codec or default_codec(dst))
    return ".mp4" if enc in MP4_PART_CODECS else (dst.suffix or ".mp4")


SEAM_QP_BELOW_CRF = 10  # the frames on each side of a seam: x264 quantiser = CRF - 10 (docs/SCALING.md)


def x264_part_params(part: Part, crf: int | None) -> str:
    """The ``x264-params`` of a part's encoder.

    ``stitchable=1`` keeps the headers independent of the content, so that the parts join by stream copy.
    Every part but the first starts with a keyframe, whose fresh compression noise is a jump against the
    P-frames before it; a zone gives the frame on each side of a seam a quantiser 10 below the CRF, so
    that both are near lossless and the seam's warping error comes down to the one-piece encode's.
    """
    q = max(0, (X264_CRF if crf is None else crf) - SEAM_QP_BELOW_CRF)
    n, first, last = part.frames, part.index == 0, part.end_pts is None
    frames = sorted({*([] if first else [0]), *([] if last else [n - 1])})
    zones = "/".join(f"{f},{f},q={q}" for f in frames)
    return "stitchable=1" + (f":zones={zones}" if zones else "")


def paint_part(job: StylizeJob, src: str, part: Part, part_path: str,
               progress: Callable[[int, int], None] | None = None) -> dict:
    """Paint ``part`` of ``src`` into ``part_path`` (video only, original timestamps); runs in a worker.

    Decoding starts at the part's warm-up (``overlap`` frames before it, painted for the stabiliser's history
    and not written) and ends before the next part's first frame: ``api.paint_stream``, as for a whole video.
    """
    from ..api import paint_stream
    from ..io.codecs import default_codec, resolve_codec
    from ..io.reader import VideoReader
    from ..io.writer import VideoWriter

    t0 = time.perf_counter()
    enc = job.encode
    with VideoReader(src, deinterlace=job.read.deinterlace) as reader:
        info = reader.info
        stylizer = job.stylizer()
        stab = job.temporal.stabilizer()
        out_size = stylizer.out_size
        size = info.stored_size(out_size) if out_size else (info.width, info.height)
        codec = resolve_codec(enc.codec or default_codec(Path(part_path)))
        x264 = {"x264-params": x264_part_params(part, enc.crf)} if codec == "libx264" else None
        writer = VideoWriter(part_path, info, size=size, codec=codec, crf=enc.crf, preset=enc.preset,
                             overwrite=True, src=src, chroma=enc.chroma, encoder_options=x264)

        def all_frames(n: int) -> None:
            if n != part.frames:
                raise VidstyleError(f"{src}: part {part.index} decoded {n} of its {part.frames} frames")

        frames = reader.frames(start_pts=part.warm_pts if part.warm > 0 else None, end_pts=part.end_pts)
        warm = paint_stream(_checked(frames, src, part), writer, stylizer, stabilizer=stab,
                            out_size=size if out_size else None,
                            batch_size=job.batch_size or stylizer.auto_batch(info.height, info.width),
                            start_pts=part.start_pts, progress=progress, total=part.frames, check=all_frames)
    return {"index": part.index, "frames": writer.frames_written, "warm": warm,
            "seconds": round(time.perf_counter() - t0, 3), "device": str(stylizer.device),
            "size": list(writer.size), "notes": list(writer.notes),
            "temporal_strength": getattr(stab, "weight", None),
            "style": getattr(stylizer.model, "label", stylizer.name)}


def _packets(c, streams: list[int] | None = None, retime: Callable | None = None) -> Iterator:
    """The packets of ``streams`` (indices; default the first video stream) of an open container, each passed
    to ``retime`` first (``TimestampJumps``: timed as the reader times the frames)."""
    want = [c.streams[i] for i in streams] if streams is not None else [c.streams.video[0]]
    for p in c.demux(*want):
        if p.dts is None:  # flush packets carry nothing
            continue
        if retime is not None:
            retime(p)
        yield p


def join_parts(src: str, part_paths: list[str | Path], dst: str | Path, *, overwrite: bool = False) -> list[str]:
    """Remux the parts' video (no re-encoding) with ``src``'s audio, subtitles and metadata into ``dst``.

    A ``VideoWriter`` in stream-copy mode does the writing, so the output follows ``vidstyle run``'s rules:
    the other streams are copied when the container takes the codec (audio re-encoded otherwise,
    subtitles dropped otherwise, each with a note), the display matrix and the container and stream
    metadata are copied, and the file appears only when complete. Returns the writer's notes (the
    source's own notes are left to the parts).
    """
    from ..io.protocols import open_container
    from ..io.reader import TimestampJumps, VideoReader, copied_streams
    from ..io.writer import VideoWriter

    with VideoReader(src) as r:
        info = replace(r.info, notes=[])
    opened: list = []
    writer = None
    try:
        heads = []
        for p in part_paths:  # kept in ``opened`` one by one, so that a failure closes the ones before it
            heads.append(open_container(p))
            opened.append(heads[-1])
        template = heads[0].streams.video[0]
        extradata = template.codec_context.extradata
        for i, h in enumerate(heads[1:], 1):
            if h.streams.video[0].codec_context.extradata != extradata:
                raise VidstyleError(f"part {i} was encoded with other codec headers than part 0; "
                                    "it cannot be joined by stream copy")
        orig = open_container(src)
        opened.append(orig)
        others = copied_streams(orig)
        writer = VideoWriter(dst, info, copy_video=template, copy_streams=others, overwrite=overwrite, src=src)

        def video() -> Iterator:
            for h in heads:
                yield from _packets(h)

        counter = itertools.count()

        def keyed(gen, order):
            for p in gen:
                t = p.dts if p.dts is not None else p.pts
                yield (float(t * p.time_base) if t is not None else 0.0, order, next(counter), p)

        sources = [keyed(video(), 0)]
        if others:
            sources.append(keyed(_packets(orig, [s.index for s in others], TimestampJumps.of(orig, others)), 1))
        last_dts = None
        for _, _, _, p in heapq.merge(*sources):
            if p.stream.type != "video":
                writer.queue_packet(p)
                continue
            if last_dts is not None and p.dts is not None and p.dts <= last_dts:
                fixed = last_dts + 1
                if p.pts is not None and fixed > p.pts:
                    raise VidstyleError(f"cannot join the parts of {Path(dst).name}: their decoding timestamps overlap")
                p.dts = fixed
            last_dts = p.dts if p.dts is not None else last_dts
            writer.write_packet(p)
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        for c in opened:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - closing never masks the first error
                pass
    return writer.notes
