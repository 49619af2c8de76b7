"""Video sink: encode RGB frames with PyAV and remux the source's other streams.

* every frame keeps the timestamp it came with (variable frame rate stays variable);
* the codec follows the container (H.264 for MP4/MOV/MKV/TS, VP9 for WebM, GIF with a
  palette per frame for .gif); a codec the container cannot hold is a one-line error;
* audio and subtitle packets are copied untouched when the container takes the
  codec, audio is re-encoded (AAC, or Opus for WebM) otherwise, with a note, keeping its timing;
* chapters (MP4, MOV, MKV, WebM) and attachments (MKV) are copied, with a note where they cannot be;
* container and stream metadata, pixel aspect ratio and colour tags are copied; rotation
  is written as a display matrix (MP4, MOV, MKV, WebM), pixels are rotated elsewhere;
* 4:2:0 by default: odd sizes are padded by one pixel for the codecs that need even ones;
* the video can also be copied packet by packet from another file (``copy_video``), with the same
  rules for everything else (how ``vidstyle.segments`` joins its parts);
* everything goes to a hidden temporary file beside the target (``io.atomic.AtomicPath``), renamed
  at the end: an error, Ctrl-C, SIGTERM or SIGHUP (``signals.stop_signals``) never leaves a half-written
  file, and the partial files of a killed run are removed by the next run to the same target.
The codec and container tables are in ``io.codecs``.
"""
from __future__ import annotations

import collections
import contextlib
import errno
import logging
import math
from fractions import Fraction
from pathlib import Path

import av
import av.filter
import numpy as np

from ..errors import VidstyleError
from ..signals import stop_signals
from .atomic import AtomicPath, check_target
from .codecs import (CHAPTER_MUXERS, IDENTITY_MATRIX, ODD_SIZES_OK, SWS_MATRIX, X264_CRF, X264_PRESETS,
                     output_format,
                     resolve_codec)
from .reader import DEFAULT_FPS, VideoInfo, filter_frames

log = logging.getLogger("vidstyle")


# -- the writer ----------------------------------------------------------------
def _frame_rate(info: VideoInfo) -> Fraction:
    """The rate frames are encoded and numbered at: the source's, or ``DEFAULT_FPS`` where it states none."""
    return info.fps if info.fps and info.fps > 0 else DEFAULT_FPS


# The layouts libopus encodes as they are (its surround mapping); others are downmixed to stereo.
_OPUS_LAYOUTS = {"mono", "stereo", "3.0", "quad", "5.0", "5.0(side)", "5.1", "5.1(side)", "6.1", "7.1"}


def _opus_layout(layout: av.AudioLayout) -> str:
    """The channel layout to encode ``layout`` with in Opus: its own for 5.1, 7.1 ..., else stereo (or mono)."""
    if layout.name in _OPUS_LAYOUTS:
        return layout.name
    return "stereo" if layout.nb_channels > 1 else "mono"


def _aac_layout(layout: av.AudioLayout) -> str:
    """The channel layout to encode ``layout`` with: its own when it has a name ("stereo", "5.1"),
    else FFmpeg's default for its channel count (PCM in AVI or MKV often says only "2 channels")."""
    if "channels" not in layout.name:
        return layout.name
    return av.AudioLayout(f"{layout.nb_channels}c").name


def palette_graph(width: int, height: int, time_base: Fraction) -> av.filter.Graph:
    """rgb24 frames -> pal8 frames, each with its own 256-colour palette (palettegen + paletteuse)."""
    graph = av.filter.Graph()
    src = graph.add("buffer", video_size=f"{width}x{height}", pix_fmt="rgb24", time_base=str(time_base),
                    pixel_aspect="1/1")
    split = graph.add("split")
    gen = graph.add("palettegen", stats_mode="single", reserve_transparent="0")
    use = graph.add("paletteuse", new="1")
    sink = graph.add("buffersink")
    src.link_to(split)
    split.link_to(gen, 0, 0)
    split.link_to(use, 1, 0)
    gen.link_to(use, 0, 1)
    use.link_to(sink)
    graph.configure()
    return graph


