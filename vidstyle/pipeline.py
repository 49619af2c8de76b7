"""Decode, paint and encode at the same time: one thread per stage, bounded queues between.

    reader thread ──q_in──> painter thread (batches) ──q_out──> caller's thread (sink)

Queues hold a few batches, so memory stays flat and the slowest stage sets the
pace. A failure in any stage stops the others and is raised in the caller;
Ctrl-C in the caller stops the threads without draining anything, and waits until they have
ended (a further Ctrl-C meanwhile is held back), so that the caller may close what they used.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
U = TypeVar("U")
_END = object()


class _Stop(Exception):
    pass


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            pass


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        if stop.is_set():
            raise _Stop
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            pass


def run_stages(source: Iterable[T], process: Callable[[list[T]], list[U]], batch_size: int = 1,
               depth: int = 3) -> Iterator[tuple[T, U]]:
    """Yield (input, output) pairs in order while ``source`` and ``process`` run in their own threads.

    ``process`` takes a list of up to ``batch_size`` items and returns one output per item;
    any other count is a RuntimeError raised here (never frames dropped in silence).
    """
    batch_size = max(1, int(batch_size))
    q_in: queue.Queue = queue.Queue(maxsize=depth * batch_size)
    q_out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    errors: list[BaseException] = []

    def read():
        try:
            for item in source:
                _put(q_in, item, stop)
            _put(q_in, _END, stop)
        except _Stop:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            errors.append(e)
            stop.set()

    def paint():
        try:
            done = False
            while not done:
                batch = []
                while len(batch) < batch_size:
                    item = _get(q_in, stop)
                    if item is _END:
                        done = True
                        break
                    batch.append(item)
                if batch:
                    outputs = list(process(batch))
                    if len(outputs) != len(batch):  # zip would drop frames without a word
                        raise RuntimeError(f"the processing stage returned {len(outputs)} outputs for a batch "
                                           f"of {len(batch)} inputs: every input needs exactly one output")
                    _put(q_out, (batch, outputs), stop)
            _put(q_out, _END, stop)
        except _Stop:
            pass
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            stop.set()

    ended = [_start(read, "vidstyle-read"), _start(paint, "vidstyle-paint")]
    finished = False
    try:
        while True:
            try:
                got = _get(q_out, stop)
            except _Stop:
                break
            if got is _END:
                break
            batch, outputs = got
            for pair in zip(batch, outputs, strict=True):
                yield pair
        finished = True
    finally:
        stop.set()
        held = _wait(ended)
    if held is not None and finished:  # else what stopped the pipeline (most often a first Ctrl-C) goes on
        raise held
    if errors:
        raise errors[0]


def _start(target: Callable[[], None], name: str) -> threading.Event:
    """Run ``target`` in a daemon thread; returns an Event set when it has returned.

    (Not ``Thread.join``: a Ctrl-C that interrupts it can leave a running thread taken as stopped.)
    """
    ended = threading.Event()

    def run():
        try:
            target()
        finally:
            ended.set()

    threading.Thread(target=run, name=name, daemon=True).start()
    return ended


def _wait(ended: list[threading.Event]) -> KeyboardInterrupt | None:
    """Wait until every stage thread has ended (``ended``); returns a Ctrl-C that came meanwhile (held back).

    Never returns while one runs: the caller then closes what it was using (the reader's generator and
    container), and that under a running thread is a ``ValueError: generator already executing`` or worse.
    A stalled network read ends at the reader's read timeout, and the thread then sees ``stop``.
    """
    held = None
    while True:
        try:  # the whole loop: a signal's KeyboardInterrupt may come at any line
            for e in ended:
                e.wait()
            return held
        except KeyboardInterrupt as e:
            held = e
