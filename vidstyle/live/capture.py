"""Live sources: a camera (OpenCV) or a file/URL (PyAV), read on a thread that keeps only the newest frame.

The painter is usually slower than the camera. A queue would then grow and the
picture would fall further and further behind; instead the capture thread
overwrites a one-frame slot (:class:`Latest`), and the consumer always gets the
most recent picture, never one it has already seen. Frames it did not take are
counted as dropped.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import av
import cv2
import numpy as np

from ..errors import VidstyleError, one_line
from ..io.protocols import is_url, local_path
from ..io.reader import VideoReader

log = logging.getLogger("vidstyle")


@dataclass
class Grab:
    """One captured picture: RGB uint8 (H, W, 3), when it was captured (perf_counter s), its sequence number."""

    rgb: np.ndarray
    t: float
    seq: int


class Latest:
    """A one-frame slot: ``put`` replaces, ``get`` waits for a frame newer than the last one taken."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item: Grab | None = None
        self._taken = -1
        self.closed = False
        self.error: str | None = None
        self.put_count = 0
        self.dropped = 0  # frames overwritten before anyone took them

    def put(self, item: Grab) -> None:
        with self._cond:
            if self._item is not None and self._item.seq > self._taken:
                self.dropped += 1
            self._item = item
            self.put_count += 1
            self._cond.notify_all()

    def close(self, error: str | None = None) -> None:
        with self._cond:
            self.closed = True
            self.error = self.error or error
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> Grab | None:
        """The newest frame not yet taken; None when the source has ended (or on timeout)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._item is None or self._item.seq <= self._taken:
                if self.closed:
                    return None
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            self._taken = self._item.seq
            return self._item


def parse_source(spec: str | int) -> int | str:
    """``"0"`` -> camera index 0; anything else is a file or URL."""
    s = str(spec).strip()
    return int(s) if s.isdigit() else s


@contextlib.contextmanager
def _opencv_silent():
    """OpenCV's own log off for a moment (its level is restored after)."""
    try:
        old = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # an OpenCV build without the logging API
        yield
        return
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(old)


class CameraFrames:
    """Frames from a camera through OpenCV: MJPG, the asked size and rate, a one-frame driver buffer.

    A camera that stops delivering is reopened with a message and a growing wait
    (1, 2, 4, ... up to 8 s) until it comes back or the session stops.
    """

    def __init__(self, index: int, width: int | None = None, height: int | None = None, fps: float | None = None):
        self.index, self.width, self.height, self.fps = index, width, height, fps
        try:  # our own messages say what happened; OpenCV's per-backend warnings would only add noise
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        except AttributeError:
            pass
        self.cap = self._open()
        if self.cap is None:
            raise VidstyleError(f"cannot open camera {index}: no such camera, or it is in use by another program")
        self.retries = 0

    def _open(self):
        with _opencv_silent():  # a missing camera is our one-line error, not OpenCV's "index out of range"
            cap = cv2.VideoCapture(self.index)
        if not cap.isOpened():
            cap.release()
            return None
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        if self.width and self.height:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.fps:
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    @property
    def rate(self) -> float:
        got = self.cap.get(cv2.CAP_PROP_FPS) if self.cap is not None else 0
        return float(got or self.fps or 30)

    @property
    def size(self) -> tuple[int, int] | None:
        """(w, h) the camera delivers, or None when it does not say."""
        w, h = (int(self.cap.get(p)) for p in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT))
        return (w, h) if w > 0 and h > 0 else None

    def __call__(self, stop: threading.Event) -> Iterator[np.ndarray]:
        wait = 1.0
        while not stop.is_set():
            ok, bgr = self.cap.read() if self.cap is not None else (False, None)
            if ok and bgr is not None:
                wait = 1.0
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                continue
            log.warning("camera %s stopped delivering frames; retrying in %.0f s", self.index, wait)
            if self.cap is not None:
                self.cap.release()
            if stop.wait(wait):
                break
            self.retries += 1
            wait = min(wait * 2, 8.0)
            self.cap = self._open()
            if self.cap is not None:
                log.warning("camera %s is back", self.index)

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class FileFrames:
    """Frames from a file or URL through PyAV, played at the stream's own rate; ``loop`` restarts files.

    Files are paced by their timestamps so that live mode behaves as with a camera;
    network streams arrive at their own pace and are not paced again.
    """

    def __init__(self, src: str, loop: bool = False, pace: bool = True):
        self.src = src
        self.loop = loop
        self.is_url = is_url(src)
        self.pace = pace and not self.is_url
        if not self.is_url and not Path(local_path(src)).exists():
            raise VidstyleError(f"source not found: {src} (give a camera index like 0, a video file or a URL)")
        with VideoReader(src) as r:  # fail early and clearly, and learn the rate
            self.info = r.info
            if next(r.frames(), None) is None:
                raise VidstyleError(f"{src}: no video frame could be decoded")
        self.rate = float(self.info.fps or 30)
        self.size = (self.info.width, self.info.height)

    def __call__(self, stop: threading.Event) -> Iterator[np.ndarray]:
        while not stop.is_set():
            t0, first = time.perf_counter(), None
            with VideoReader(self.src) as r:
                for f in r.frames():
                    if stop.is_set():
                        return
                    if self.pace:
                        t = f.time if f.time is not None else f.index / self.rate
                        first = t if first is None else first
                        delay = t0 + (t - first) - time.perf_counter()
                        if delay > 0 and stop.wait(delay):
                            return
                    yield f.rgb
            if not self.loop:
                return

    def close(self) -> None:
        pass


