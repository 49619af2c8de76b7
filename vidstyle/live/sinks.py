"""Where live frames go besides the window: a virtual camera, a network feed, an MP4 recording.

Each sink takes (H, W, 3) uint8 RGB frames with their capture time (seconds) and
is closed exactly once; ``close`` finalises (a recording is a complete MP4 even
after Ctrl-C).
"""
from __future__ import annotations

import platform
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlsplit

import av
import cv2
import numpy as np

from ..errors import VidstyleError, one_line
from ..io.reader import VideoInfo
from ..io.writer import VideoWriter

MS = Fraction(1, 1000)
KEYFRAME_EVERY = 1.0  # seconds of output between the network feed's keyframes: where a receiver can join


def _even(rgb: np.ndarray) -> np.ndarray:
    """Crop to even width and height (4:2:0 H.264 needs them)."""
    h, w = rgb.shape[:2]
    return rgb[: h - h % 2, : w - w % 2]


class _Clock:
    """Capture times (s) -> strictly increasing millisecond timestamps from 0."""

    def __init__(self):
        self.t0: float | None = None
        self.last = -1

    def __call__(self, t: float) -> int:
        self.t0 = t if self.t0 is None else self.t0
        self.last = max(self.last + 1, int(round((t - self.t0) * 1000)))
        return self.last


class Recorder:
    """An MP4 of the live output, written by the writer of ``vidstyle run`` (temporary file, renamed on close).

    Timestamps are the capture times, so the file plays at the speed things happened.
    """

    def __init__(self, path: str | Path, size: tuple[int, int], fps: float, overwrite: bool = False,
                 preset: str = "veryfast"):
        w, h = size
        info = VideoInfo(width=w, height=h, time_base=MS, fps=Fraction(fps).limit_denominator(1001), frames=0,
                         duration=None)
        self.path = Path(path)
        self.writer = VideoWriter(self.path, info, size=size, preset=preset, overwrite=overwrite)
        self.clock = _Clock()

    @property
    def frames(self) -> int:
        return self.writer.frames_written

    def send(self, rgb: np.ndarray, t: float) -> None:
        self.writer.write(rgb, self.clock(t))

    def close(self) -> Path | None:
        if self.writer.frames_written == 0:
            self.writer.abort()
            return None
        return self.writer.close()

    def abort(self) -> None:
        self.writer.abort()


class NetworkFeed:
    """A low-latency MPEG-TS feed (H.264, zerolatency, a keyframe every second) to ``udp://`` or ``srt://``.

    Open it in OBS (Media Source, input ``udp://@:PORT``, untick "local file") or with
    ``ffplay -fflags nobuffer -flags low_delay udp://@:PORT``.
    """

    def __init__(self, url: str, size: tuple[int, int], fps: float):
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("udp", "srt", "tcp", "rtp") or "://" not in url:
            raise VidstyleError(f"--serve wants udp://HOST:PORT or srt://HOST:PORT, not {url!r}")
        try:
            port = parts.port
        except ValueError:  # not a number, or out of range
            port = None
        if not parts.hostname or not port:
            raise VidstyleError(f"--serve {url}: give the receiver's host and port, e.g. {scheme}://127.0.0.1:5000")
        if scheme == "udp" and "pkt_size" not in url:
            url += ("&" if "?" in url else "?") + "pkt_size=1316"  # 7 TS packets: no IP fragmentation
        self.url = url
        w, h = size
        w, h = w - w % 2, h - h % 2
        try:
            self.container = av.open(url, "w", format="mpegts", options={"flush_packets": "1"})
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise VidstyleError(f"cannot open --serve {url}: {e}") from None
        rate = Fraction(fps).limit_denominator(1001)
        s = self.container.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.time_base = s.codec_context.time_base = MS
        # keyframes by the output's clock (send), not every fps frames: the painter may deliver fewer frames
        # than the source's rate, which spread them 2 s apart (a receiver joining waited that long for a picture)
        s.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(max(1, round(10 * float(fps)))),
                     "bf": "0", "forced-idr": "1", "x264-params": "repeat-headers=1"}
        self.stream = s
        try:  # opens the connection now: an FFmpeg without the protocol says so before "serving ..."
            self.container.start_encoding()
        except (av.error.FFmpegError, OSError) as e:
            self.container.close()
            if isinstance(e, av.error.ProtocolNotFoundError):
                raise VidstyleError(f"cannot serve {url}: this FFmpeg build has no {scheme} protocol (PyAV's own "
                                    "wheels have no SRT); use udp://HOST:PORT") from None
            raise VidstyleError(f"cannot open --serve {url}: {e}") from None
        self.clock = _Clock()
        self.frames = 0
        self.last_key: float | None = None

    def send(self, rgb: np.ndarray, t: float) -> None:
        f = av.VideoFrame.from_ndarray(np.ascontiguousarray(_even(rgb)), format="rgb24")
        f.pts, f.time_base = self.clock(t), MS
        if self.last_key is None or t - self.last_key >= KEYFRAME_EVERY:
            f.pict_type = av.video.frame.PictureType.I
            self.last_key = t
        try:
            self.container.mux(self.stream.encode(f))
        except av.error.FFmpegError as e:
            raise VidstyleError(f"--serve {self.url} failed: {e}") from None
        self.frames += 1

    def close(self) -> None:
        try:
            self.container.mux(self.stream.encode(None))
        except av.error.FFmpegError:
            pass
        self.container.close()


