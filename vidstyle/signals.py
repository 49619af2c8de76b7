"""Signals while files are written: the one home for taking over SIGINT, SIGTERM and SIGHUP.

* ``stop_signals()``: inside, SIGTERM and SIGHUP raise ``Terminated`` in the main thread, so that ``finally``
  blocks remove partial files (a writer is open, a batch or segments run is going on);
* ``signals_held()``: inside, Ctrl-C, SIGTERM and SIGHUP are recorded, not raised, and ``raise_held`` raises
  the first afterwards: a training step, or a recording being finalised, is never cut in half;
* ``sigint_ignored()``: processes started inside ignore Ctrl-C, so that only the parent handles it and stops them;
* ``handlers_kept()``: the handlers as they were before the block (``ray.init`` installs its own).

Each changes handlers only in the main thread, and only those that would otherwise kill the process or raise
(an ignored signal, under ``nohup``, and a program's own handler stay as they are).
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator

from .errors import Terminated

_STOP = [getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


_received: list[int] = []  # the stop signals that came: a library that swallows Terminated loses its number


def _raise_terminated(signum, _frame):
    _received.append(signum)
    raise Terminated(signum)


def as_received(e: KeyboardInterrupt) -> KeyboardInterrupt:
    """``e``, or the ``Terminated`` it stands for: code that checks for signals in C (Ray's waits) turns the
    exception a handler raised into a plain KeyboardInterrupt."""
    if not isinstance(e, Terminated) and _received:
        return Terminated(_received[-1])
    return e


def raises_terminated(handler) -> bool:
    """Whether ``handler`` (``signal.getsignal``) is ``stop_signals``' (it raises Terminated)."""
    return handler is _raise_terminated


class _StopSignals:
    """SIGTERM and SIGHUP taken over by the outermost ``stop_signals`` and given back by it (nested uses count)."""

    def __init__(self):
        self.users = 0
        self.saved: dict = {}

    def acquire(self) -> bool:
        """Take over the signals (main thread only); True when this call must be paired with release()."""
        if not _main_thread():
            return False
        if self.users == 0:
            _received.clear()
            self.saved = {s: signal.signal(s, _raise_terminated) for s in _STOP
                          if signal.getsignal(s) is signal.SIG_DFL}
        self.users += 1
        return True

    def release(self) -> None:
        self.users -= 1
        if self.users == 0:
            for s, old in self.saved.items():
                try:
                    signal.signal(s, old)
                except ValueError:  # not in the main thread
                    pass
            self.saved = {}


_stop_signals = _StopSignals()


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Inside: SIGTERM and SIGHUP raise Terminated in the main thread (where they are left at their default
    action, which would kill the process and leave partial files behind); elsewhere and outside, nothing changes."""
    held = _stop_signals.acquire()
    try:
        yield
    finally:
        if held:
            _stop_signals.release()


@contextlib.contextmanager
def signals_held(signals: tuple[int, ...] | None = None,
                 on_first: Callable[[int], None] | None = None) -> Iterator[list[int]]:
    """Inside: the ``signals`` (default Ctrl-C, SIGTERM and SIGHUP) are recorded, not raised; the block gets the
    list of those that came, for ``raise_held`` when its work is done. ``on_first(signum)`` is called on the first.

    Only in the main thread, and only for signals that would raise there (Python's Ctrl-C handler, and
    ``stop_signals``' for SIGTERM and SIGHUP): an ignored signal stays ignored, a caller's own handler stays in
    charge, and a signal left to kill the process still does. Nested uses: the inner one takes nothing.
    """
    hits: list[int] = []
    if not _main_thread():
        yield hits
        return

    def hold(signum, _frame):
        if not hits and on_first is not None:
            on_first(signum)
        hits.append(signum)

    taken = {}
    for s in signals if signals is not None else (signal.SIGINT, *_STOP):
        old = signal.getsignal(s)
        if old is signal.default_int_handler or raises_terminated(old):
            taken[s] = signal.signal(s, hold)
    try:
        yield hits
    finally:
        for s, old in taken.items():
            signal.signal(s, old)


def raise_held(hits: list[int]) -> None:
    """Raise what ``signals_held`` recorded: KeyboardInterrupt for Ctrl-C, ``Terminated`` for the others."""
    if not hits:
        return
    if hits[0] == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(hits[0])


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """Processes started in here ignore SIGINT: a Python started with SIGINT ignored keeps ignoring it.

    Ctrl-C then reaches only this process, which stops the workers, instead of every worker printing a
    KeyboardInterrupt traceback. Only the main thread can change handlers; starting the processes takes
    milliseconds.
    """
    if not _main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def handlers_kept():
    """The SIGINT, SIGTERM and SIGHUP handlers as they were before the block (main thread only)."""
    if not _main_thread():
        yield
        return
    names = [n for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    saved = {getattr(signal, n): signal.getsignal(getattr(signal, n)) for n in names}
    try:
        yield
    finally:
        for s, handler in saved.items():
            if handler is not None:
                signal.signal(s, handler)
