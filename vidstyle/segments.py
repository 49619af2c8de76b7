"""One long video painted by several workers: cut at keyframes, painted in parallel, joined by stream copy.

    job = StylizeJob("udnie", temporal=True)
    r = stylize_segments("film.mp4", "film.udnie.mp4", job, segments=4)              # local processes
    r = stylize_segments("film.mp4", None, job, segments=16, executor="ray://head:10001")

1. ``plan_segments`` reads the video packets and cuts the frames, in presentation order, into N parts
   at the keyframes nearest to equal lengths (at a plain frame when no keyframe is near). With the
   temporal stabiliser, each cut goes instead to the calmest moment near the even split (the input's own
   warping error, on a few seconds decoded small there): the least visible place for a seam.
2. Each part is painted by ``paint_part`` (a process, or a Ray task asking for one GPU or some CPUs):
   its ``VideoReader`` decodes the part's range (seeking to the keyframe before its first frame, and
   deinterlacing as a whole run does), starts painting ``overlap`` frames early so that
   the temporal stabiliser has its history at the seam, throws those warm-up frames away, and encodes
   the rest with their own timestamps into a part file (video only). Every part file starts with a
   keyframe (x264 starts each file with an IDR); the frame on each side of a seam is encoded near
   lossless (``x264_part_params``), so that the keyframe does not show as a jump.
3. ``join_parts`` remuxes the parts' video packets into the output without re-encoding, timestamps
   kept, and copies the audio, subtitles and metadata once from the original, as ``vidstyle run`` does.

``seam_errors`` measures the short-term warping error (``vidstyle.evaluate``) of the pairs across the
seams against the median inside the parts.
"""
from __future__ import annotations

import contextlib
import copy
import glob
import heapq
import itertools
import os
import shutil
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np

from .api import RunResult, default_output
from .batch import StylizeJob, connect_ray, error_line, task_resources, throttled_progress, wait_ray_tasks
from .errors import VidstyleError
from .io.reader import is_url
from .io.writer import X264_CRF


# -- the plan ------------------------------------------------------------------------------------
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
    from .io.reader import VideoReader

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
    from .io.reader import TimestampJumps, main_video_stream, open_container

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
    from .evaluate import FlowBank, warping_errors
    from .io.reader import VideoReader
    from .stylizer import shrunk_to

    with VideoReader(src) as r:
        end = pts[hi + 1] if hi + 1 < len(pts) else None
        frames = [shrunk_to(f.rgb, CALM_SIDE) for f in r.frames(start_pts=pts[lo - 1], end_pts=end)]
    if len(frames) != hi - lo + 2:  # a range that does not decode as probed: no preference
        return {}
    return dict(zip(range(lo, hi + 1), warping_errors(frames, FlowBank(frames), 1)))


# -- painting one part (in a worker) -----------------------------------------------------------------
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
    from .io.writer import default_codec, resolve_codec

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
    """Paint ``part`` of ``src`` into ``part_path`` (video only, original timestamps); runs in a worker."""
    from .io.reader import VideoReader
    from .io.writer import VideoWriter, default_codec, resolve_codec
    from .pipeline import run_stages

    t0 = time.perf_counter()
    opts = job.video_options
    with VideoReader(src, deinterlace=opts.get("deinterlace", True)) as reader:
        info = reader.info
        stylizer = job.stylizer()
        stab = job.make_stabilizer()
        size = info.stored_size(job.out_size) if job.out_size else (info.width, info.height)
        codec = resolve_codec(job.codec or default_codec(Path(part_path)))
        x264 = {"x264-params": x264_part_params(part, job.crf)} if codec == "libx264" else None
        writer = VideoWriter(part_path, info, size=size, codec=codec, crf=job.crf, preset=job.preset,
                             overwrite=True, src=src, chroma=opts.get("chroma", "420"), encoder_options=x264)
        bs = job.batch_size or stylizer.auto_batch(info.height, info.width)

        def paint(batch):
            return stylizer.paint_batch([f.rgb for f in batch], stab, size if job.out_size else None)

        # from the first frame to paint (the warm-up before the seam) up to the next part's first frame
        frames = reader.frames(start_pts=part.warm_pts if part.warm > 0 else None, end_pts=part.end_pts)
        warm = 0
        try:
            for frame, rgb in run_stages(_checked(frames, src, part), paint, batch_size=bs):
                if frame.pts >= part.start_pts:
                    writer.write(rgb, frame.pts)
                    if progress:
                        progress(writer.frames_written, part.frames)
                else:
                    warm += 1
            n = writer.frames_written
            if n != part.frames:
                raise VidstyleError(f"{src}: part {part.index} decoded {n} of its {part.frames} frames")
            writer.close()
        except BaseException:
            writer.abort()
            raise
    return {"index": part.index, "frames": n, "warm": warm, "seconds": round(time.perf_counter() - t0, 3),
            "device": str(stylizer.device), "size": list(writer.size), "notes": list(writer.notes),
            "temporal_strength": getattr(stab, "weight", None),
            "style": getattr(stylizer.model, "label", stylizer.name)}


