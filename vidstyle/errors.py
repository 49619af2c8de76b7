"""The exception types for problems a user can fix, and for a run stopped by a signal."""
from __future__ import annotations

import signal


class VidstyleError(Exception):
    """A user-facing error: its message is one line that says what went wrong.

    The command line prints it as ``error: <message>`` and exits with code 2;
    anything else escaping the library is a bug.
    """


def one_line(e: BaseException, limit: int = 300) -> str:
    """An exception as one line (OpenCV's, FFmpeg's and OpenVINO's messages can span several)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0][:limit] if lines else type(e).__name__


class IncompleteInput(VidstyleError):
    """The input ended early (truncated); what could be decoded was written."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived while a video was being written; the partial file is removed.

    It is a KeyboardInterrupt, so everything that cleans up after Ctrl-C cleans up after it too.
    ``exit_code`` is what a shell reports for a process killed by that signal (128 + number).
    """

    def __init__(self, signum: int):
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")
