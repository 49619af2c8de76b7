"""A batch: every input painted into one folder, recorded in its manifest, in this process or on Ray.

    job = StylizeJob("udnie", max_side=720)              # the style is read once, here
    result = run_batch(["videos/", "extra/*.mov"], "out/", job, executor=choose_executor("auto"))
    result.failed                                         # [(input, one-line error), ...]

``run_batch`` finds the inputs (``batch.inputs``), plans each one against the manifest (``batch.manifest``:
skip what is done and unchanged, refuse to replace what was painted with other options), and paints the rest
with a ``paint_one(input, output, *, overwrite, progress)`` callable (a ``StylizeJob``) as tasks of
``executors.run_tasks``. One bad file gives its error line and the batch goes on.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..errors import BatchInterrupted, VidstyleError, error_line
from ..executors import run_tasks
from ..io.atomic import remove_stale_partials
from ..naming import Source, dedupe, output_name
from ..signals import stop_signals
from .inputs import find_inputs, probe_frames
from .job import paint_item
from .manifest import (MANIFEST_NAME, Manifest, earlier_outputs, input_stat, inputs_inside, lock_folder, now,
                       what_changed)


@dataclass
class BatchProgress:
    """What a progress bar needs; handed to ``progress`` at every event.

    ``event``: ``start`` (plan made), ``begin`` (a video started), ``frames`` (frames painted),
    ``done``, ``failed`` or ``finish``; ``input``/``error`` for the video concerned.
    ``frames_total`` is the sum of the frame counts known so far (container headers); 0 when unknown.
    """

    event: str
    files_total: int
    files_done: int
    files_failed: int
    files_skipped: int
    frames_done: int
    frames_total: int
    input: str | None = None
    output: str | None = None
    error: str | None = None


@dataclass
class BatchResult:
    manifest: Path
    items: list[dict]  # this run's items (manifest entries), in input order
    done: int = 0  # painted in this run
    skipped: int = 0  # done in an earlier run, output still there
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, one-line error)
    incomplete: list[tuple[str, str]] = field(default_factory=list)  # painted, but the input ended early
    frames: int = 0
    seconds: float = 0.0
    executor: str = "local"
    ignored: list[str] = field(default_factory=list)  # inputs found that are this folder's earlier outputs

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def exit_code(self) -> int:
        """0 all painted; 1 some failed; 3 all painted but some inputs were truncated."""
        return 1 if self.failed else 3 if self.incomplete else 0

    def to_dict(self) -> dict:
        return {"manifest": str(self.manifest), "done": self.done, "skipped": self.skipped,
                "failed": [{"input": i, "error": e} for i, e in self.failed],
                "incomplete": [{"input": i, "error": e} for i, e in self.incomplete],
                "frames": self.frames, "seconds": round(self.seconds, 3), "executor": self.executor,
                "ignored": self.ignored}



def run_batch(inputs: Sequence[str | os.PathLike | Source], out_dir: str | os.PathLike, paint_one: Callable, *,
              executor: str = "local", label: str | None = None, suffix: str = ".mp4", overwrite: bool = False,
              progress: Callable[[BatchProgress], None] | None = None, cpus_per_task: int | None = None,
              gpus_per_task: float = 1, max_retries: int = 3, ray_init: dict | None = None,
              probe: bool = True) -> BatchResult:
    """Paint every input into ``out_dir``, recording each one in ``out_dir/vidstyle-manifest.json``.

    ``inputs``: specs for ``find_inputs`` (files, folders, globs, URLs) or ``Source`` objects.
    ``paint_one(input, output, *, overwrite, progress)`` paints one video and returns a dict with
    ``frames`` and ``seconds`` (or a RunResult); ``overwrite`` and ``progress`` are passed only if it takes
    them. A ``StylizeJob`` is one. ``label``: the style in the output names (default ``paint_one.label``).
    Outputs: ``out_dir/<stem>.<label><suffix>``; videos found in a folder keep their sub-folders; a name
    already used, or the path of one of the inputs, gets ``-2``, ``-3`` ... and keeps it in later runs (the
    manifest remembers it).
    ``executor``: ``"local"``, ``"ray"`` or a Ray address (see ``choose_executor``); Ray tasks ask for one
    GPU each where the cluster has GPUs (``gpus_per_task``), else ``cpus_per_task`` CPUs, and are retried
    ``max_retries`` times when their worker dies. ``ray_init``: extra ``ray.init`` arguments.
    ``overwrite``: replace outputs that are not ours (ours, recorded as written, are always replaced), and
    ours that were painted with other ``paint_one.options`` or from an input that has changed since (without
    it such an input fails with a one-line error; an output that is still right is skipped).
    Ctrl-C (or SIGTERM) raises ``BatchInterrupted``, whose message says how many videos are done.
    Files that ``out_dir``'s manifest records as outputs are never inputs (``earlier_outputs``). The inputs
    are found before anything is created: when there is nothing to paint, ``out_dir`` is not made.
    """
    t_start = time.perf_counter()
    out = Path(os.path.abspath(os.path.expanduser(out_dir)))
    if out.exists() and not out.is_dir():
        raise VidstyleError(f"with several inputs the output must be a folder: {out}")
    sources = [s if isinstance(s, Source) else None for s in inputs]
    if any(s is None for s in sources):
        sources = find_inputs([s.input if isinstance(s, Source) else s for s in inputs], exclude=[out])
    sources, ignored = earlier_outputs(sources, out)
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise VidstyleError(f"no permission to write in {out}")
    label = label or getattr(paint_one, "label", None) or "stylized"
    lock = lock_folder(out)
    try:
        with stop_signals():  # SIGTERM and SIGHUP end the batch as Ctrl-C does, whatever it is doing then
            result = _run_batch(sources, out, paint_one, label, executor, suffix, overwrite, progress,
                                cpus_per_task, gpus_per_task, max_retries, ray_init, probe, t_start)
        result.ignored = ignored
        return result
    finally:
        if lock is not None:
            lock.close()


def _run_batch(sources: list[Source], out: Path, paint_one, label, executor, suffix, overwrite, progress,
               cpus_per_task, gpus_per_task, max_retries, ray_init, probe, t_start) -> BatchResult:
    manifest = Manifest(out)
    options = getattr(paint_one, "options", None)
    if options is not None:
        options = json.loads(json.dumps(options, default=str))  # as the manifest reads it back

    taken = manifest.taken_outputs() | inputs_inside(sources, out)  # an output never replaces an input
    # (item, skip, what changed, input stat, whether its output was there when the run began)
    plan: list[tuple[dict, bool, str | None, dict, bool]] = []
    for src in sources:
        stat = input_stat(src.key)
        item = manifest.get(src.key, label, suffix)
        if item is None and src.old_key != src.key:  # an older manifest: the same input under its old key
            item = manifest.get(src.old_key, label, suffix)
            if item is not None:
                item["input"] = src.key
        if item is None:
            name = dedupe(output_name(src, label, suffix), taken)
            taken.add(name.as_posix())
            item = manifest.add({"input": src.key, "output": name.as_posix(), "status": "pending", "error": None,
                                 "frames": 0, "seconds": 0.0, "style": label, "complete": None, "written": False,
                                 "attempts": 0, "updated": now()})
        on_disk = manifest.output_path(item).is_file()
        changed = what_changed(item, options, stat) if on_disk else None
        skip = item.get("status") == "done" and on_disk and not changed
        if not skip and not (changed and not overwrite):  # a refused output keeps its status: it is still done
            item["status"], item["error"] = "pending", None
        if not skip and not on_disk:  # claimed before it is painted: a file there later is ours (a run killed
            item["written"] = True    # between its rename and its manifest) and is painted again, not refused
        plan.append((item, skip, changed, stat, on_disk))
    manifest.save()

    result = BatchResult(manifest=manifest.path, items=[p[0] for p in plan], executor=executor)
    result.skipped = sum(p[1] for p in plan)
    shown = {src.key: src.input for src in sources}
    todo, refused = [], []
    for item, skip, changed, stat, on_disk in plan:
        if skip:
            continue
        t = {"item": item, "input": item["input"], "display": shown.get(item["input"], item["input"]),
             "output_path": str(manifest.output_path(item)), "stat": stat,
             # our own output is replaced, unless it was painted with other options or from another input;
             # one that was not there when this run began is our own too (a Ray task retried after its worker
             # died between writing the file and reporting it)
             "overwrite": bool(overwrite or (item.get("written") and not changed) or not on_disk),
             "total": 0, "frames": 0}
        if changed and not overwrite:
            refused.append((t, {"status": "failed", "frames": 0, "seconds": 0.0, "complete": False, "notes": [],
                                "error": f"{item['output']} was painted with other settings ({changed} changed); "
                                         "--overwrite paints it again"}))
            continue
        t["total"] = probe_frames(item["input"]) if probe else 0
        todo.append(t)

    state = {"done": 0, "failed": 0, "frames": 0, "total": sum(t["total"] for t in todo), "shown": 0.0}
    running: dict[int, dict] = {}  # id(t) -> t, for the videos being painted now
    lock = threading.Lock()

    def set_total(t: dict, total: int) -> None:
        state["total"] += total - t["total"]
        t["total"] = total

    def emit(event: str, t: dict | None = None, error: str | None = None) -> None:
        if progress is None:
            return
        if event == "frames":  # at most ten a second
            now = time.monotonic()
            if now - state["shown"] < 0.1:
                return
            state["shown"] = now
        painting = sum(x["frames"] for x in list(running.values()))
        progress(BatchProgress(event, len(plan), state["done"] + state["failed"] + result.skipped, state["failed"],
                               result.skipped, state["frames"] + painting, state["total"],
                               t["display"] if t else None, t["output_path"] if t else None, error))

    def frames_cb(t: dict, n: int, total: int) -> None:
        with lock:
            if t.get("finished"):  # a late progress message from a worker
                return
            running[id(t)] = t
            t["frames"] = n
            if total and not t["total"]:
                set_total(t, total)
        emit("frames", t)

    def notify(kind: str, t: dict, res: dict | None) -> None:
        item = t["item"]
        if kind == "begin":
            if t.get("finished"):
                return
            running[id(t)] = t
            emit("begin", t)
            return
        with lock:
            running.pop(id(t), None)
            t["finished"] = True
            item["attempts"] = int(item.get("attempts") or 0) + 1
            item["updated"] = now()
            item["status"], item["error"] = res["status"], res["error"]
            item["frames"], item["seconds"] = res["frames"], res["seconds"]
            item["complete"] = res["complete"] if res["status"] == "done" else None
            if res.get("notes"):
                item["notes"] = res["notes"]
            else:
                item.pop("notes", None)  # an earlier attempt's
            if res["status"] == "done":
                item["written"] = True
                item.update(t["stat"], options=options)
                state["done"] += 1
                state["frames"] += res["frames"]
                set_total(t, res["frames"])  # the real count, for the progress total
                if not res["complete"]:
                    result.incomplete.append((t["display"], res["error"] or "incomplete input"))
            else:
                state["failed"] += 1
                result.failed.append((t["display"], res["error"]))
            manifest.save()
        emit(res["status"], t, res["error"])

    emit("start")
    try:
        for t, res in refused:  # counted as failed in this run; the manifest keeps the output's own status
            state["failed"] += 1
            result.failed.append((t["display"], res["error"]))
            emit("failed", t, res["error"])
        if todo:
            _paint(todo, paint_one, notify, frames_cb, executor, cpus_per_task, gpus_per_task, max_retries,
                   ray_init)
    except KeyboardInterrupt as e:
        raise BatchInterrupted(e, state["done"] + result.skipped, len(plan), out, MANIFEST_NAME) from e
    finally:
        manifest.save()
    result.done, result.frames = state["done"], state["frames"]
    result.seconds = time.perf_counter() - t_start
    emit("finish")
    return result


def _paint(todo: list[dict], paint_one: Callable, notify: Callable, frames_cb: Callable, executor: str,
           cpus_per_task: int | None, gpus_per_task: float, max_retries: int, ray_init: dict | None) -> None:
    """Each video of ``todo`` as a task (``paint_item``): in this process one after the other, or on Ray; a
    video begins with its first progress message there."""
    begun: set[int] = set()

    def begin(i: int) -> None:
        begun.add(i)
        notify("begin", todo[i], None)

    def on_progress(i: int, n: int, total: int) -> None:
        if i not in begun:
            begin(i)
        frames_cb(todo[i], n, total)

    def on_result(i: int, res: dict) -> None:
        remove_stale_partials(Path(todo[i]["output_path"]))  # left by an attempt whose worker died
        notify("result", todo[i], res)

    def on_error(i: int, e: BaseException) -> None:  # a Ray worker died more than max_retries times
        on_result(i, {"status": "failed", "error": error_line(e), "frames": 0, "seconds": 0.0, "complete": False,
                      "notes": []})

    tasks = [(i, (t["input"], t["output_path"], t["overwrite"])) for i, t in enumerate(todo)]
    try:
        run_tasks(executor, paint_item, paint_one, tasks, on_progress=on_progress, on_result=on_result,
                  on_start=begin, on_error=on_error, cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task,
                  max_retries=max_retries, ray_init=ray_init)
    except KeyboardInterrupt:  # the Ray workers' partial files, once their cancelled tasks are gone
        if executor != "local":
            for t in todo:
                remove_stale_partials(Path(t["output_path"]), wait=5.0)
        raise
