"""Video source: PyAV demux + threaded decode into RGB frames with their timestamps.

Frames come out exactly as stored (no auto-rotation); the stream's rotation and
display matrix, pixel aspect ratio and colour tags are reported in ``VideoInfo``
so the writer can carry them. Interlaced video is deinterlaced with FFmpeg's
``bwdif`` filter (one output frame per input frame). Packets of the other
streams (audio, subtitles) are handed to a callback untouched, for remuxing; chapters and
attachments are read into ``VideoInfo``; any other stream is dropped with a note. Timestamps
that are missing, repeat or go backwards are replaced, so that the frames come out strictly
increasing (as FFmpeg's best-effort timestamp: the decoding timestamp, else the frame rate). A range of
the video can be decoded on its own (``frames(start_pts=..., end_pts=...)``), with the same frames
as a whole run gives.

Inputs are opened with an FFmpeg protocol whitelist: local files may use only
``file``, URLs only the network protocols in ``NETWORK_PROTOCOLS``, unless the
caller widens the list (``allow_protocols``).
"""
from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator

import av
import av.filter
import numpy as np

from ..errors import VidstyleError
from .protocols import open_container

log = logging.getLogger("vidstyle")

# How many skipped packets are logged one by one before only the count is kept.
_LOGGED_ERRORS = 5
# The frame rate assumed for a video that states none (the reader's and the writer's).
DEFAULT_FPS = Fraction(30)
_INTERLACED_FIELD_ORDERS = {2, 3, 4, 5}  # AV_FIELD_TT, BB, TB, BT


@dataclass
class Frame:
    """One decoded picture: RGB uint8 (H, W, 3) and its presentation timestamp."""

    rgb: np.ndarray
    pts: int | None
    time_base: Fraction
    index: int

    @property
    def time(self) -> float | None:
        return None if self.pts is None else float(self.pts * self.time_base)


@dataclass
class VideoInfo:
    """What a sink needs to know about the source.

    Colour tags are FFmpeg's enum values (AVColorPrimaries, AVColorTransferCharacteristic,
    AVColorSpace, AVColorRange); the defaults mean "unspecified".
    """

    width: int
    height: int
    time_base: Fraction
    fps: Fraction
    frames: int  # from the container header; 0 when unknown
    duration: float | None  # seconds, None when unknown
    rotation: int = 0  # degrees, as VideoFrame.rotation reports it
    display_matrix: tuple[int, ...] | None = None  # 9 ints in FFmpeg's AV_FRAME_DATA_DISPLAYMATRIX layout
    pix_fmt: str = "yuv420p"
    codec: str = ""
    metadata: dict = field(default_factory=dict)  # container metadata
    stream_metadata: dict = field(default_factory=dict)
    sar: Fraction | None = None  # pixel (sample) aspect ratio; None for square pixels or unknown
    color_primaries: int = 2
    color_trc: int = 2
    colorspace: int = 2
    color_range: int = 0
    interlaced: bool = False  # the source is interlaced (the frames come out deinterlaced unless turned off)
    timestamps: bool = True  # False: the container has none; pts are counted at ``fps``
    notes: list[str] = field(default_factory=list)  # things the user should know about the source
    chapters: list[dict] = field(default_factory=list)  # as Container.chapters() gives them
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)  # (file name, MIME type, data)

    def stored_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(w, h) as the video is shown -> (w, h) of the frames as stored: swapped for a quarter turn, so that
        ``--out-size 1080x1920`` of a phone's portrait video (stored 1920x1080, turned 90) is shown 1080x1920."""
        return (size[1], size[0]) if self.rotation % 180 == 90 else size


