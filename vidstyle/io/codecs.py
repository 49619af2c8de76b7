"""What each kind of output file takes: muxers, video codecs, audio and subtitle codecs kept, encoder defaults.

The tables ``VideoWriter`` (``io.writer``) consults; also what ``vidstyle.segments`` uses to pick its parts'
codec. ``output_format`` and ``resolve_codec`` turn a suffix or a codec name into one of them, or into a
one-line VidstyleError.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from ..errors import VidstyleError

CODECS = {  # what users type -> FFmpeg encoder
    "libx264": "libx264", "h264": "libx264", "x264": "libx264",
    "hevc": "libx265", "h265": "libx265", "libx265": "libx265", "x265": "libx265",
    "vp9": "libvpx-vp9", "libvpx-vp9": "libvpx-vp9",
    "h264_nvenc": "h264_nvenc", "nvenc": "h264_nvenc", "hevc_nvenc": "hevc_nvenc",
    "gif": "gif",
}


@dataclass(frozen=True)
class OutputFormat:
    """What one kind of output file takes."""

    muxer: str  # FFmpeg muxer name
    codec: str  # default video codec (a CODECS key)
    audio: frozenset | None  # audio codecs copied as they are; None: any
    audio_encoder: str | None  # what other audio is re-encoded to; None: audio is dropped
    subtitles: frozenset  # subtitle codecs copied; others are dropped
    display_matrix: bool = True  # rotation kept as metadata; False: the pixels are rotated
    faststart: bool = False


_MP4_AUDIO = frozenset({"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac", "mp2"})
_MOV_TEXT = frozenset({"mov_text"})
_MKV_SUBS = frozenset({"subrip", "srt", "ass", "ssa", "webvtt", "dvd_subtitle", "hdmv_pgs_subtitle", "text"})
FORMATS = {
    ".mp4": OutputFormat("mp4", "libx264", _MP4_AUDIO, "aac", _MOV_TEXT, faststart=True),
    ".m4v": OutputFormat("mp4", "libx264", _MP4_AUDIO, "aac", _MOV_TEXT, faststart=True),
    ".mov": OutputFormat("mov", "libx264", _MP4_AUDIO | {"pcm_s16le", "pcm_s24le", "pcm_s16be"}, "aac", _MOV_TEXT,
                         faststart=True),
    ".mkv": OutputFormat("matroska", "libx264", None, "aac", _MKV_SUBS),
    ".webm": OutputFormat("webm", "vp9", frozenset({"opus", "vorbis"}), "libopus", frozenset({"webvtt"})),
    ".ts": OutputFormat("mpegts", "libx264", frozenset({"aac", "mp3", "mp2", "ac3", "eac3", "opus"}), "aac",
                        frozenset({"dvb_subtitle"}), display_matrix=False),
    ".gif": OutputFormat("gif", "gif", frozenset(), None, frozenset(), display_matrix=False),
}
# The presets of x264 and x265 (the libraries print their own line for others, so they are checked first).
X264_CRF = 18  # x264 and x265 when --crf is not given
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
# Encoders that take odd sizes in 4:2:0; the others get one pixel of padding.
ODD_SIZES_OK = {"libvpx-vp9", "gif"}
# AVColorSpace -> the swscale matrix that converts RGB to it.
SWS_MATRIX = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "ITU601", 7: "SMPTE240M", 9: "BT2020"}
IDENTITY_MATRIX = (0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
CHAPTER_MUXERS = {"mp4", "mov", "matroska", "webm"}  # the muxers that store chapters


def output_format(dst: Path) -> OutputFormat:
    """The OutputFormat for ``dst``'s suffix; a VidstyleError naming the suffixes that work."""
    fmt = FORMATS.get(dst.suffix.lower())
    if fmt is None:
        what = f"{dst.suffix} files" if dst.suffix else f"{dst.name}: it has no suffix"
        raise VidstyleError(f"cannot write {what}; end the output name in {', '.join(FORMATS)}")
    return fmt


def default_codec(dst: Path) -> str:
    fmt = FORMATS.get(dst.suffix.lower())
    return fmt.codec if fmt else "libx264"


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

