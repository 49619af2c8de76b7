"""The exception types for problems a user can fix, and for a run stopped by a signal."""
from __future__ import annotations

import signal
from contextvars import ContextVar


class VidstyleError(Exception):
    """A user-facing error: its message is one line that says what went wrong.

    The command line prints it as ``error: <message>`` and exits with code 2;
    anything else escaping the library is a bug.
    """


def one_line(e: BaseException, limit: int = 300) -> str:
    """An exception as one line (OpenCV's, FFmpeg's and OpenVINO's messages can span several)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0][:limit] if lines else type(e).__name__


# How the switch that replaces an existing output is named in error lines: the Python API's keyword by default;
# the command line names its option while a command runs (commands.common.user_errors).
overwrite_switch: ContextVar[str] = ContextVar("overwrite_switch", default="overwrite=True")


def error_line(e: BaseException) -> str:
    """One line for a failure: a VidstyleError's message, else ``Type: message`` (a batch's or a task's error)."""
    text = str(e).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(e, VidstyleError):
        return first or type(e).__name__
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


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


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM/SIGHUP, ``errors.Terminated``) during a batch; the message says how many videos are done.

    ``exit_code``: 130 for Ctrl-C, else the signal's (128 + number); ``done``, ``total``: videos. The message
    already says what was kept, so the command line prints it as it is.
    """

    def __init__(self, cause: KeyboardInterrupt, done: int, total: int, folder, manifest: str):
        self.exit_code = getattr(cause, "exit_code", 130)
        self.done, self.total = done, total
        super().__init__(f"{str(cause) or 'interrupted'}: {done} of {total} videos done in {folder} "
                         f"(recorded in {manifest}); the same command again paints the rest")