class VideoWriter:
    """Encode frames to ``dst``; remux ``copy_streams`` (input audio/subtitle streams).

    ``size`` is the (width, height) of the frames that will be written; ``self.size`` is the
    size in the file (rotated for containers without a display matrix, padded to even sizes).
    ``chroma``: "420" (default; plays everywhere) or "444" (full colour resolution, odd sizes exact).
    ``encoder_options``: FFmpeg options for the video encoder, over the ones made from ``crf`` and
    ``preset`` (e.g. ``{"x264-params": "stitchable=1"}``).
    ``copy_video``: a video stream of an open input whose packets ``write_packet`` copies as they are,
    instead of encoding frames (``vidstyle.segments`` joins its parts so); its pixels are taken as
    they are: nothing is rotated, padded or re-tagged, only the display matrix is written.
    ``notes`` tells the user what was changed on the way (from the reader's ``info.notes`` too).
    """

    def __init__(self, dst: str | Path, info: VideoInfo, *, size: tuple[int, int] | None = None,
                 codec: str | None = None, crf: int | None = None, preset: str | None = None,
                 copy_streams: list | None = None, overwrite: bool = False, src: str | None = None,
                 chroma: str = "420", encoder_options: dict | None = None, copy_video=None):
        self.dst = Path(dst)
        check_target(self.dst, overwrite, src)
        if chroma not in ("420", "444"):
            raise VidstyleError(f"chroma must be 420 or 444, not {chroma!r}")
        self.info = info
        self.format = output_format(self.dst)
        self.kind = self.dst.suffix.lower().lstrip(".")
        self._notes: list[str] = []
        self.frames_written = 0
        self._pending = collections.deque()  # packets queued by the reader thread
        self._copy_video = copy_video
        if copy_video is None:
            self.encoder = resolve_codec(codec or self.format.codec)
            self._rot_k = self._pixel_rotation()
            w, h = size or (info.width, info.height)
            self._resized = (w, h) if (w, h) != (info.width, info.height) else None  # --out-size, for errors
            if self._rot_k % 2:
                w, h = h, w
            self.pix_fmt = "pal8" if self.encoder == "gif" else f"yuv{chroma}p"
            self._pad = self._padding(w, h)
        else:
            self.encoder = copy_video.codec_context.name
            self._rot_k, self._pad = 0, (0, 0)
            w, h = copy_video.width, copy_video.height
            self.pix_fmt = copy_video.codec_context.pix_fmt or ""
        self.size = (w + self._pad[1], h + self._pad[0])
        self.container = None
        encoding_gif = copy_video is None and self.pix_fmt == "pal8"
        self._palette = palette_graph(*self.size, info.time_base) if encoding_gif else None
        self._gif_last: int | None = None  # the last GIF frame's time, in GIF's centiseconds
        self._gif_dropped = 0
        self._signals = contextlib.ExitStack()  # stop_signals() while the file is open
        try:
            self._atomic = AtomicPath(self.dst)
        except OSError as e:
            raise self._write_error(e) from None
        self._signals.enter_context(stop_signals())
        try:
            self.container = self._open()
            self._setup(copy_streams or [], crf, preset, encoder_options or {})
        except BaseException:
            self.abort()
            raise

    @property
    def notes(self) -> list[str]:
        return [*self.info.notes, *self._notes]

    # -- set-up ----------------------------------------------------------------
    def _pixel_rotation(self) -> int:
        """Quarter turns to apply to the pixels (containers without a display matrix), with a note."""
        rotation = self.info.rotation % 360
        if not rotation or self.format.display_matrix:
            return 0
        self._notes.append(f"rotation {self.info.rotation} applied to the pixels ({self.kind} has no display matrix)")
        return (rotation // 90) % 4

    def _padding(self, w: int, h: int) -> tuple[int, int]:
        """(rows, columns) to add so that 4:2:0 gets the even size it needs, with a note."""
        if self.pix_fmt != "yuv420p" or self.encoder in ODD_SIZES_OK or (w % 2 == 0 and h % 2 == 0):
            return 0, 0
        pad = (h % 2, w % 2)
        self._notes.append(f"{w}x{h} padded to {w + pad[1]}x{h + pad[0]} by repeating the last pixel "
                           f"(4:2:0 {self.encoder} needs even sizes; chroma 444 keeps the exact size)")
        return pad

    def _open(self):
        options = {"movflags": "+faststart"} if self.format.faststart else {}
        tb = self.info.time_base
        if self.format.muxer in ("mp4", "mov") and tb and 0 < tb.denominator < 2**31:
            # MP4 keeps a track's start in its edit list in the movie's timescale, 1000 by default: a video
            # starting at frame 28 of a 30 fps clip (14336/15360 s) came back at 14331. In the input's own
            # timescale it is exact.
            options["movie_timescale"] = str(tb.denominator)
        try:
            return av.open(f"file:{self._atomic.tmp}", mode="w", format=self.format.muxer, options=options)
        except OSError as e:
            raise self._write_error(e) from None
        except (av.error.FFmpegError, ValueError) as e:
            raise VidstyleError(f"cannot write {self.dst}: {e}") from None

    def _setup(self, copy_streams: list, crf: int | None, preset: str | None, encoder_options: dict) -> None:
        info, out = self.info, self.container
        out.metadata.update({k: v for k, v in info.metadata.items() if k.lower() != "encoder"})
        if self._copy_video is not None:
            vs = out.add_stream_from_template(self._copy_video)
        else:
            vs = self._add_encoder()
            self._tag_pixels(vs)
            vs.options = {**self._encoder_options(crf, preset), **{k: str(v) for k, v in encoder_options.items()}}
            self._open_encoder(vs, crf, preset)
        self._tag_display(vs)
        for k, v in info.stream_metadata.items():
            if k.lower() not in ("handler_name", "vendor_id", "encoder"):
                vs.metadata[k] = v
        self.vstream = vs
        self._map: dict[int, tuple] = {}  # input stream index -> (mode, output stream)
        self._last_dts: dict[int, Fraction] = {}  # output stream index -> the last dts muxed, in seconds (_increasing)
        self._moved_packets = 0  # packets moved after an overlapping one (_increasing)
        for s in copy_streams:
            self._add_copy(s)
        self._add_chapters_and_attachments()

    def _add_chapters_and_attachments(self) -> None:
        """Copy the source's chapters and attachments where the container stores them; a note where not."""
        info, muxer = self.info, self.format.muxer
        if info.chapters and muxer in CHAPTER_MUXERS:
            self.container.set_chapters(info.chapters)
        elif info.chapters:
            self._notes.append(f"{len(info.chapters)} chapters dropped: {self.kind} files cannot hold them")
        if info.attachments and muxer == "matroska":
            for name, mimetype, data in info.attachments:
                self.container.add_attachment(name, mimetype or "application/octet-stream", data)
        elif info.attachments:
            names = ", ".join(name for name, _, _ in info.attachments)
            self._notes.append(f"attachments dropped ({names}): only .mkv files can hold them")

    def _add_encoder(self):
        """The output video stream, encoding with ``self.encoder`` at the source's frame rate and time base."""
        info = self.info
        try:
            vs = self.container.add_stream(self.encoder, rate=_frame_rate(info).limit_denominator(1001 * 1000))
        except ValueError:  # the muxer cannot hold this codec
            raise VidstyleError(f"{self.kind} files cannot hold {self.encoder} video; leave the codec out "
                                f"(for .{self.kind}: {self.format.codec}) or write .mp4, .mov or .mkv") from None
        vs.width, vs.height = self.size
        vs.pix_fmt = self.pix_fmt
        if self.encoder in ("libx265", "hevc_nvenc") and self.format.muxer in ("mp4", "mov"):
            vs.codec_tag = "hvc1"  # FFmpeg writes hev1, which Apple's players (QuickTime, iOS, Safari) refuse
        vs.time_base = info.time_base
        vs.codec_context.time_base = info.time_base
        return vs

    def _open_encoder(self, vs, crf: int | None, preset: str | None) -> None:
        """Open the encoder now, so that settings it refuses are one line before anything is painted."""
        asked = dict(vs.options)
        try:
            vs.codec_context.open()
            vs.options = asked  # opening leaves only the options the encoder did not take
        except av.error.FFmpegError:
            w, h = self.size
            given = [f"--preset {preset}" if preset is not None else "", f"--crf {crf}" if crf is not None else "",
                     "--out-size {}x{}".format(*self._resized) if self._resized else ""]
            suspects = " or ".join(g for g in given if g) or f"the size {w}x{h}"
            raise VidstyleError(f"the {self.encoder} encoder refused {suspects}; change that, "
                                "or write another format (--codec, or the output's suffix)") from None

    def _encoder_options(self, crf: int | None, preset: str | None) -> dict:
        if self.encoder in ("libx264", "libx265"):
            if preset is not None and preset not in X264_PRESETS:
                raise VidstyleError(f"--preset {preset} is not a {self.encoder} preset; use one of "
                                    f"{', '.join(X264_PRESETS)}")
            # veryfast by default: the encoder shares the CPU with the painter, the slowest stage, and
            # x264's medium took enough of it to slow the whole run by a quarter (docs/PERFORMANCE.md)
            opts = {"crf": str(X264_CRF if crf is None else crf), "preset": preset or "veryfast"}
            if self.encoder == "libx265":
                opts["x265-params"] = "log-level=error"
            return opts
        if self.encoder == "libvpx-vp9":
            return {"crf": str(32 if crf is None else crf), "b": "0", "row-mt": "1",
                    "deadline": preset if preset in ("good", "best", "realtime") else "good", "cpu-used": "4"}
        if self.encoder.endswith("_nvenc"):
            return {"preset": preset or "p4", "cq": str(23 if crf is None else crf)}
        return {}

    def _tag_pixels(self, vs) -> None:
        """Carry the pixel aspect ratio and the colour tags to the encoder.

        Frames resized (``size``) to the source's shape (within a pixel) keep its pixel aspect ratio, so the
        picture shows as the source does; frames resized to another shape get square pixels, so it shows
        at exactly the size asked for (720x576 16:9 PAL at 1024x576 shows as 1024x576, not 2.5:1).
        """
        info, cc = self.info, vs.codec_context
        sar = info.sar
        if sar and self._resized and not self._same_shape(*self._resized):
            w, h = self._resized
            self._notes.append(f"{w}x{h} written with square pixels (the input's pixel aspect ratio is "
                               f"{sar.numerator}:{sar.denominator}): it shows at the size asked for")
            sar = None
        if sar and self._rot_k % 2:
            sar = 1 / sar
        if sar:
            cc.sample_aspect_ratio = sar
            if self.pix_fmt == "pal8" or (self.encoder == "libvpx-vp9" and self.format.muxer in ("webm", "matroska")):
                self._notes.append(f"pixel aspect ratio {sar.numerator}:{sar.denominator} is not stored in "
                                   f"{self.kind} with {self.encoder}: the picture shows with square pixels")
        if self.pix_fmt != "pal8":
            cc.color_primaries, cc.color_trc = info.color_primaries, info.color_trc
            if info.colorspace in SWS_MATRIX:
                cc.colorspace = info.colorspace
            if info.color_range:
                cc.color_range = info.color_range

    def _same_shape(self, w: int, h: int) -> bool:
        """Whether w x h is the source's frame size scaled evenly (one pixel of rounding allowed)."""
        return abs(w * self.info.height - h * self.info.width) <= max(self.info.width, self.info.height)

    def _tag_display(self, vs) -> None:
        """Carry the display matrix (rotation) to the output stream, in the containers that store one."""
        info = self.info
        if self.format.display_matrix and not self._rot_k:
            if info.display_matrix is not None and tuple(info.display_matrix) != IDENTITY_MATRIX:
                vs.set_display_matrix(info.display_matrix)
            elif info.display_matrix is None and info.rotation % 360:
                vs.set_display_rotation(info.rotation)

    def _add_copy(self, s) -> None:
        name = s.codec_context.name if s.codec_context else ""
        fmt = self.format
        ok = fmt.audio if s.type == "audio" else fmt.subtitles
        if ok is None or name in ok:
            o = self.container.add_stream_from_template(s)
            mode = "copy"
        elif s.type == "audio" and fmt.audio_encoder:
            target = fmt.audio_encoder
            o = self.container.add_stream(target, rate=48000 if target == "libopus" else (s.rate or 48000))
            if s.layout is not None:
                o.layout = _aac_layout(s.layout) if target == "aac" else _opus_layout(s.layout)
            mode = "encode"
            down = (f", downmixed from {s.layout.name} to {o.layout.name}"
                    if s.layout is not None and o.layout.nb_channels < s.layout.nb_channels else "")
            self._notes.append(f"audio stream {s.index} ({name}) re-encoded to {target}{down}: "
                               f"{self.kind} cannot hold {name}")
        else:
            self._notes.append(f"{s.type} stream {s.index} ({name}) dropped: {self.kind} cannot hold it")
            return
        o.metadata.update(s.metadata)
        try:
            o.disposition = s.disposition
        except Exception:  # older PyAV: disposition read-only
            pass
        self._map[s.index] = (mode, o)

    # -- writing ---------------------------------------------------------------
    def _write_error(self, e: OSError) -> VidstyleError:
        """A failed write (full disk, I/O error, no permission) as one line."""
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            reason = "no space left on the device"
        else:
            reason = e.strerror or str(e)
        return VidstyleError(f"cannot write {self.dst}: {reason}")

    def _mux(self, packets) -> None:
        """Mux packets; a failure removes the temporary file and is one line."""
        try:
            self.container.mux(packets)
        except OSError as e:
            self.abort()
            raise self._write_error(e) from None
        except av.error.FFmpegError as e:  # e.g. timestamps the muxer refuses
            self.abort()
            raise VidstyleError(f"cannot write {self.dst}: the {self.format.muxer} muxer refused a packet "
                                f"({e.strerror or e})") from None

    def queue_packet(self, packet) -> None:
        """Thread-safe: keep a packet of a copied stream for muxing from the writing thread."""
        if packet.stream.index in self._map:
            self._pending.append(packet)

    def _drain(self) -> None:
        while self._pending:
            packet = self._pending.popleft()
            mode, o = self._map[packet.stream.index]
            if mode == "copy":
                if packet.is_discard and self.format.muxer not in ("mp4", "mov"):
                    continue  # what an MP4 edit list cuts away (ffmpeg -ss -c copy): only MP4 and MOV can hide it
                packet.stream = o
                self._mux(self._increasing(packet))
            else:
                for frame in packet.decode():  # timed as in the input (PyAV rescales to the encoder's time base)
                    self._mux([self._increasing(p) for p in o.encode(frame)])

    def _increasing(self, packet):
        """``packet`` with a dts above its output stream's last one once the muxer rescales it to the stream's
        time base, as muxers demand: one at or before it is moved to the next tick (its pts kept at or above
        its dts), as FFmpeg's muxing does with overlaps; noted once."""
        if packet.dts is None or not packet.time_base:
            return packet
        o, tb = packet.stream, packet.time_base
        out_tb = o.time_base or tb  # known once the header is written
        last = self._last_dts.get(o.index)  # seconds
        if last is not None and round(packet.dts * tb / out_tb) <= round(last / out_tb):
            packet.dts = math.ceil((round(last / out_tb) + 1) * out_tb / tb)
            if packet.pts is not None and packet.pts < packet.dts:
                packet.pts = packet.dts
            if not self._moved_packets:
                self._notes.append(f"stream {o.index}: packets that overlapped the one before were moved after it")
            self._moved_packets += 1
        self._last_dts[o.index] = packet.dts * tb
        return packet

    def _encodable(self, vf: av.VideoFrame | None) -> list[av.VideoFrame]:
        """RGB frame -> the frames to encode: palette frames for GIF, otherwise YUV with the source's colour tags."""
        if self._palette is not None:
            return filter_frames(self._palette, vf)
        if vf is None:
            return []
        info = self.info
        yuv = vf.reformat(format=self.pix_fmt, dst_colorspace=SWS_MATRIX.get(info.colorspace),
                          dst_color_range=info.color_range or None)
        yuv.color_primaries, yuv.color_trc = info.color_primaries, info.color_trc
        if info.colorspace in SWS_MATRIX:
            yuv.colorspace = info.colorspace
        return [yuv]

    def write(self, rgb: np.ndarray, pts: int | None) -> None:
        """Encode one (H, W, 3) uint8 RGB frame at ``pts`` (input stream time base; None: next at the frame rate)."""
        if self._copy_video is not None:
            raise TypeError("this writer copies video packets (copy_video): use write_packet")
        self._drain()
        if self._rot_k:
            rgb = np.rot90(rgb, self._rot_k)
        if any(self._pad):
            rgb = np.pad(rgb, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        if pts is None:
            pts = round(self.frames_written / (_frame_rate(self.info) * self.info.time_base))
        vf.pts = pts
        vf.time_base = self.info.time_base
        if self._palette is not None and self._too_soon_for_gif(pts):
            self.frames_written += 1
            return
        for frame in self._encodable(vf):
            self._mux(self.vstream.encode(frame))
        self.frames_written += 1

    def _too_soon_for_gif(self, pts: int) -> bool:
        """GIF times frames in centiseconds, and browsers stretch a delay under 2 of them to 10: of a 60 fps
        or faster video, a GIF keeps the frames at least 2 centiseconds apart (50 fps), with a note."""
        cs = math.floor(pts * self.info.time_base * 100 + Fraction(1, 2))  # as FFmpeg rescales: to nearest
        if self._gif_last is not None and cs < self._gif_last + 2:
            if not self._gif_dropped:
                self._notes.append("GIF plays at most 50 frames a second: frames closer together are left out")
            self._gif_dropped += 1
            return True
        self._gif_last = cs
        return False

    def write_packet(self, packet) -> None:
        """Mux one packet of ``copy_video`` as it is, timestamps included."""
        if self._copy_video is None:
            raise TypeError("this writer encodes frames: use write")
        self._drain()
        packet.stream = self.vstream
        self._mux(packet)
        self.frames_written += 1

    def close(self) -> Path:
        """Flush, finalise and move the file to its target; returns the target path."""
        try:
            self._drain()
            if self._copy_video is None:
                for frame in self._encodable(None):
                    self._mux(self.vstream.encode(frame))
                self._mux(self.vstream.encode(None))
            for mode, o in self._map.values():
                if mode == "encode":
                    self._mux([self._increasing(p) for p in o.encode(None)])
            try:
                self.container.close()
                self._atomic.commit()
            except OSError as e:
                raise self._write_error(e) from None
            except av.error.FFmpegError as e:
                raise VidstyleError(f"cannot write {self.dst}: {e.strerror or e}") from None
        except BaseException:
            self.abort()
            raise
        self._release_signals()
        return self.dst

    def abort(self) -> None:
        """Drop the temporary file; the target is left as it was. Safe to call more than once."""
        atomic = getattr(self, "_atomic", None)
        if atomic is not None:
            atomic.discard()  # first, so that closing does not rewrite a file that is going anyway
        if self.container is not None:
            try:
                self.container.close()
            except Exception:
                pass
        self._release_signals()

    def _release_signals(self) -> None:
        self._signals.close()