class TimestampJumps:
    """FFmpeg's repair of timestamp jumps, for the formats FFmpeg marks as allowing them (MPEG-TS, HLS,
    Ogg ...): files joined with ``cat``, or a recorder restarted. Call it on every demuxed packet, in order.

    When a video or audio packet's dts falls more than ``BACK`` seconds behind the end of its stream's
    previous packet, or jumps more than ``AHEAD`` seconds past it, a new *piece* begins: it is moved to
    follow the latest end of any stream, and each stream's later packets get that piece's offset once
    that stream too has jumped (a demuxer can hand out the last packet of the piece before after the
    first of the next one). Other streams (subtitles) follow a piece that video or audio began when their
    own time goes back. ``jumps`` counts the pieces after the first. Small overlaps are left to the
    writer, which keeps each stream's dts increasing.

    These formats' timestamps are a broadcast clock, not a time in the video: a recording can start at 1.4 s
    or 10 hours. As FFmpeg does, the file is moved to start at 0 (``start``, seconds: ``container.start_time``),
    which keeps the streams' offsets to each other.
    """

    BACK = Fraction(1, 10)
    AHEAD = 10

    @classmethod
    def of(cls, container, streams) -> "TimestampJumps | None":
        """One for ``streams`` of ``container`` where its format allows jumps, else None (nothing to repair)."""
        if not container.format.flags & av.format.Flags.ts_discont.value:
            return None
        start = container.start_time  # AV_TIME_BASE (microseconds); None when unknown
        return cls(streams, Fraction(start or 0, 1_000_000))

    def __init__(self, streams, start: Fraction = Fraction(0)):
        self.watched = {s.index for s in streams if s.type in ("video", "audio")}
        self.offsets = [-Fraction(start)]  # seconds added to the packets of each piece
        self.origin = Fraction(start)
        self.piece: dict[int, int] = {}  # stream index -> the piece its packets are in now
        self.end: dict[int, Fraction] = {}  # stream index -> where its last packet ended (seconds, moved)

    @property
    def jumps(self) -> int:
        return len(self.offsets) - 1

    def __call__(self, packet) -> None:
        if packet.dts is None or packet.time_base is None:
            return
        tb, i = packet.time_base, packet.stream.index
        raw = packet.dts * tb
        piece = self.piece.get(i, 0)
        t, end = raw + self.offsets[piece], self.end.get(i)
        if end is not None and t + self.BACK < end and i not in self.watched:
            if piece + 1 < len(self.offsets):  # a piece that video or audio began
                piece += 1
                t, end = raw + self.offsets[piece], None
        elif end is not None and i in self.watched and (t + self.BACK < end or t > end + self.AHEAD):
            piece += 1
            if piece == len(self.offsets):  # the first stream to enter the next piece sets where it goes
                self.offsets.append(max(self.end[k] for k in self.watched if k in self.end) - raw)
            t, end = raw + self.offsets[piece], None  # the stream's end starts again in its new piece
        self.piece[i] = piece
        shift = round(self.offsets[piece] / tb)
        if shift:
            packet.dts += shift
            if packet.pts is not None:
                packet.pts += shift
        self.end[i] = max(end if end is not None else t, t + (packet.duration or 0) * tb)


def is_cover(stream) -> bool:
    """Whether a video stream is a still picture attached to the file (cover art), not video."""
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def main_video_stream(container):
    """The video stream to paint: the first that is not cover art; None when there is none."""
    return next((s for s in container.streams.video if not is_cover(s)), None)


def copied_streams(container) -> list:
    """The streams besides the video that a writer copies: audio and subtitles, in container order."""
    return [s for s in container.streams if s.type in ("audio", "subtitle")]


def frame_display_matrix(frame: av.VideoFrame) -> tuple[int, ...] | None:
    """The frame's display matrix (9 ints, FFmpeg layout) from its side data, or None.

    Read from a tiny copy of the frame (the copy carries the side data): PyAV's side-data objects and
    their frame refer to each other, and that cycle, on a frame of the decoder's, kept FFmpeg's
    decoding threads alive until the next garbage collection: two threads per reader, by the hundred
    in `live --loop` over a short clip. The copy's cycle holds only its own 16x16 pixels.
    """
    data = frame.reformat(width=16, height=16, format="gray").side_data.get("DISPLAYMATRIX")
    return struct.unpack("9i", bytes(data)) if data is not None else None