_progress_queue = None  # in a worker process: where progress goes (set by _init_worker)


def _init_worker(queue) -> None:
    """ProcessPoolExecutor initializer: keep the progress queue (a plain queue travels only at process start)."""
    global _progress_queue
    _progress_queue = queue


def _part_worker(job, src, part, part_path) -> dict:
    """ProcessPoolExecutor entry point: progress goes through the queue of ``_init_worker``."""
    queue = _progress_queue
    progress = None if queue is None else throttled_progress(lambda n, total: queue.put((part.index, n)))
    return paint_part(job, src, part, part_path, progress)


# -- joining -------------------------------------------------------------------------------------
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
    from .io.reader import TimestampJumps, VideoReader, copied_streams, open_container
    from .io.writer import VideoWriter

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


# -- the whole -----------------------------------------------------------------------------------
def _parts_prefix(dst: Path) -> str:
    """The name of ``dst``'s parts folders up to the PID of their run: ``.NAME.parts-PID``, beside ``dst``."""
    return f".{dst.stem}.parts-"


@contextlib.contextmanager
def _parts_folder(parts_dir: Path, keep: bool):
    """Create the hidden parts folder; remove it on the way out, whatever happened, unless ``keep``."""
    parts_dir.mkdir(exist_ok=True)
    try:
        yield parts_dir
    finally:
        if not keep:
            shutil.rmtree(parts_dir, ignore_errors=True)


def remove_stale_parts(dst: Path) -> list[Path]:
    """Delete the parts folders left beside ``dst`` by runs whose process is gone (killed, or run with
    ``keep_parts``); returns the folders removed. A folder of a running process is left alone."""
    from .io.writer import pid_running

    prefix = _parts_prefix(dst)
    removed = []
    for d in dst.parent.glob(glob.escape(prefix) + "*"):
        pid = d.name[len(prefix):]
        if not pid.isdigit() or not d.is_dir() or d.is_symlink():
            continue
        if int(pid) != os.getpid() and not pid_running(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


@dataclass
class SegmentResult(RunResult):
    parts: list = field(default_factory=list)  # per part: index, start, end, warm, frames, seconds
    cuts: list = field(default_factory=list)


_RAY_PART: object | None = None


def _ray_part_task(ray):
    global _RAY_PART
    if _RAY_PART is None:
        @ray.remote(max_calls=0)  # keep the worker, and the Stylizer it built, for the next part
        def paint_part_task(job, src, part, part_path, sink, tag):
            return paint_part(job, src, part, part_path,
                              throttled_progress(lambda n, total: sink.update.remote(tag, n, total)))

        _RAY_PART = paint_part_task
    return _RAY_PART


@contextlib.contextmanager
def _sigint_ignored():
    """Processes started in here ignore SIGINT: a Python started with SIGINT ignored keeps ignoring it.

    Ctrl-C then reaches only this process, which stops the workers (``_stop_workers``), instead of every
    worker printing a KeyboardInterrupt traceback (spawned workers take seconds to import torch).
    Only the main thread can change handlers; starting the processes takes milliseconds.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's workers (after Ctrl-C or a failed part); their part files go with the parts folder."""
    stop = getattr(pool, "terminate_workers", None)  # Python 3.14
    if stop is not None:
        stop()
        return
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        if proc.is_alive():
            proc.terminate()


def _run_parts_local(job, src, plan, paths, workers, report) -> list[dict]:
    if workers <= 1:
        return [paint_part(job, src, p, paths[p.index], lambda n, total, i=p.index: report(i, n))
                for p in plan.parts]
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # torch and threads: never fork
    queue = ctx.Queue()
    results: dict[int, dict] = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(queue,)) as pool:
        pending: set = set()
        try:
            with _sigint_ignored():  # the workers start in submit
                futs = {pool.submit(_part_worker, job, src, p, paths[p.index]): p.index for p in plan.parts}
            pending = set(futs)
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                while not queue.empty():
                    i, n = queue.get_nowait()
                    report(i, n)
                for f in done:
                    results[futs[f]] = f.result()
        except BaseException:
            for f in pending:
                f.cancel()
            _stop_workers(pool)
            raise
    return [results[i] for i in range(len(plan.parts))]