def open_source(spec: str | int, width: int | None = None, height: int | None = None, fps: float | None = None,
                loop: bool = False, pace: bool = True):
    """A frame generator factory for ``--source``: CameraFrames or FileFrames."""
    src = parse_source(spec)
    if isinstance(src, int):
        return CameraFrames(src, width, height, fps)
    return FileFrames(src, loop=loop, pace=pace)


class Capture:
    """Runs a source on a thread into a :class:`Latest` slot, resized to ``size`` (w, h) when given.

    >>> with Capture(open_source("clip.mp4", loop=True)) as cap:
    ...     grab = cap.latest.get()
    """

    def __init__(self, frames: Callable[[threading.Event], Iterator[np.ndarray]], size: tuple[int, int] | None = None):
        self.frames = frames
        self.size = size
        self.latest = Latest()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="vidstyle-capture", daemon=True)
        self.join_timeout = 5.0  # seconds stop() waits for the thread
        self._lock = threading.Lock()
        self._ended = False  # the thread has left the source
        self._close_on_exit = False  # stop() gave up waiting: the thread closes the source when it ends

    def _run(self) -> None:
        seq = 0
        error = None
        try:
            for rgb in self.frames(self.stop_event):
                if self.size and (rgb.shape[1], rgb.shape[0]) != tuple(self.size):
                    down = self.size[0] < rgb.shape[1]
                    rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA if down else cv2.INTER_LINEAR)
                self.latest.put(Grab(rgb, time.perf_counter(), seq))
                seq += 1
        except VidstyleError as e:
            error = str(e)
        except (av.error.FFmpegError, OSError) as e:
            error = f"source failed: {one_line(e)}"
        except Exception as e:  # anything else (a cv2.error, a bug) must not look like the source ending
            log.debug("capture thread failed", exc_info=True)
            kind = type(e).__name__ if type(e).__module__ == "builtins" else \
                f"{type(e).__module__.split('.')[0]}.{type(e).__name__}"
            error = f"source failed: {kind}: {one_line(e)}"
        finally:
            self.latest.close(error)
            with self._lock:
                self._ended = True
                late = self._close_on_exit
            if late:
                try:
                    self._close_source()
                except Exception as e:  # noqa: BLE001 - nobody is left to report it to
                    log.warning("while closing the source: %s", one_line(e))

    def _close_source(self) -> None:
        close = getattr(self.frames, "close", None)
        if close:
            close()

    def start(self) -> "Capture":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.latest.close()
        if self.thread.ident is not None:  # started
            self.thread.join(timeout=self.join_timeout)
            with self._lock:
                if not self._ended:  # still in the source (a camera read that blocks): never close it under the thread
                    self._close_on_exit = True
                    log.warning("the capture thread did not stop within %.0f s; the source is closed when it does",
                                self.join_timeout)
                    return
        self._close_source()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