def filter_frames(graph: av.filter.Graph, frame: av.VideoFrame | None) -> list[av.VideoFrame]:
    """Push ``frame`` (None: end of stream) through a one-sink filter graph; the frames it gives back now."""
    graph.push(frame)
    out = []
    while True:
        try:
            out.append(graph.pull())
        except (av.error.BlockingIOError, av.error.EOFError):
            return out


def deinterlace_graph(frame: av.VideoFrame, time_base: Fraction) -> av.filter.Graph:
    """A filter graph (buffer -> bwdif -> buffersink) for frames like ``frame``.

    One progressive frame comes out per frame in (pts kept, in a halved time base); only
    frames flagged interlaced are deinterlaced, in the field order each frame carries.
    """
    graph = av.filter.Graph()
    src = graph.add("buffer", video_size=f"{frame.width}x{frame.height}", pix_fmt=frame.format.name,
                    time_base=str(time_base), pixel_aspect="1/1", colorspace=str(int(frame.colorspace)),
                    range=str(int(frame.color_range)))
    bwdif = graph.add("bwdif", mode="send_frame", parity="auto", deint="interlaced")
    sink = graph.add("buffersink")
    src.link_to(bwdif)
    bwdif.link_to(sink)
    graph.configure()
    return graph


class VideoReader:
    """Iterate the frames of the first video stream of a file or URL.

    >>> with VideoReader("in.mp4") as r:
    ...     for frame in r.frames():
    ...         frame.rgb  # (H, W, 3) uint8

    ``deinterlace``: run interlaced input through bwdif (default); False gives the frames as stored.
    ``allow_protocols``: FFmpeg protocols to allow beyond the default whitelist.
    A corrupt packet is skipped with a warning (``decode_errors`` counts them); ``incomplete``
    says why reading stopped early, when it did (a truncated file).
    ``frames(start_pts=..., end_pts=...)`` decodes one range of the video (seeking to it).
    """

    def __init__(self, src: str | Path, threads: bool = True, *, deinterlace: bool = True,
                 allow_protocols: Iterable[str] = ()):
        self.src = str(src)
        self.container = open_container(self.src, allow_protocols)
        stream = main_video_stream(self.container)
        if stream is None:
            cover = " (only a cover picture)" if self.container.streams.video else ""
            self.container.close()
            raise VidstyleError(f"{self.src} has no video stream{cover}")
        self.stream = stream
        if threads:
            self.stream.thread_type = "AUTO"
        self.deinterlace = deinterlace
        self.decoded = 0
        self.decode_errors = 0  # corrupt packets skipped
        self.discarded = 0  # video packets an edit list cuts away (their frames never come out)
        self._fixed_pts = False  # a timestamp was replaced (noted once)
        self._jumps: TimestampJumps | None = None  # made by _events where the format allows jumps
        self.incomplete: str | None = None  # why reading stopped early, if it did
        self.info = self._header_info()
        self._graph: av.filter.Graph | None = None
        self._last_pts: int | None = None
        self._source = self._events()
        self._buffer: list = []
        self._prime()

    def _header_info(self) -> VideoInfo:
        """What the container header says about the video stream."""
        st = self.stream
        cc = st.codec_context
        duration = None
        if st.duration is not None and st.time_base:
            duration = float(st.duration * st.time_base)
        elif self.container.duration:
            duration = self.container.duration / av.time_base
        timestamps = not (self.container.format.flags & av.format.Flags.no_timestamps.value)
        # a raw stream's average rate is the demuxer's default (25); the guess reads the codec's timing
        rates = (st.average_rate, st.guessed_rate) if timestamps else (st.guessed_rate, st.average_rate)
        fps = Fraction(rates[0] or rates[1] or DEFAULT_FPS)
        info = VideoInfo(
            width=cc.width,
            height=cc.height,
            # without timestamps, frames are numbered at the frame rate
            time_base=(st.time_base or Fraction(1, 90000)) if timestamps else 1 / fps,
            fps=fps,
            frames=int(st.frames or 0),
            duration=duration,
            pix_fmt=cc.pix_fmt or "yuv420p",
            codec=cc.name,
            metadata=dict(self.container.metadata),
            stream_metadata=dict(st.metadata),
            timestamps=timestamps,
            chapters=self.container.chapters(),
            attachments=[(a.metadata.get("filename", f"attachment{a.index}"), a.mimetype or "", a.data)
                         for a in self.container.streams if a.type == "attachment"],
        )
        dropped = self._dropped_streams()
        if dropped:
            info.notes.append(f"dropped {', '.join(dropped)}: only the first video stream, audio, subtitles, "
                              "attachments and chapters are kept")
        return info

    def _dropped_streams(self) -> list[str]:
        """'stream N (type codec)' for every stream that is neither read nor copied (data, other video).

        Streams the demuxer itself discards (the text track that holds an MP4's chapters) are left out.
        """
        kept = {self.stream.index, *(s.index for s in self.other_streams)}
        return [f"stream {s.index} ({'cover picture' if s.type == 'video' and is_cover(s) else s.type} {s.name})"
                for s in self.container.streams
                if s.index not in kept and s.type != "attachment" and s.discard != av.stream.Discard.all]

    @property
    def other_streams(self) -> list:
        """Audio and subtitle streams, in container order (the ones a writer copies)."""
        return copied_streams(self.container)

    def _events(self):
        """Yield the other streams' packets and the decoded video frames, in demux order.

        A corrupt video packet is skipped; a demux error (a truncated or unreadable file)
        ends the stream, sets ``incomplete`` and flushes the frames the decoder still holds.
        """
        demux = self.container.demux(self.stream, *self.other_streams)
        jumps = self._jumps = TimestampJumps.of(self.container, [self.stream, *self.other_streams])
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                return
            except av.error.FFmpegError as e:
                self.incomplete = f"{e.strerror or e} after frame {self.decoded}"
                yield from self._decode(None)
                return
            if jumps is not None:
                jumps(packet)
            if packet.stream is not self.stream:
                if packet.dts is not None:
                    yield packet
                continue
            if packet.is_discard:  # decoded (later frames may need it), but its frame is dropped
                self.discarded += 1
            yield from self._decode(packet)

    def _decode(self, packet) -> list:
        """Decode one video packet (None: flush); a packet the decoder rejects is counted and skipped."""
        try:
            return self.stream.decode(packet)
        except av.error.FFmpegError as e:
            self.decode_errors += 1
            if self.decode_errors <= _LOGGED_ERRORS:
                more = "; further ones are only counted" if self.decode_errors == _LOGGED_ERRORS else ""
                log.warning("%s: skipped a corrupt video packet at %s (%s)%s", self.src, self._where(packet),
                            e.strerror or e, more)
            return []

    def _where(self, packet) -> str:
        """A packet's place for a message: its time, or the frame count so far."""
        if packet is not None and packet.pts is not None and packet.time_base:
            return f"{float(packet.pts * packet.time_base):.3f} s"
        return f"frame {self.decoded}"

    def _prime(self) -> None:
        """Read up to the first frame now, so rotation, colour and interlacing are known before any sink is set up."""
        for item in self._source:
            self._buffer.append(item)
            if isinstance(item, av.VideoFrame):
                self._inspect(item)
                break

    def _inspect(self, frame: av.VideoFrame) -> None:
        """Fill in ``info`` from the first decoded frame."""
        info, st = self.info, self.stream
        info.rotation = int(round(frame.rotation or 0))
        info.display_matrix = frame_display_matrix(frame)
        info.width, info.height = frame.width, frame.height
        sar = st.sample_aspect_ratio or st.codec_context.sample_aspect_ratio
        info.sar = Fraction(sar) if sar and sar != 1 else None
        info.color_primaries = int(frame.color_primaries)
        info.color_trc = int(frame.color_trc)
        info.colorspace = int(frame.colorspace)
        info.color_range = int(frame.color_range)
        info.interlaced = bool(frame.interlaced_frame) or st.codec_context.field_order in _INTERLACED_FIELD_ORDERS
        if info.interlaced and self.deinterlace:
            info.notes.append("interlaced input: deinterlaced with bwdif")
        elif info.interlaced:
            info.notes.append("interlaced input painted as it is (deinterlacing is off)")
        if not info.timestamps:
            info.notes.append(f"the input has no timestamps: frames are timed at {float(info.fps):g} fps")

    def _progressive(self, frame: av.VideoFrame | None) -> list[av.VideoFrame]:
        """Frames ready to paint for one decoded frame (None: the end), through bwdif when deinterlacing."""
        if not self._deinterlacing:
            return [] if frame is None else [frame]
        if self._graph is None:
            if frame is None:
                return []
            self._graph = deinterlace_graph(frame, self.stream.time_base or Fraction(1, 90000))
        return filter_frames(self._graph, frame)

    def _timestamp(self, frame: av.VideoFrame) -> int:
        """The frame's pts in ``info.time_base``, always above the previous frame's.

        Counted at the frame rate when the input has no timestamps. A pts that is missing, repeats or
        goes back (B-frames in AVI; joined files are moved by ``TimestampJumps`` before this) is replaced
        by the frame's dts when that is above the previous pts, else by the previous pts plus one frame;
        noted once.
        """
        if not self.info.timestamps:
            return self.decoded
        pts = self._rescaled(frame, frame.pts)
        last = self._last_pts
        if pts is None or (last is not None and pts <= last):
            if pts is not None and not self._fixed_pts:
                self._fixed_pts = True
                note = (f"the input's timestamps repeat or go back (first at frame {self.decoded}): "
                        "those frames are timed after the previous one")
                log.info("%s: %s", self.src, note)
                self.info.notes.append(note)
            dts = self._rescaled(frame, frame.dts)
            step = max(1, round(1 / (self.info.fps * self.info.time_base)))
            if dts is not None and (last is None or dts > last):
                pts = dts
            else:  # one frame after the last known one
                pts = self.decoded * step if last is None else last + step
        self._last_pts = pts
        return pts

    def _rescaled(self, frame: av.VideoFrame, t: int | None) -> int | None:
        """A timestamp of ``frame`` in ``info.time_base`` (bwdif hands frames back in its own, halved, time base)."""
        tb = frame.time_base or self.info.time_base
        if t is None or tb == self.info.time_base:
            return t
        return round(t * tb / self.info.time_base)

    @property
    def _deinterlacing(self) -> bool:
        return self.info.interlaced and self.deinterlace

    def frames(self, on_packet: Callable | None = None, *, start_pts: int | None = None,
               end_pts: int | None = None) -> Iterator[Frame]:
        """Decode the video stream; packets of ``other_streams`` go to ``on_packet`` as they are demuxed.

        ``start_pts`` / ``end_pts`` (in ``info.time_base``) give only the frames with
        ``start_pts <= pts < end_pts``. With ``start_pts`` the reader seeks to the keyframe before it
        (before the frame ahead of it when deinterlacing, so that bwdif sees the same neighbours as in a
        whole run) and decodes from there; ``on_packet`` then gets the other streams' packets from that
        point on, not cut to the range. Frame indices count from 0 in the range. The truncation check
        (frames announced by the header) only applies to the whole video.
        """
        ranged = start_pts is not None or end_pts is not None
        if ranged and not self.info.timestamps:
            raise VidstyleError(f"{self.src} has no timestamps: a range of it cannot be decoded")
        if start_pts is not None:
            self._seek(int(start_pts))
        tb = self.info.time_base

        def items():
            while self._buffer:
                yield self._buffer.pop(0)
            yield from self._source
            yield None  # the end: flush the deinterlacer

        for item in items():
            if item is None or isinstance(item, av.VideoFrame):
                for vf in self._progressive(item):
                    pts = self._timestamp(vf)
                    if end_pts is not None and pts >= end_pts:
                        self._finish(whole=False)
                        return
                    if start_pts is not None and pts < start_pts:
                        continue  # decoded from the keyframe before the range
                    yield Frame(vf.to_ndarray(format="rgb24"), pts, tb, self.decoded)
                    self.decoded += 1
            elif on_packet is not None:
                on_packet(item)
        self._finish(whole=not ranged)

    def _seek(self, pts: int) -> None:
        """Restart decoding at a keyframe before ``pts``: at or before the frame ahead of it when deinterlacing,
        so that bwdif sees the same neighbours as in a whole run.

        Some demuxers (MPEG-TS) seek to a packet that is not a keyframe, and the decoder then starts at the
        next keyframe, past the target: the seek is retried one, two, four... seconds earlier, and from
        the start of the file at the latest.
        """
        want = pts - 1 if self._deinterlacing else pts
        # frames are timed from the file's start where TimestampJumps moves it there; seeks take the file's own
        origin = round(self._jumps.origin / self.info.time_base) if self._jumps is not None else 0
        start = (self.stream.start_time if self.stream.start_time is not None else 0) - origin
        back = max(1, round(1 / self.info.time_base))  # one second
        target = want
        while target > start:
            try:
                self._restart(target + origin)
            except av.error.FFmpegError:  # this demuxer cannot seek there: decode from the start
                break
            first = self._first_frame()
            if first is not None and (first.pts is None or first.pts <= want):
                return
            log.debug("%s: the seek to %d started decoding at %s; trying earlier", self.src, target,
                      None if first is None else first.pts)
            target, back = want - back, back * 2
        try:
            self._restart(start + origin)
        except av.error.FFmpegError as e:
            raise VidstyleError(f"cannot seek in {self.src} ({e.strerror or e})") from None

    def _restart(self, target: int) -> None:
        """Seek to the keyframe at or before ``target`` and start decoding afresh from there."""
        self._source.close()
        self._buffer.clear()
        self.container.seek(target, stream=self.stream, backward=True)  # also flushes the decoders
        self._source = self._events()
        self._graph = None
        self._last_pts = None
        self.decoded = self.decode_errors = self.discarded = 0
        self.incomplete = None

    def _first_frame(self) -> av.VideoFrame | None:
        """Decode up to the first video frame (kept for ``frames``); None when there is none."""
        for item in self._source:
            self._buffer.append(item)
            if isinstance(item, av.VideoFrame):
                return item
        return None

    def _finish(self, whole: bool = True) -> None:
        """After the last frame: the skipped-packet count, and (for the whole video) whether the file ended early."""
        if self.decode_errors:
            n = self.decode_errors
            self.info.notes.append(f"skipped {n} corrupt video packet{'s' if n > 1 else ''} in {self.src}")
        if self._jumps is not None and self._jumps.jumps:
            n = self._jumps.jumps
            self.info.notes.append(f"the timestamps of {self.src} jump {n} time{'s' if n > 1 else ''} (files joined, "
                                   "or a recording restarted): each later piece is timed to follow on")
        expected = self.info.frames  # the header counts the frames an edit list discards too
        seen = self.decoded + self.decode_errors + self.discarded
        if whole and self.incomplete is None and expected and seen < expected * 0.98 - 1:
            self.incomplete = f"the file ended after frame {self.decoded} of {expected}"

    def close(self) -> None:
        """Close the file, and drop the event generator (it holds the reader: a reference cycle), so that
        the reader and its decoder are freed as soon as the caller lets go of it."""
        source, self._source = self._source, iter(())
        source.close()
        self._buffer.clear()
        self._graph = None
        self.container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
