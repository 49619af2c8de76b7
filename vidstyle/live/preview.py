"""The preview window (OpenCV highgui) and its heads-up display."""
from __future__ import annotations

import os
import sys

import cv2
import numpy as np

from .keys import HELP

FONT = cv2.FONT_HERSHEY_SIMPLEX


def compose(output: np.ndarray, source: np.ndarray | None = None) -> np.ndarray:
    """The picture to show: the output, or input | output side by side. RGB uint8 in and out."""
    if source is None:
        return output
    if source.shape[:2] != output.shape[:2]:
        source = cv2.resize(source, (output.shape[1], output.shape[0]), interpolation=cv2.INTER_AREA)
    return np.concatenate([source, output], axis=1)


def _text_block(img: np.ndarray, lines: list[str], x: int, y: int, scale: float) -> None:
    """White text on a dark translucent box, drawn in place."""
    th = max(1, int(round(scale * 2)))
    sizes = [cv2.getTextSize(s, FONT, scale, th)[0] for s in lines]
    line_h = max(h for _, h in sizes) + int(10 * scale) + 2
    w = max(w for w, _ in sizes) + 12
    h = line_h * len(lines) + 6
    x2, y2 = min(img.shape[1], x + w), min(img.shape[0], y + h)
    if x2 > x and y2 > y:
        img[y:y2, x:x2] = (img[y:y2, x:x2] * 0.35).astype(np.uint8)
    for i, s in enumerate(lines):
        cv2.putText(img, s, (x + 6, y + (i + 1) * line_h), FONT, scale, (255, 255, 255), th, cv2.LINE_AA)


def draw_hud(img: np.ndarray, fps: float, latency_ms: float, style: str, extra: str = "",
             show_help: bool = False) -> np.ndarray:
    """Draw fps, capture-to-display latency and the style name on a copy of ``img`` (RGB uint8)."""
    out = img.copy()
    scale = max(0.35, min(0.8, img.shape[1] / 1600))
    line = f"{fps:4.1f} fps  {latency_ms:4.0f} ms  {style}" + (f"  {extra}" if extra else "")
    _text_block(out, [line], 0, 0, scale)
    if show_help:
        _text_block(out, HELP, 0, int(40 * scale) + 8, scale)
    return out


def display_problem(env=None, platform: str | None = None) -> str | None:
    """Why no window can be opened here, or None.

    OpenCV's Qt build aborts the whole process when it cannot reach a display,
    so on Linux we look for one first.
    """
    env = os.environ if env is None else env
    platform = platform or sys.platform
    if platform.startswith("linux") and not env.get("DISPLAY") and not env.get("QT_QPA_PLATFORM"):
        return "no display for the preview window (DISPLAY is not set)"
    return None


def check_display() -> None:
    """Raise a one-line VidstyleError when no window can be opened here."""
    problem = display_problem()
    if problem:
        from ..errors import VidstyleError
        raise VidstyleError(f"{problem}; use --no-preview (with --virtual-cam, --serve or --record), "
                            "or run inside a desktop session")


class Preview:
    """A resizable window; ``show`` returns the key pressed (or -1) and ``closed`` says if the user shut it."""

    def __init__(self, title: str = "vidstyle"):
        self.title = title
        check_display()
        flags = cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | getattr(cv2, "WINDOW_GUI_NORMAL", 0)
        try:
            cv2.namedWindow(title, flags)
        except cv2.error as e:
            from ..errors import VidstyleError
            raise VidstyleError(f"cannot open a preview window ({str(e).strip().splitlines()[-1]}); "
                                "use --no-preview on a machine without a display") from None
        self.sized = False
        self.fullscreen = False

    def show(self, rgb: np.ndarray) -> int:
        if not self.sized:
            cv2.resizeWindow(self.title, rgb.shape[1], rgb.shape[0])
            self.sized = True
        cv2.imshow(self.title, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        return cv2.waitKey(1)

    def poll(self) -> int:
        """Process window events without a new picture; the key pressed or -1."""
        return cv2.waitKey(1)

    @property
    def closed(self) -> bool:
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        except cv2.error:
            return True

    def set_fullscreen(self, on: bool) -> None:
        if on != self.fullscreen:
            cv2.setWindowProperty(self.title, cv2.WND_PROP_FULLSCREEN,
                                  cv2.WINDOW_FULLSCREEN if on else cv2.WINDOW_NORMAL)
            self.fullscreen = on

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass
