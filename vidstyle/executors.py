"""Where tasks run: in this process, in a pool of local processes, or as Ray tasks; one way for all of them.

A *task* is ``fn(shared, *args, progress=...)``: ``shared`` (a paint job, carrying the model file's bytes) is
the same for every task and travels once (into each pool process at its start, or into Ray's object store);
``args`` are the task's own. Whole videos of a batch (``batch.job.paint_item``) and parts of one video
(``segments.paint_part``) are both tasks of this kind, run by ``run_tasks``:

    run_tasks("local", paint_part, job, [(0, (src, part0, path0)), (1, ...)], workers=2,
              on_progress=lambda tag, n, total: ..., on_result=lambda tag, result: ...)

* ``"local"``: one after the other in this process (``workers`` 1), or a spawned process pool;
* ``"ray"`` or a Ray address: one Ray task each, asking for one GPU where the cluster has GPUs, else some CPUs
  (``task_resources``); a worker keeps what it built (the Stylizer) for its next task.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import re
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Callable, Iterable, Sequence

from .errors import Terminated, VidstyleError, error_line
from .signals import as_received, handlers_kept, sigint_ignored, stop_signals

log = logging.getLogger("vidstyle")

INSTALL_HINT = "pip install 'vidstyle[cluster]'"
Task = tuple[int, tuple]  # (tag, args)


# -- choosing ------------------------------------------------------------------------------------
def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None


def require_ray():
    """``import ray``, or the one-line VidstyleError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise VidstyleError(f"running on a Ray cluster needs Ray: {INSTALL_HINT}") from None
    return ray


def gpu_count() -> int:
    try:
        import torch
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001
        return 0


def choose_executor(cluster: str | None = "auto", gpus: int | None = None) -> str:
    """``--cluster`` -> ``"local"``, ``"ray"`` (a local Ray instance, or ``RAY_ADDRESS``) or a Ray address.

    ``local``: this process. ``ray``: Ray (``RAY_ADDRESS`` if set, else a Ray started here).
    ``ray://HOST:PORT`` or ``HOST:PORT``: that cluster. ``auto``: Ray when an address is given
    (``RAY_ADDRESS``) or this machine has more than one GPU (``gpus``, default: counted with torch), else
    local; ``auto`` without Ray installed stays local, with a warning. Explicitly asking for Ray
    without it installed is a VidstyleError saying ``pip install 'vidstyle[cluster]'``.
    """
    c = (cluster or "auto").strip()
    if c == "local":
        return "local"
    if c == "auto":
        address = os.environ.get("RAY_ADDRESS", "").strip()
        n = gpu_count() if gpus is None else int(gpus)
        if not address and n <= 1:
            return "local"
        if not ray_available():
            why = f"RAY_ADDRESS is set ({address})" if address else f"{n} GPUs are present"
            log.warning("%s but Ray is not installed; painting in this process (%s)", why, INSTALL_HINT)
            return "local"
        return address or "ray"
    if c == "ray" or c.startswith("ray://") or re.fullmatch(r"[\w.\-\[\]:]+:\d+", c):
        require_ray()
        return c
    raise VidstyleError(f"--cluster must be auto, local, ray or ray://HOST:PORT, not {c!r}")


def throttled_progress(send: Callable[[int, int], None], every: float = 0.5) -> Callable[[int, int], None]:
    """A worker's ``progress(n, total)`` that passes ``(n, total)`` on to ``send`` at most once every ``every``
    seconds, and always when ``n`` reaches a known ``total`` (the last count is never lost)."""
    last = [0.0]

    def progress(n: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] > every or (total and n >= total):
            last[0] = now
            send(n, total)

    return progress


# -- running -------------------------------------------------------------------------------------
def run_tasks(executor: str, fn: Callable, shared, tasks: Sequence[Task], *,
              on_progress: Callable[[int, int, int], None], on_result: Callable[[int, object], None],
              on_start: Callable[[int], None] | None = None,
              on_error: Callable[[int, BaseException], None] | None = None, workers: int = 1,
              cpus_per_task: int | None = None, gpus_per_task: float = 1, max_retries: int = 3,
              ray_init: dict | None = None, cancel_on_error: bool = False) -> None:
    """Run ``fn(shared, *args, progress=...)`` for each ``(tag, args)`` of ``tasks``.

    ``on_progress(tag, n, total)`` as the tasks report (Ray and pool processes: twice a second at most);
    ``on_result(tag, result)`` as each finishes; ``on_start(tag)`` just before a task starts in this process.
    A task that raises stops the run with its exception, the other tasks cancelled and their processes
    stopped; a Ray task whose worker died more than ``max_retries`` times goes to ``on_error(tag, error)``
    when given (it may raise; by default the error is raised as a one-line VidstyleError). Ctrl-C and
    signals stop every worker too. ``cancel_on_error``: Ray tasks not finished are cancelled when anything
    raises here.
    """
    if executor == "local":
        if workers <= 1:
            for tag, args in tasks:
                if on_start is not None:
                    on_start(tag)
                on_result(tag, fn(shared, *args, progress=lambda n, total, tag=tag: on_progress(tag, n, total)))
        else:
            _run_pool(fn, shared, tasks, workers, on_progress, on_result)
        return
    _run_ray(executor, fn, shared, tasks, on_progress, on_result, on_error, cpus_per_task, gpus_per_task,
             max_retries, ray_init, cancel_on_error)


# -- local processes -----------------------------------------------------------------------------
_worker_state: dict = {}  # in a pool process: the progress queue and the shared object, set at its start


def _pool_init(queue, shared, parent: int) -> None:
    """ProcessPoolExecutor initializer: the queue and the shared job travel once per process, at its start.
    The worker dies with its parent (``die_with_parent``), so that ``kill -9`` of a run leaves nothing running."""
    die_with_parent(parent)
    _worker_state.update(queue=queue, shared=shared)


def die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when the one that started it (``parent``, its PID) dies; where there is
    no such request (not Linux), nothing. A parent gone already means now."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


def _pool_call(fn: Callable, tag: int, args: tuple):
    queue = _worker_state["queue"]
    progress = throttled_progress(lambda n, total: queue.put((tag, n, total)))
    return fn(_worker_state["shared"], *args, progress=progress)


def stop_workers(pool: ProcessPoolExecutor, grace: float = 2.0) -> None:
    """Stop the pool's workers (after Ctrl-C, a signal or a failed task): SIGTERM, then SIGKILL for any still
    there after ``grace`` seconds. A worker that is writing a file takes SIGTERM as a stop (it removes its
    partial file) and would then wait for its next task, and the pool's shutdown for it, forever."""
    procs = [p for p in (getattr(pool, "_processes", None) or {}).values() if p.is_alive()]
    for p in procs:
        p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join(5)


def _run_pool(fn, shared, tasks, workers, on_progress, on_result) -> None:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # torch and threads: never fork
    queue = ctx.Queue()

    def drain() -> None:
        while not queue.empty():
            on_progress(*queue.get_nowait())

    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_pool_init,
                             initargs=(queue, shared, os.getpid())) as pool:
        pending: set = set()
        try:
            with sigint_ignored():  # the workers start in submit: Ctrl-C reaches this process only
                futs = {pool.submit(_pool_call, fn, tag, args): tag for tag, args in tasks}
            pending = set(futs)
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                drain()
                for f in done:
                    on_result(futs[f], f.result())
        except BaseException:
            for f in pending:
                f.cancel()
            stop_workers(pool)
            raise


