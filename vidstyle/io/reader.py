"""Video source: PyAV demux + threaded decode into RGB frames with their timestamps.

Frames come out exactly as stored (no auto-rotation); the stream's rotation is
reported in ``VideoInfo`` so the writer can carry it. Packets of the other
streams (audio, subtitles) are handed to a callback untouched, for remuxing.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np

from ..errors import VidstyleError
from . import mp4

log = logging.getLogger("vidstyle")


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
    """What a sink needs to know about the source."""

    width: int
    height: int
    time_base: Fraction
    fps: Fraction
    frames: int  # from the container header; 0 when unknown
    duration: float | None  # seconds, None when unknown
    rotation: int = 0  # degrees, as VideoFrame.rotation reports it
    display_matrix: tuple[int, ...] | None = None  # raw tkhd matrix for MP4/MOV inputs
    pix_fmt: str = "yuv420p"
    codec: str = ""
    metadata: dict = field(default_factory=dict)  # container metadata
    stream_metadata: dict = field(default_factory=dict)


def _is_url(src: str) -> bool:
    return "://" in src


def open_container(src: str | Path):
    """av.open with the user-facing checks: missing file, folder, not a media file."""
    s = str(src)
    if not _is_url(s):
        p = Path(s)
        if not p.exists():
            raise VidstyleError(f"input not found: {s}")
        if p.is_dir():
            raise VidstyleError(f"input is a directory, not a video file: {s}")
    try:
        return av.open(s, mode="r", timeout=(10.0, 10.0) if _is_url(s) else None)
    except av.error.FFmpegError as e:
        raise VidstyleError(f"cannot read {s}: not a video file FFmpeg understands ({e.strerror or e})") from None


class VideoReader:
    """Iterate the frames of the first video stream of a file or URL.

    >>> with VideoReader("in.mp4") as r:
    ...     for frame in r.frames():
    ...         frame.rgb  # (H, W, 3) uint8
    """

    def __init__(self, src: str | Path, threads: bool = True):
        self.src = str(src)
        self.container = open_container(self.src)
        if not self.container.streams.video:
            self.container.close()
            raise VidstyleError(f"{self.src} has no video stream")
        self.stream = self.container.streams.video[0]
        if threads:
            self.stream.thread_type = "AUTO"
        self.decoded = 0
        self.incomplete: str | None = None  # why reading stopped early, if it did
        st = self.stream
        cc = st.codec_context
        duration = None
        if st.duration is not None and st.time_base:
            duration = float(st.duration * st.time_base)
        elif self.container.duration:
            duration = self.container.duration / av.time_base
        fps = st.average_rate or st.guessed_rate or Fraction(30)
        self.info = VideoInfo(
            width=cc.width,
            height=cc.height,
            time_base=st.time_base or Fraction(1, 90000),
            fps=Fraction(fps),
            frames=int(st.frames or 0),
            duration=duration,
            display_matrix=mp4.read_display_matrix(self.src) if not _is_url(self.src) else None,
            pix_fmt=cc.pix_fmt or "yuv420p",
            codec=cc.name,
            metadata=dict(self.container.metadata),
            stream_metadata=dict(st.metadata),
        )
        self._source = self._events()
        self._buffer: list = []
        self._prime()

    @property
    def other_streams(self) -> list:
        """Audio and subtitle streams, in container order."""
        return [s for s in self.container.streams if s.type in ("audio", "subtitle")]

    def _events(self):
        """Yield the other streams' packets and the decoded video frames, in demux order.

        A demux or decode error ends the stream early and sets ``incomplete``.
        """
        demux = self.container.demux(self.stream, *self.other_streams)
        while True:
            try:
                packet = next(demux)
                if packet.stream is not self.stream:
                    if packet.dts is not None:
                        yield packet
                    continue
                decoded = packet.decode()
            except StopIteration:
                return
            except av.error.FFmpegError as e:
                self.incomplete = f"{e.strerror or e} after frame {self.decoded}"
                return
            yield from decoded

    def _prime(self) -> None:
        """Read up to the first frame now, so the rotation is known before any sink is set up."""
        for item in self._source:
            self._buffer.append(item)
            if isinstance(item, av.VideoFrame):
                self.info.rotation = int(round(item.rotation or 0))
                break

    def frames(self, on_packet: Callable | None = None) -> Iterator[Frame]:
        """Decode the video stream; packets of ``other_streams`` go to ``on_packet`` as they are demuxed."""
        tb = self.info.time_base

        def items():
            while self._buffer:
                yield self._buffer.pop(0)
            yield from self._source

        for item in items():
            if isinstance(item, av.VideoFrame):
                yield Frame(item.to_ndarray(format="rgb24"), item.pts, tb, self.decoded)
                self.decoded += 1
            elif on_packet is not None:
                on_packet(item)
        expected = self.info.frames
        if self.incomplete is None and expected and self.decoded < expected * 0.98 - 1:
            self.incomplete = f"the file ended after frame {self.decoded} of {expected}"

    def close(self) -> None:
        self.container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
