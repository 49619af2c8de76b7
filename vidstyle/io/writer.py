"""Video sink: encode RGB frames with PyAV and remux the source's other streams.

* every frame keeps the timestamp it came with (variable frame rate stays variable);
* audio and subtitle packets are copied untouched when the container takes the
  codec, audio is re-encoded (AAC, or Opus for WebM) otherwise, with a note;
* container and stream metadata are copied, rotation is carried (display matrix
  in MP4/MOV, pixels rotated elsewhere), MP4 gets faststart;
* everything goes to a temporary file beside the target, renamed at the end:
  an error or Ctrl-C never leaves a half-written file at the target.
"""
from __future__ import annotations

import collections
import logging
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import VidstyleError
from . import mp4
from .reader import VideoInfo

log = logging.getLogger("vidstyle")

CODECS = {  # what users type -> FFmpeg encoder
    "libx264": "libx264", "h264": "libx264", "x264": "libx264",
    "hevc": "libx265", "h265": "libx265", "libx265": "libx265", "x265": "libx265",
    "vp9": "libvpx-vp9", "libvpx-vp9": "libvpx-vp9",
    "h264_nvenc": "h264_nvenc", "nvenc": "h264_nvenc", "hevc_nvenc": "hevc_nvenc",
}
_MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac", "mp2"}
_AUDIO_OK = {
    "mp4": _MP4_AUDIO, "m4v": _MP4_AUDIO, "mov": _MP4_AUDIO | {"pcm_s16le", "pcm_s24le", "pcm_s16be"},
    "webm": {"opus", "vorbis"}, "mkv": None,  # None: anything
}
_SUBS_OK = {
    "mp4": {"mov_text"}, "m4v": {"mov_text"}, "mov": {"mov_text"},
    "webm": {"webvtt"},
    "mkv": {"subrip", "srt", "ass", "ssa", "webvtt", "dvd_subtitle", "hdmv_pgs_subtitle", "text"},
}


def default_codec(dst: Path) -> str:
    return "vp9" if dst.suffix.lower() == ".webm" else "libx264"


def resolve_codec(name: str) -> str:
    enc = CODECS.get(name.lower(), name)
    if enc not in av.codecs_available:
        raise VidstyleError(f"codec {name!r} is not available in this FFmpeg build; try libx264, hevc or vp9")
    if enc.endswith("_nvenc"):
        try:  # nvenc needs an NVIDIA GPU and driver, not only the encoder in the build
            ctx = av.CodecContext.create(enc, "w")
            ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 256, 256, "yuv420p", Fraction(1, 25)
            ctx.open()
        except Exception:
            raise VidstyleError(f"{enc} needs an NVIDIA GPU with its driver, and none is usable here; "
                                "use --codec libx264") from None
    return enc


def check_target(dst: Path, overwrite: bool, src: str | None = None) -> None:
    """Refuse what would fail late or destroy data: same path as input, existing file, missing folder."""
    if src is not None and "://" not in src and Path(src).resolve() == dst.resolve():
        raise VidstyleError(f"the output would overwrite the input: {dst}")
    if dst.is_dir():
        raise VidstyleError(f"output is a directory: {dst}")
    if not dst.parent.is_dir():
        raise VidstyleError(f"output folder does not exist: {dst.parent}")
    if not os.access(dst.parent, os.W_OK):
        raise VidstyleError(f"no permission to write in {dst.parent}")
    if dst.exists() and not overwrite:
        raise VidstyleError(f"{dst} exists; pass --overwrite to replace it")


class AtomicPath:
    """A temporary path beside ``dst`` (same suffix, hidden) that becomes ``dst`` on commit."""

    def __init__(self, dst: Path):
        self.dst = dst
        self.tmp = dst.with_name(f".{dst.stem}.partial-{os.getpid()}{dst.suffix}")

    def commit(self) -> None:
        os.replace(self.tmp, self.dst)

    def discard(self) -> None:
        try:
            self.tmp.unlink()
        except FileNotFoundError:
            pass