# -- Ray -----------------------------------------------------------------------------------------
def connect_ray(executor: str, init_kwargs: dict | None = None):
    """Connect to (or start) Ray for ``executor``; returns (ray, started_here)."""
    ray = require_ray()
    if ray.is_initialized():
        return ray, False
    kwargs = dict(init_kwargs or {})
    if executor != "ray":
        kwargs["address"] = executor
    elif not os.environ.get("RAY_ADDRESS"):
        kwargs.setdefault("include_dashboard", False)
    kwargs.setdefault("logging_level", logging.WARNING)  # not Ray's start-up lines on a user's terminal
    where = kwargs.get("address") or os.environ.get("RAY_ADDRESS") or "a new local instance"
    if "address" not in kwargs and not os.environ.get("RAY_ADDRESS"):
        reap_when_gone()  # the local instance started here ends with this process, even on kill -9
    try:
        with handlers_kept():  # Ray's own SIGTERM handler dumps a C++ stack and leaves partial files
            ray.init(**kwargs)
    except SystemExit as e:  # a signal while ray.init ran: its handler says sys.exit(signum)
        _shutdown(ray)
        if e.code in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            raise Terminated(e.code) from None
        raise
    except KeyboardInterrupt:
        _shutdown(ray)
        raise
    except Exception as e:  # noqa: BLE001 - ConnectionError, TimeoutError, ValueError for a missing client ...
        if "ray[client]" in str(e):
            raise VidstyleError(f"ray:// addresses need the Ray client: {INSTALL_HINT}") from None
        raise VidstyleError(f"cannot start or reach Ray ({where}): {error_line(e)}") from None
    return ray, True


# Run as its own small process: while its parent lives, it notes the parent's descendants (by PID and start
# time) twice a second; once the parent is gone, it kills those still there (a PID used again by another
# process has another start time and is left alone).
_REAPER = """
import os, sys, time
import psutil
parent, me, seen = int(sys.argv[1]), os.getpid(), {}
while os.getppid() == parent:
    try:
        for p in psutil.Process(parent).children(recursive=True):
            if p.pid != me and p.pid not in seen:
                seen[p.pid] = p.create_time()
    except psutil.Error:
        pass
    time.sleep(0.5)
for pid, started in seen.items():
    try:
        p = psutil.Process(pid)
        if abs(p.create_time() - started) < 0.01:
            p.kill()
    except psutil.Error:
        pass
"""


def reap_when_gone() -> None:
    """Have the processes this one starts (a local Ray instance: its raylet's agents outlive a driver killed
    with SIGKILL, and so does what ray.init started when a signal stops it) killed when this process dies,
    however it dies: a watcher process does it."""
    import subprocess
    import sys

    if importlib.util.find_spec("psutil") is None:  # Ray brings psutil; without it there is nothing to watch with
        return
    subprocess.Popen([sys.executable, "-c", _REAPER, str(os.getpid())], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)


def _shutdown(ray) -> None:
    """``ray.shutdown()`` after an interrupted ``ray.init``, whatever state it left."""
    try:
        ray.shutdown()
    except Exception:  # noqa: BLE001 - half started: what is left goes with this process (reap_when_gone)
        pass


def task_resources(ray, cpus_per_task: int | None = None, gpus_per_task: float = 1) -> dict:
    """One GPU per task where the cluster has GPUs, else ``cpus_per_task`` CPUs (default: up to 4, never
    more than the biggest node has, so that no task waits forever)."""
    nodes = [n for n in ray.nodes() if n.get("Alive", n.get("alive", True))]
    biggest = max((n.get("Resources", {}).get("CPU", 0) for n in nodes), default=0) or 1
    if ray.cluster_resources().get("GPU", 0) >= gpus_per_task > 0:
        return {"num_gpus": gpus_per_task, "num_cpus": min(cpus_per_task or 1, biggest)}
    return {"num_cpus": max(1, min(cpus_per_task or 4, int(biggest)))}


_RAY_DEFS: tuple | None = None