def _run_parts_ray(job, src, plan, paths, executor, report, cpus_per_task, gpus_per_task, max_retries,
                   ray_init) -> list[dict]:
    from .batch import _ray_defs

    ray, started = connect_ray(executor, ray_init)
    try:
        _, ProgressSink = _ray_defs(ray)
        task = _ray_part_task(ray)
        sink = ProgressSink.remote()
        job_ref = ray.put(job)
        opts = task_resources(ray, cpus_per_task, gpus_per_task)
        refs = {task.options(max_retries=max_retries, retry_exceptions=False, **opts).remote(
            job_ref, src, p, paths[p.index], sink, p.index): p.index for p in plan.parts}
        results: dict[int, dict] = {}

        def on_ready(ref) -> None:
            try:
                results[refs[ref]] = ray.get(ref)
            except ray.exceptions.RayTaskError as e:
                cause = getattr(e, "cause", None)
                raise (cause if isinstance(cause, VidstyleError) else
                       VidstyleError(f"part {refs[ref]} failed: {error_line(cause or e)}")) from None
            except ray.exceptions.RayError as e:
                raise VidstyleError(f"part {refs[ref]} failed: {error_line(e)}") from None

        # a failed part stops the others: without it the video cannot be joined
        wait_ray_tasks(ray, refs, sink, lambda i, n, total: report(i, n), on_ready, cancel_on_error=True)
        return [results[i] for i in range(len(plan.parts))]
    finally:
        if started:
            ray.shutdown()


def stylize_segments(src: str | Path, dst: str | Path | None, job: StylizeJob, *, segments: int = 2,
                     overlap: int = 30, executor: str = "local", workers: int | None = None,
                     overwrite: bool = False, progress: Callable[[int, int], None] | None = None,
                     cpus_per_task: int | None = None, gpus_per_task: float = 1, max_retries: int = 3,
                     ray_init: dict | None = None, keep_parts: bool = False,
                     calm_cuts: bool | None = None) -> SegmentResult:
    """Paint one video as ``segments`` parts in parallel and join them; same output as ``job(src, dst)``.

    ``overlap``: frames painted before each seam and thrown away, so that the temporal stabiliser has
    its history there (only with ``job.temporal``: without it no frame depends on the ones before).
    ``calm_cuts`` (default: with ``job.temporal``): each cut at the calmest moment near the even split
    (``plan_segments``), not at the nearest keyframe.
    ``executor``: ``"local"`` (``workers`` processes, default one per part up to the CPU count; 1 paints
    the parts one after the other in this process), ``"ray"`` or a Ray address (one task per part).
    ``progress(frames_done, frames_total)`` as for ``stylize_video``. The parts are written to a hidden
    folder beside the output and removed at the end (``keep_parts`` keeps them, for inspection, until the next
    run to the same output, which removes the folders of runs that are gone: ``remove_stale_parts``).
    A URL, or ``segments`` <= 1, is painted in one piece.
    """
    from .io.writer import check_target, stop_signals

    src = str(src)
    dst = Path(dst) if dst is not None else default_output(src, job.label)
    check_target(dst, overwrite, src)
    t0 = time.perf_counter()
    why = None if segments > 1 else ""
    if why is None:
        why = cannot_segment(src, dst)
    if why is None:
        try:
            plan = plan_segments(src, segments, overlap if job.temporal else 0, calm=bool(job.temporal) if calm_cuts is None else calm_cuts)
        except NoSegments as e:
            why = str(e)
    if why is None and len(plan.parts) < 2:
        why = "the video has a single frame"
    if why is not None:
        r = job(src, str(dst), overwrite=overwrite, progress=progress)
        res = SegmentResult(**{k: r[k] for k in RunResult.__dataclass_fields__ if k in r})
        if why:
            res.notes.append(f"painted in one piece, not in segments: {why}")
        return res
    remove_stale_parts(dst)
    parts_dir = dst.parent / f"{_parts_prefix(dst)}{os.getpid()}"
    codec = getattr(job, "codec", None)  # a paint job of the caller's may not have one
    suffix = part_suffix(dst, codec)
    if codec is None and hasattr(job, "codec"):  # the parts take the output's default codec, not their container's
        from .io.writer import default_codec

        job = copy.copy(job)
        job.codec = default_codec(dst)
    paths = [str(parts_dir / f"part{p.index:04d}{suffix}") for p in plan.parts]
    done = [0] * len(plan.parts)

    def report(i: int, n: int) -> None:
        done[i] = n
        if progress:
            progress(sum(done), plan.frames)

    # SIGTERM and SIGHUP raise Terminated here too (not only while this process writes a file), so that the
    # workers are stopped and the parts folder removed whatever this process is doing when one comes
    with stop_signals(), _parts_folder(parts_dir, keep_parts):
        if executor == "local":
            n_workers = workers or min(len(plan.parts), os.cpu_count() or 1)
            results = _run_parts_local(job, src, plan, paths, n_workers, report)
        else:
            results = _run_parts_ray(job, src, plan, paths, executor, report, cpus_per_task, gpus_per_task,
                                     max_retries, ray_init)
        notes = join_parts(src, paths, dst, overwrite=overwrite)
    seconds = time.perf_counter() - t0
    n = sum(r["frames"] for r in results)
    first = results[0]
    notes = sorted(set(first["notes"])) + notes
    parts = [{"index": p.index, "start": p.start, "end": p.end, "warm": p.start - p.warm,
              "frames": r["frames"], "seconds": r["seconds"]} for p, r in zip(plan.parts, results)]
    return SegmentResult(output=str(dst), frames=n, seconds=round(seconds, 3),
                         fps=round(n / seconds, 3) if seconds else 0.0, style=first["style"], device=first["device"],
                         width=first["size"][0], height=first["size"][1], complete=True, notes=notes,
                         temporal_strength=first.get("temporal_strength"), parts=parts, cuts=plan.cuts)