class VideoWriter:
    """Encode frames to ``dst``; remux ``copy_streams`` (input audio/subtitle streams).

    ``size`` is the (width, height) of the frames that will be written.
    """

    def __init__(self, dst: str | Path, info: VideoInfo, *, size: tuple[int, int] | None = None,
                 codec: str | None = None, crf: int | None = None, preset: str | None = None,
                 copy_streams: list | None = None, overwrite: bool = False, src: str | None = None):
        self.dst = Path(dst)
        check_target(self.dst, overwrite, src)
        self.info = info
        self.encoder = resolve_codec(codec or default_codec(self.dst))
        self.kind = self.dst.suffix.lower().lstrip(".") or "mp4"
        if self.kind not in _AUDIO_OK:
            self.kind = "mkv" if self.kind in ("mka", "mk3d") else self.kind
        self.is_mp4 = self.dst.suffix.lower() in mp4.MP4_SUFFIXES
        self.notes: list[str] = []
        self.frames_written = 0
        self._pending = collections.deque()  # packets queued by the reader thread
        self._atomic = AtomicPath(self.dst)
        w, h = size or (info.width, info.height)
        # Rotation: MP4/MOV keep the display matrix; other containers get rotated pixels.
        self._rot_k = 0
        if info.rotation % 360 and not self.is_mp4:
            self._rot_k = (info.rotation // 90) % 4
            if self._rot_k % 2:
                w, h = h, w
            self.notes.append(f"rotation {info.rotation} applied to the pixels ({self.kind} has no display matrix)")
        self.size = (w, h)
        options = {"movflags": "+faststart"} if self.is_mp4 else {}
        try:
            self.container = av.open(str(self._atomic.tmp), mode="w", options=options,
                                     format="mp4" if self.kind == "m4v" else None)
        except PermissionError:
            raise VidstyleError(f"no permission to write in {self.dst.parent}") from None
        except (av.error.FFmpegError, ValueError) as e:
            self._atomic.discard()
            raise VidstyleError(f"cannot write {self.dst}: {e}") from None
        try:
            self._setup(copy_streams or [], crf, preset)
        except BaseException:
            self.abort()
            raise

    # -- set-up ----------------------------------------------------------------
    def _setup(self, copy_streams: list, crf: int | None, preset: str | None) -> None:
        info, out = self.info, self.container
        out.metadata.update({k: v for k, v in info.metadata.items() if k.lower() != "encoder"})
        w, h = self.size
        fps = info.fps if info.fps and info.fps > 0 else Fraction(30)
        vs = out.add_stream(self.encoder, rate=fps.limit_denominator(1001 * 1000))
        vs.width, vs.height = w, h
        even = w % 2 == 0 and h % 2 == 0
        vs.pix_fmt = "yuv420p" if even else "yuv444p"  # 4:2:0 needs even sizes; keep odd sizes exact
        vs.time_base = info.time_base
        vs.codec_context.time_base = info.time_base
        opts = {}
        if self.encoder in ("libx264", "libx265"):
            opts = {"crf": str(18 if crf is None else crf), "preset": preset or "medium"}
            if self.encoder == "libx265":
                opts["x265-params"] = "log-level=error"
        elif self.encoder == "libvpx-vp9":
            opts = {"crf": str(32 if crf is None else crf), "b": "0", "row-mt": "1",
                    "deadline": preset if preset in ("good", "best", "realtime") else "good", "cpu-used": "4"}
        elif self.encoder.endswith("_nvenc"):
            opts = {"preset": preset or "p4", "cq": str(23 if crf is None else crf)}
        vs.options = opts
        for k, v in info.stream_metadata.items():
            if k.lower() not in ("handler_name", "vendor_id", "encoder"):
                vs.metadata[k] = v
        self.vstream = vs
        self._map: dict[int, tuple] = {}  # input stream index -> (mode, output stream)
        for s in copy_streams:
            self._add_copy(s)

    def _add_copy(self, s) -> None:
        name = s.codec_context.name if s.codec_context else ""
        ok = (_AUDIO_OK if s.type == "audio" else _SUBS_OK).get(self.kind, set())
        accepted = ok is None or name in ok
        if accepted:
            o = self.container.add_stream_from_template(s)
            mode = "copy"
        elif s.type == "audio":
            target = "libopus" if self.kind == "webm" else "aac"
            o = self.container.add_stream(target, rate=48000 if target == "libopus" else (s.rate or 48000))
            if s.layout is not None:
                o.layout = s.layout.name if target == "aac" else ("stereo" if s.channels > 1 else "mono")
            mode = "encode"
            self.notes.append(f"audio stream {s.index} ({name}) re-encoded to {target}: {self.kind} cannot hold {name}")
        else:
            self.notes.append(f"subtitle stream {s.index} ({name}) dropped: {self.kind} cannot hold it")
            return
        o.metadata.update(s.metadata)
        try:
            o.disposition = s.disposition
        except Exception:  # older PyAV: disposition read-only
            pass
        self._map[s.index] = (mode, o)

    # -- writing ---------------------------------------------------------------
    def queue_packet(self, packet) -> None:
        """Thread-safe: keep a packet of a copied stream for muxing from the writing thread."""
        if packet.stream.index in self._map:
            self._pending.append(packet)

    def _drain(self) -> None:
        while self._pending:
            packet = self._pending.popleft()
            mode, o = self._map[packet.stream.index]
            if mode == "copy":
                packet.stream = o
                self.container.mux(packet)
            else:
                for frame in packet.decode():
                    frame.pts = None  # let the encoder number samples
                    self.container.mux(o.encode(frame))

    def write(self, rgb: np.ndarray, pts: int | None) -> None:
        """Encode one (H, W, 3) uint8 RGB frame at ``pts`` (input stream time base)."""
        self._drain()
        if self._rot_k:
            rgb = np.ascontiguousarray(np.rot90(rgb, self._rot_k))
        vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        vf.pts = pts if pts is not None else self.frames_written
        vf.time_base = self.info.time_base
        self.container.mux(self.vstream.encode(vf))
        self.frames_written += 1

    def close(self) -> Path:
        """Flush, finalise and move the file to its target; returns the target path."""
        try:
            self._drain()
            self.container.mux(self.vstream.encode(None))
            for mode, o in self._map.values():
                if mode == "encode":
                    self.container.mux(o.encode(None))
            self.container.close()
            if self.is_mp4 and not self._rot_k:
                matrix = self.info.display_matrix
                if matrix is None and self.info.rotation % 360:
                    matrix = mp4.rotation_matrix(self.info.rotation)
                if matrix is not None and matrix != mp4.IDENTITY:
                    mp4.write_display_matrix(self._atomic.tmp, matrix)
            self._atomic.commit()
        except BaseException:
            self.abort()
            raise
        return self.dst

    def abort(self) -> None:
        """Drop the temporary file; the target is left as it was."""
        try:
            self.container.close()
        except Exception:
            pass
        self._atomic.discard()