def ray_definitions(ray):
    """The one remote function (``fn(shared, *args, progress=...)`` on a worker) and the progress actor,
    defined once Ray is imported."""
    global _RAY_DEFS
    if _RAY_DEFS is None:
        # max_calls=0: a worker is kept for the next task with the Stylizer it built (Ray's default
        # for GPU tasks is a new process per task, which would load the model for every task).
        @ray.remote(max_calls=0)
        def call(fn, shared, args, sink, tag):
            return fn(shared, *args, progress=throttled_progress(lambda n, total: sink.update.remote(tag, n, total)))

        @ray.remote(num_cpus=0)
        class ProgressSink:
            def __init__(self):
                self.state = {}

            def update(self, tag, n, total):
                self.state[tag] = (n, total)

            def take(self):
                state, self.state = self.state, {}
                return state

        _RAY_DEFS = (call, ProgressSink)
    return _RAY_DEFS


def wait_ray_tasks(ray, refs: Iterable, sink, on_progress: Callable[[int, int, int], None],
                   on_ready: Callable[[object], None], *, cancel_on_error: bool = False) -> None:
    """Wait for the Ray tasks ``refs`` (object refs) one by one.

    Twice a second what the tasks reported to ``sink`` (a ``ProgressSink``) goes to ``on_progress(tag, n, total)``
    (best effort: its errors are ignored); each finished task's ref goes to ``on_ready(ref)``, which may raise.
    The tasks not finished are cancelled on Ctrl-C or a signal, and with ``cancel_on_error`` when anything raises.
    """
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            try:
                for tag, (n, total) in ray.get(sink.take.remote(), timeout=30).items():
                    on_progress(tag, n, total)
            except Exception:  # noqa: BLE001 - progress is best effort
                pass
            for ref in ready:
                on_ready(ref)
    except BaseException as e:
        if cancel_on_error or isinstance(e, KeyboardInterrupt):  # Ctrl-C or a signal stops every task
            for ref in pending:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - finished meanwhile, or Ray going down
                    pass
        if isinstance(e, KeyboardInterrupt):
            raise as_received(e) from None
        raise


def _run_ray(executor, fn, shared, tasks, on_progress, on_result, on_error, cpus_per_task, gpus_per_task,
             max_retries, ray_init, cancel_on_error) -> None:
    ray, started = connect_ray(executor, ray_init)
    try:
        with stop_signals():  # SIGTERM and SIGHUP stop the tasks, as Ctrl-C does
            _run_ray_tasks(ray, fn, shared, tasks, on_progress, on_result, on_error, cpus_per_task, gpus_per_task,
                           max_retries, cancel_on_error)
    finally:
        if started:
            ray.shutdown()  # its workers go with it


def _run_ray_tasks(ray, fn, shared, tasks, on_progress, on_result, on_error, cpus_per_task, gpus_per_task,
                   max_retries, cancel_on_error) -> None:
    call, ProgressSink = ray_definitions(ray)
    sink = ProgressSink.remote()
    shared_ref = ray.put(shared)  # the job (and its model) travels once, not once per task
    opts = task_resources(ray, cpus_per_task, gpus_per_task)
    log.info("ray: %d tasks, %s each", len(tasks), opts)
    refs = {call.options(max_retries=max_retries, retry_exceptions=False, **opts).remote(
        fn, shared_ref, args, sink, tag): tag for tag, args in tasks}

    def on_ready(ref) -> None:
        tag = refs[ref]
        try:
            result = ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # the task raised: its own error, as in this process
            cause = getattr(e, "cause", None)
            if isinstance(cause, VidstyleError):
                raise cause from None
            _failed(tag, e, on_error)
            return
        except ray.exceptions.RayError as e:  # the worker died more than max_retries times
            _failed(tag, e, on_error)
            return
        on_result(tag, result)

    wait_ray_tasks(ray, refs, sink, on_progress, on_ready, cancel_on_error=cancel_on_error)




def _failed(tag: int, error: BaseException, on_error) -> None:
    if on_error is None:
        cause = getattr(error, "cause", None)
        raise VidstyleError(f"task {tag} failed: {error_line(cause or error)}") from None
    on_error(tag, error)