def missing_backend_message(detail: str = "", system: str | None = None) -> str:
    """One line: what to install for a virtual camera on this operating system."""
    system = system or platform.system()
    if system == "Linux":
        what = ("install v4l2loopback and load it: sudo apt install v4l2loopback-dkms && "
                "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=vidstyle")
    elif system == "Darwin":
        what = "install OBS Studio 30 or later and start its Virtual Camera once (allow its system extension)"
    elif system == "Windows":
        what = "install OBS Studio 26 or later and start its Virtual Camera once (or install Unity Capture)"
    else:
        what = f"pyvirtualcam has no virtual camera backend for {system}"
    detail = detail.strip().splitlines()[0] if detail.strip() else ""
    return f"--virtual-cam: no virtual camera is available; {what}" + (f" ({detail})" if detail else "")


class VirtualCam:
    """The OBS / v4l2loopback virtual camera through pyvirtualcam, paced with ``sleep_until_next_frame``.

    ``backend`` names a pyvirtualcam backend (tests register a fake one); ``device``
    picks a camera (``/dev/video10``, ``OBS Virtual Camera``).
    """

    def __init__(self, size: tuple[int, int], fps: float, device: str | None = None, backend: str | None = None):
        try:
            import pyvirtualcam
        except ImportError:
            raise VidstyleError(missing_backend_message() + "; and the Python package: pip install pyvirtualcam "
                                "(or pip install 'vidstyle[live]')") from None
        w, h = size
        try:
            self.cam = pyvirtualcam.Camera(w, h, fps, fmt=pyvirtualcam.PixelFormat.RGB, device=device,
                                           backend=backend)
        except (RuntimeError, KeyError) as e:
            raise VidstyleError(missing_backend_message(str(e))) from None
        self.size = size
        self.frames = 0

    @property
    def device(self) -> str:
        return self.cam.device

    def send(self, rgb: np.ndarray, t: float) -> None:
        w, h = self.size
        if rgb.shape[:2] != (h, w):  # a camera's size is fixed when it opens; a source may change its own
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        try:
            self.cam.send(np.ascontiguousarray(rgb))
        except (OSError, RuntimeError, ValueError) as e:
            raise VidstyleError(f"the virtual camera {self.device} failed: {one_line(e, 160)}") from None
        self.frames += 1
        self.cam.sleep_until_next_frame()

    def close(self) -> None:
        self.cam.close()