# -- measuring the seams -------------------------------------------------------------------------
def _frames_in(path: str | Path, wanted: set[int] | None, max_side: int | None) -> dict[int, np.ndarray]:
    """{index: (H, W, 3) uint8} of the frames in ``wanted`` (every frame when None), scaled to ``max_side``."""
    from .stylizer import shrunk_to

    got = {}
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if wanted is None or i in wanted:
                got[i] = shrunk_to(f.to_ndarray(format="rgb24"), max_side)
            if wanted is not None and (not wanted or i >= max(wanted)):
                break
    return got


def seam_errors(src: str | Path, output: str | Path, cuts: list[int], *, window: int = 6,
                max_side: int | None = 360, whole: bool = False) -> dict:
    """Short-term warping error (``vidstyle.evaluate``) across each seam vs inside the parts.

    For every cut c, the pairs (t-1, t) for t in [c - window, c + window) are measured with DIS flow on
    the input frames; the pair (c-1, c) is the seam, the others are inside a part. Returns
    ``{"seams": [{"cut", "error", "inside_median"}], "inside_median", "worst_ratio"}``. With ``whole``,
    every pair of the video is measured (once; the seams' figures come from the same pairs):
    ``"parts_median"`` is the median of all the pairs that do not cross a seam, and
    ``"worst_ratio_parts"`` the worst seam over it.
    """
    wanted = None if whole else {i for c in cuts for i in range(max(0, c - window - 1), c + window)}
    inputs, outputs = _frames_in(src, wanted, max_side), _frames_in(output, wanted, max_side)
    if not whole:
        return seam_table(inputs, outputs, cuts, window=window)
    n = min(len(inputs), len(outputs))
    pairs = _pair_errors(inputs, outputs, list(range(n)))
    table = _seams_from_pairs(pairs, cuts, window)
    seam_pairs = set(cuts)
    med = float(np.median([e for t, e in pairs.items() if t not in seam_pairs]))
    worst = max((s["error"] for s in table["seams"]), default=None)
    table.update(parts_median=med, worst_ratio_parts=(worst / med) if (worst is not None and med) else None)
    return table


def seam_table(inputs: dict[int, np.ndarray], outputs: dict[int, np.ndarray], cuts: list[int], *,
               window: int = 6) -> dict:
    """``seam_errors`` on frames already decoded: {frame index: (H, W, 3) uint8} of the input and output."""
    pairs = {}
    for c in cuts:
        idx = [i for i in range(max(0, c - window - 1), c + window) if i in inputs and i in outputs]
        if c in idx and c - 1 in idx:
            pairs.update(_pair_errors(inputs, outputs, idx))
    return _seams_from_pairs(pairs, cuts, window)


def _pair_errors(inputs: dict, outputs: dict, idx: list[int]) -> dict[int, float]:
    """{t: warping error of the outputs' pair (idx before t, t)} over the consecutive frames ``idx``."""
    from .evaluate import FlowBank, warping_errors

    errs = warping_errors([outputs[i] for i in idx], FlowBank([inputs[i] for i in idx]), 1)
    return dict(zip(idx[1:], errs))


def _seams_from_pairs(pairs: dict[int, float], cuts: list[int], window: int) -> dict:
    """The seams' table from the measured pairs {t: error of (t-1, t)}."""
    seams, inside = [], []
    for c in cuts:
        if c not in pairs:
            continue
        here = [pairs[t] for t in range(max(1, c - window), c + window) if t != c and t in pairs]
        inside += here
        seams.append({"cut": c, "error": pairs[c], "inside_median": float(np.median(here)) if here else None})
    med = float(np.median(inside)) if inside else None
    worst = max((s["error"] for s in seams), default=None)
    return {"seams": seams, "inside_median": med,
            "worst_ratio": (worst / med) if (worst is not None and med) else None}


__all__ = ["NoSegments", "Part", "SegmentPlan", "cannot_segment", "SegmentResult", "input_changes", "join_parts",
           "paint_part", "plan_segments", "probe_video", "remove_stale_parts", "seam_errors", "seam_table",
           "stylize_segments"]
