"""Many videos in one run: input expansion, a resumable manifest, and local or Ray executors.

    job = StylizeJob("udnie", max_side=720)              # the style is read once, here
    result = run_batch(["videos/", "extra/*.mov"], "out/", job, executor=choose_executor("auto"))
    result.failed                                         # [(input, one-line error), ...]

* ``expand_inputs``/``find_inputs``: files, folders (searched recursively for videos by extension),
  globs and URLs, in a stable order, without duplicates.
* ``Manifest``: ``OUT/vidstyle-manifest.json`` records every input's status (``done``, ``failed``
  with its one-line error, ``pending``), its output, frames and seconds. It is rewritten atomically
  after every change, by the driver only, so a worker that dies never leaves it wrong. A second run
  skips what is ``done``, still on disk and painted from the same input with the same options, and retries
  the rest.
* ``run_batch``: paints what is left with a ``paint_one(input, output, *, overwrite, progress)``
  callable, in this process (``executor="local"``) or as Ray tasks (``"ray"`` or a cluster address).
  One bad file gives its error line and the batch goes on.
* ``StylizeJob``: the ``paint_one`` for ``vidstyle run``. It is picklable and carries the model file's
  bytes, so Ray ships it once through the object store; each worker process builds its Stylizer once
  and keeps it for every video it paints.
"""
from __future__ import annotations

import glob
import hashlib
import importlib.util
import inspect
import json
import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Sequence

import numpy as np

from .errors import BatchInterrupted, IncompleteInput, VidstyleError
from .io.reader import is_url, local_path, open_container
from .io.writer import remove_stale_partials

log = logging.getLogger("vidstyle")

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".m2v", ".ts", ".mts", ".m2ts",
    ".wmv", ".flv", ".3gp", ".3g2", ".ogv", ".vob", ".mxf", ".dv", ".y4m", ".nut", ".asf", ".rm", ".rmvb",
})
MANIFEST_NAME = "vidstyle-manifest.json"
MANIFEST_VERSION = 1
INSTALL_HINT = "pip install 'vidstyle[cluster]'"
_GLOB_CHARS = re.compile(r"[*?\[]")


# -- inputs --------------------------------------------------------------------------------------
def is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class Source:
    """One input video: ``input`` as found, ``folder`` its place below the folder it was found in."""

    input: str
    folder: PurePosixPath = PurePosixPath()  # relative folder kept in the output layout ("" for files)

    @property
    def key(self) -> str:
        """The manifest key, also the path painted: a local file's real path (``file:`` dropped, links followed:
        one file reached by two names is one input, and ``link/..`` means what the file system says), a URL
        unchanged."""
        return self.input if is_url(self.input) else os.path.realpath(local_path(self.input))

    @property
    def old_key(self) -> str:
        """The key manifests written before links were followed hold: the absolute path as written."""
        return self.input if is_url(self.input) else os.path.abspath(local_path(self.input))


def _walk(folder: Path, exclude: list[Path]) -> list[Path]:
    """Video files below ``folder``, sorted; hidden names (``.x``, partial outputs) skipped, and the folders of
    ``exclude`` that lie strictly inside ``folder`` (an ``exclude`` that is ``folder`` or above it holds the
    inputs themselves: ``earlier_outputs`` then tells the outputs from them)."""
    exclude = [e for e in exclude if _same_or_inside(e, folder) and not _same_or_inside(folder, e)]
    found = []
    seen = {os.path.realpath(folder)}  # linked folders are followed (a NAS linked into the tree), each once
    for root, dirs, files in os.walk(folder, followlinks=True):
        r = Path(root)
        keep = []
        for d in sorted(dirs):
            real = os.path.realpath(r / d)
            if d.startswith(".") or real in seen or any(_same_or_inside(r / d, e) for e in exclude):
                continue
            seen.add(real)
            keep.append(d)
        dirs[:] = keep
        found += [r / f for f in files if not f.startswith(".") and is_video_file(Path(f))]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _same_or_inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False


def find_inputs(specs: Iterable[str | os.PathLike], exclude: Iterable[str | os.PathLike] = ()) -> list[Source]:
    """Expand ``specs`` into the videos to paint, in order, duplicates removed.

    A file (also as ``file:PATH``) is taken as it is (whatever its extension); a folder is searched recursively for files
    with a video extension (``VIDEO_EXTENSIONS``) and keeps its layout in ``Source.folder``; a glob
    (``*``, ``?``, ``[``; ``**`` recurses) keeps the video files and folders it matches; a URL is kept
    as it is. ``exclude``: folders not searched (the output folder) where they lie inside a folder searched.
    A missing file, an empty folder or a glob that matches nothing is a VidstyleError, before anything is painted.
    """
    excl = [Path(e) for e in exclude]
    out: list[Source] = []
    seen: set[str] = set()

    def add(src: Source) -> None:
        if src.key not in seen:
            seen.add(src.key)
            out.append(src)

    def add_folder(folder: Path) -> int:
        files = _walk(folder, excl)
        for f in files:
            add(Source(str(f), PurePosixPath(f.parent.relative_to(folder).as_posix())))
        return len(files)

    for raw in specs:
        spec = os.fspath(raw)
        if is_url(spec):
            add(Source(spec))
            continue
        p = Path(local_path(spec)).expanduser()
        if p.is_file():
            add(Source(str(p)))
        elif p.is_dir():
            if not add_folder(p):
                raise VidstyleError(f"no videos in folder {spec} (looked for {', '.join(sorted(VIDEO_EXTENSIONS)[:6])}, ...)")
        elif _GLOB_CHARS.search(spec):
            matches = sorted(glob.glob(str(p), recursive=True))
            n = 0
            for m in matches:
                mp = Path(m)
                if mp.is_dir():
                    n += add_folder(mp)
                elif mp.is_file() and is_video_file(mp) and not mp.name.startswith("."):
                    add(Source(m))
                    n += 1
            if not n:
                raise VidstyleError(f"no videos match {spec}")
        else:
            raise VidstyleError(f"input not found: {spec}")
    return out


def expand_inputs(specs: Iterable[str | os.PathLike], exclude: Iterable[str | os.PathLike] = ()) -> list[str]:
    """Files, folders (recursive, by video extension), globs and URLs -> the inputs, in order, unique."""
    return [s.input for s in find_inputs(specs, exclude)]


def safe_label(label: str) -> str:
    """A style or mix label as it appears in file names (``udnie:0.5+scream:0.5`` -> ``udnie_0_5+scream_0_5``):
    the one rule for videos (``output_name``, ``api.default_output``) and images (``api.stylize_image``)."""
    return "".join(c if c.isalnum() or c in "-_+" else "_" for c in label)


def input_stem(src: str) -> str:
    """The input's name without its extension, for output names: a file's stem (``file:`` dropped), a URL's
    last path part without the query (``talk`` for ``https://h/p/talk.m3u8?x=1``); ``video`` when empty."""
    path = src.split("?")[0].rstrip("/") if is_url(src) else local_path(src)
    return Path(path).stem or "video"


def output_name(source: Source, label: str, suffix: str = ".mp4") -> PurePosixPath:
    """``<folder>/<input stem>.<style><suffix>``, relative to the output folder (also ``vidstyle run``'s
    default name for one video: ``api.default_output``)."""
    return source.folder / f"{input_stem(source.input)}.{safe_label(label)}{suffix}"


def _dedupe(name: PurePosixPath, taken: set[str]) -> PurePosixPath:
    """``clip.style.mp4`` -> ``clip-2.style.mp4`` ... when the name is taken already."""
    if name.as_posix() not in taken:
        return name
    stem, _, rest = name.name.partition(".")
    k = 2
    while True:
        cand = name.with_name(f"{stem}-{k}.{rest}" if rest else f"{stem}-{k}")
        if cand.as_posix() not in taken:
            return cand
        k += 1


# -- manifest ------------------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync it, and rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise


class Manifest:
    """``DIR/vidstyle-manifest.json``: ``{"version": 1, "items": [...]}``, one item per (input, style).

    Item keys: ``input`` (absolute path or URL), ``output`` (relative to DIR), ``status`` (``done``,
    ``failed`` or ``pending``), ``error`` (one line or null), ``frames``, ``seconds``; and also ``style``,
    ``complete`` (false for a truncated input), ``written`` (the output file is ours: a later run may
    replace it), ``attempts``, ``updated``, ``notes`` (of the last attempt); and what the output on disk was
    painted from: ``options`` (the painter's ``options``, e.g. ``StylizeJob.options``), ``input_size`` and
    ``input_mtime`` (ns; null for a URL). Items of earlier runs that this run does not touch are kept.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST_NAME
        self.items: list[dict] = []
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                items = data["items"]
                if not isinstance(items, list) or not all(
                        isinstance(i, dict) and isinstance(i.get("input"), str) and isinstance(i.get("output"), str)
                        and not Path(i["output"]).is_absolute() and ".." not in Path(i["output"]).parts
                        and i.get("status", "pending") in ("pending", "done", "failed") for i in items):
                    raise ValueError("items is not a list of objects with an input, an output inside the folder "
                                     "and a status")
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise VidstyleError(f"{self.path} is not a readable vidstyle manifest ({e}); "
                                    "move it away to start afresh") from None
            self.items = items
        self._lock = threading.Lock()

    def get(self, input_key: str, style: str | None, suffix: str | None = None) -> dict | None:
        """The item for this input and style (and output suffix, when given), or None."""
        for item in self.items:
            if item["input"] == input_key and item.get("style") == style and (
                    suffix is None or Path(item.get("output") or "").suffix.lower() == suffix.lower()):
                return item
        return None

    def add(self, item: dict) -> dict:
        self.items.append(item)
        return item

    def output_path(self, item: dict) -> Path:
        return self.folder / item["output"]

    def taken_outputs(self) -> set[str]:
        return {i["output"] for i in self.items if i.get("output")}

    def save(self) -> None:
        with self._lock:
            # ASCII escapes: a file name that is not UTF-8 (a lone surrogate in Python) survives the round trip
            atomic_write_text(self.path, json.dumps({"version": MANIFEST_VERSION, "items": self.items},
                                                    indent=1, ensure_ascii=True) + "\n")


# -- results and progress ------------------------------------------------------------------------
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


def error_line(e: BaseException) -> str:
    """One line for a failure: the VidstyleError's message, else ``Type: message``."""
    text = str(e).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(e, VidstyleError):
        return first or type(e).__name__
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def probe_frames(src: str) -> int:
    """The frame count in a local file's header (0 when unknown or unreadable); cheap, no decoding.

    Opened with the reader's ``open_container`` (its protocol whitelist; ``file:`` and protocol-like names read
    as files), not with a ``VideoReader``: that decodes the first frame, and this runs for every input of a
    batch before anything is painted. Where the header has no count, it is estimated from the duration
    (``VideoInfo.frames`` says 0 there): a total for the progress bar, never used to check anything.
    """
    if is_url(src):
        return 0
    try:
        with open_container(src) as c:
            if not c.streams.video:
                return 0
            s = c.streams.video[0]
            if s.frames:
                return int(s.frames)
            if s.duration and s.time_base and s.average_rate:
                return int(round(float(s.duration * s.time_base * s.average_rate)))
    except Exception:  # noqa: BLE001 - a bad file fails later, with its own error line
        return 0
    return 0


# -- painting one video (the same code in-process and on a Ray worker) -----------------------------
def _accepted_kwargs(fn: Callable) -> set[str] | None:
    """Keyword names ``fn`` takes; None when it takes **kwargs."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def paint_item(paint_one: Callable, input: str, output: str, overwrite: bool,
               progress: Callable[[int, int], None] | None = None) -> dict:
    """Run ``paint_one`` on one video; never raises for a bad video (KeyboardInterrupt and worker death aside).

    Returns ``{"status": "done"|"failed", "error", "frames", "seconds", "complete", "notes"}``.
    """
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {}
    names = _accepted_kwargs(paint_one)
    if names is None or "overwrite" in names:
        kwargs["overwrite"] = overwrite
    if names is None or "progress" in names:
        kwargs["progress"] = progress
    t0 = time.perf_counter()
    try:
        res = paint_one(input, str(out), **kwargs)
        status, error, complete = "done", None, True
    except IncompleteInput as e:  # what could be decoded was written
        res = getattr(e, "result", None)
        status, error, complete = ("done", error_line(e), False) if res is not None else ("failed", error_line(e), False)
    except Exception as e:  # noqa: BLE001 - one bad video must not stop the batch
        log.debug("painting %s failed", input, exc_info=True)
        res, status, error, complete = None, "failed", error_line(e), False
    if hasattr(res, "to_dict"):
        res = res.to_dict()
    res = dict(res or {})
    return {"status": status, "error": error, "frames": int(res.get("frames") or 0),
            "seconds": float(res.get("seconds") or round(time.perf_counter() - t0, 3)),
            "complete": complete, "notes": list(res.get("notes") or [])}


# -- the paint_one of ``vidstyle run`` --------------------------------------------------------------
_STYLIZERS: dict[str, object] = {}  # per process: job key -> Stylizer (one model kept at a time)
_STYLIZER_LOCK = threading.Lock()


class StylizeJob:
    """A picklable ``paint_one``: ``job(input, output, overwrite=..., progress=...) -> dict``.

    The style is resolved and checked here (a bad style fails at once, in the driver), and the model
    file's bytes travel with the job: no path needs to exist on a remote worker. The Stylizer is built
    on first use in each process and kept there, so a worker loads the model once for all its videos.
    ``temporal``: a fresh ``temporal.Stabilizer`` per video (``temporal_strength``: None for the
    style's own; ``flow``).
    ``video_options``: more keyword arguments for ``api.stylize_video`` (e.g. ``chroma``, ``deinterlace``).
    """

    def __init__(self, style: str | os.PathLike | None = None, *, mix: str | dict | None = None,
                 device: str = "auto", max_side: int | None = None, out_size: tuple[int, int] | None = None,
                 strength: float = 1.0, preserve_color: bool = False, batch_size: int | None = None,
                 codec: str | None = None, crf: int | None = None, preset: str | None = None,
                 temporal: bool = False, temporal_strength: float | None = None, flow: str = "auto",
                 video_options: dict | None = None, engine: str = "auto", precision: str = "auto",
                 brush: float = 1.0):
        from .models import files, registry

        path, inner = registry.resolve(style)
        if isinstance(mix, str):
            mix = registry.parse_mix(mix)
        elif mix is not None:
            mix = registry.check_mix(mix)
        model = files.load_model(path)  # validates the file; the label names the outputs
        self.label: str = model.select(inner, mix)
        if not 0.0 <= strength <= 1.0:
            raise VidstyleError(f"--strength must be between 0 and 1, not {strength}")
        data = Path(path).read_bytes()
        self.model_bytes = np.frombuffer(data, dtype=np.uint8)  # zero-copy out of Ray's object store
        self.model_name = Path(path).name
        self.inner, self.mix = inner, mix
        # the Stylizer's options: one dict builds it in every worker and keys the per-process cache
        self.paint = dict(device=device, max_side=max_side, out_size=out_size, strength=strength,
                          preserve_color=preserve_color, engine=engine, precision=precision, brush=brush)
        self.device, self.out_size, self.batch_size = device, out_size, batch_size
        self.codec, self.crf, self.preset = codec, crf, preset
        self.temporal, self.temporal_strength, self.flow = temporal, temporal_strength, flow
        self.video_options = dict(video_options or {})
        # what changes the output's pixels or encoding (not where or how fast it is painted), as JSON values:
        # the manifest keeps it with each output, so that a run with other options does not take it as done
        self.options: dict = json.loads(json.dumps(dict(
            model=hashlib.sha256(data).hexdigest()[:16], style=inner, mix=mix, max_side=max_side,
            out_size=out_size, strength=strength, preserve_color=preserve_color, brush=brush, precision=precision,
            codec=codec, crf=crf, preset=preset, temporal=temporal,
            temporal_strength=temporal_strength if temporal else None, flow=flow if temporal else None,
            video={k: v for k, v in self.video_options.items() if k != "allow_protocols"}), default=str))
        opts = json.dumps([self.model_name, inner, mix, self.paint], sort_keys=True, default=str)
        self.key = hashlib.sha256(data + opts.encode()).hexdigest()[:20]

    def __repr__(self) -> str:
        return f"StylizeJob({self.label!r}, device={self.device!r}, key={self.key})"

    def stylizer(self):
        """This process's Stylizer for the job, built on first use."""
        with _STYLIZER_LOCK:
            st = _STYLIZERS.get(self.key)
            if st is None:
                from .models import files
                from .stylizer import Stylizer

                _STYLIZERS.clear()  # one model per process: free the previous one (GPU memory)
                folder = Path(tempfile.mkdtemp(prefix="vidstyle-model-"))
                p = folder / self.model_name
                p.write_bytes(self.model_bytes.tobytes())
                try:
                    model = files.load_model(p)
                finally:
                    p.unlink(missing_ok=True)
                    folder.rmdir()
                model.path = Path(self.model_name)
                model.label = model.select(self.inner, self.mix)
                st = Stylizer(model, **self.paint)
                _STYLIZERS[self.key] = st
            return st

    def make_stabilizer(self):
        if not self.temporal:
            return None
        from .temporal import Stabilizer
        return Stabilizer(strength=self.temporal_strength, flow=self.flow)

    def __call__(self, input: str, output: str, *, overwrite: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> dict:
        from .api import stylize_video

        r = stylize_video(input, output, stylizer=self.stylizer(), batch_size=self.batch_size,
                          out_size=self.out_size, codec=self.codec, crf=self.crf, preset=self.preset,
                          overwrite=overwrite, stabilizer=self.make_stabilizer(), progress=progress,
                          **self.video_options)
        return r.to_dict()


# -- executors -----------------------------------------------------------------------------------
def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None


def require_ray():
    """``import ray``, or the one-line VidstyleError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise VidstyleError(f"running on a Ray cluster needs Ray: {INSTALL_HINT}") from None
    return ray


def _gpu_count() -> int:
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
        n = _gpu_count() if gpus is None else int(gpus)
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


def _run_local(todo: list[dict], paint_one: Callable, notify: Callable, frames_cb: Callable) -> None:
    for t in todo:
        notify("begin", t, None)
        res = paint_item(paint_one, t["input"], t["output_path"], t["overwrite"],
                         progress=lambda n, total, t=t: frames_cb(t, n, total))
        notify("result", t, res)


def throttled_progress(send: Callable[[int, int], None], every: float = 0.5) -> Callable[[int, int], None]:
    """A worker's ``progress(n, total)`` that passes ``(n, total)`` on to ``send`` at most once every ``every``
    seconds, and always when ``n`` reaches a known ``total`` (the last count is never lost). For the Ray tasks
    here and in ``vidstyle.segments``, and the segments' worker processes."""
    last = [0.0]

    def progress(n: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] > every or (total and n >= total):
            last[0] = now
            send(n, total)

    return progress


def wait_ray_tasks(ray, refs: Iterable, sink, on_progress: Callable[[int, int, int], None],
                   on_ready: Callable[[object], None], *, cancel_on_error: bool = False) -> None:
    """Wait for the Ray tasks ``refs`` (object refs) one by one.

    Twice a second what the tasks reported to ``sink`` (a ``ProgressSink``) goes to ``on_progress(tag, n, total)``
    (best effort: its errors are ignored); each finished task's ref goes to ``on_ready(ref)``, which may raise.
    ``cancel_on_error``: when anything raises here (``on_ready``, Ctrl-C), the tasks not finished are cancelled.
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
    except BaseException:
        if cancel_on_error:
            for ref in pending:
                ray.cancel(ref, force=True)
        raise


_RAY_DEFS: tuple | None = None


def _ray_defs(ray):
    """The remote function and the progress actor, defined once Ray is imported."""
    global _RAY_DEFS
    if _RAY_DEFS is None:
        # max_calls=0: a worker is kept for the next video with the Stylizer it built (Ray's default
        # for GPU tasks is a new process per task, which would load the model for every video).
        @ray.remote(max_calls=0)
        def paint_task(paint_one, input, output, overwrite, sink, tag):
            def send(n, total):
                if sink is not None:
                    sink.update.remote(tag, n, total)

            return paint_item(paint_one, input, output, overwrite, throttled_progress(send))

        @ray.remote(num_cpus=0)
        class ProgressSink:
            def __init__(self):
                self.state = {}

            def update(self, tag, n, total):
                self.state[tag] = (n, total)

            def take(self):
                state, self.state = self.state, {}
                return state

        _RAY_DEFS = (paint_task, ProgressSink)
    return _RAY_DEFS


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
    where = kwargs.get("address") or os.environ.get("RAY_ADDRESS") or "a new local instance"
    try:
        ray.init(**kwargs)
    except Exception as e:  # noqa: BLE001 - ConnectionError, TimeoutError, ValueError for a missing client ...
        if "ray[client]" in str(e):
            raise VidstyleError(f"ray:// addresses need the Ray client: {INSTALL_HINT}") from None
        raise VidstyleError(f"cannot start or reach Ray ({where}): {error_line(e)}") from None
    return ray, True


def task_resources(ray, cpus_per_task: int | None = None, gpus_per_task: float = 1) -> dict:
    """One GPU per video where the cluster has GPUs, else ``cpus_per_task`` CPUs (default: up to 4, never
    more than the biggest node has, so that no task waits forever)."""
    nodes = [n for n in ray.nodes() if n.get("Alive", n.get("alive", True))]
    biggest = max((n.get("Resources", {}).get("CPU", 0) for n in nodes), default=0) or 1
    if ray.cluster_resources().get("GPU", 0) >= gpus_per_task > 0:
        return {"num_gpus": gpus_per_task, "num_cpus": min(cpus_per_task or 1, biggest)}
    return {"num_cpus": max(1, min(cpus_per_task or 4, int(biggest)))}


def _run_ray(todo: list[dict], paint_one: Callable, notify: Callable, frames_cb: Callable, executor: str,
             cpus_per_task: int | None, gpus_per_task: float, max_retries: int, ray_init: dict | None) -> None:
    ray, started = connect_ray(executor, ray_init)
    try:
        paint_task, ProgressSink = _ray_defs(ray)
        sink = ProgressSink.remote()
        job_ref = ray.put(paint_one)  # the model travels once, not once per video
        opts = task_resources(ray, cpus_per_task, gpus_per_task)
        log.info("ray: %d videos, %s per video", len(todo), opts)
        refs = {}
        for i, t in enumerate(todo):
            ref = paint_task.options(max_retries=max_retries, retry_exceptions=False, **opts).remote(
                job_ref, t["input"], t["output_path"], t["overwrite"], sink, i)
            refs[ref] = t
            notify("queued", t, None)
        started_tags: set[int] = set()

        def on_progress(tag: int, n: int, total: int) -> None:
            if tag not in started_tags:
                started_tags.add(tag)
                notify("begin", todo[tag], None)
            frames_cb(todo[tag], n, total)

        def on_ready(ref) -> None:
            t = refs[ref]
            try:
                res = ray.get(ref)
            except ray.exceptions.RayError as e:  # the worker died more than max_retries times
                res = {"status": "failed", "error": error_line(e), "frames": 0, "seconds": 0.0,
                       "complete": False, "notes": []}
            remove_stale_partials(Path(t["output_path"]))  # left by an attempt whose worker died
            notify("result", t, res)

        wait_ray_tasks(ray, refs, sink, on_progress, on_ready)
    finally:
        if started:
            ray.shutdown()


# -- the batch -----------------------------------------------------------------------------------
LOCK_NAME = ".vidstyle-manifest.lock"


def _lock_folder(folder: Path):
    """Hold an exclusive lock on ``folder/.vidstyle-manifest.lock`` so that two runs never share a manifest.

    Returns the open file (close it to release), or None where locks are not available.
    """
    try:
        import fcntl
    except ImportError:
        return None
    f = open(folder / LOCK_NAME, "a")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise VidstyleError(f"another vidstyle run is painting into {folder}; wait for it or choose another folder") \
            from None
    except OSError:  # a file system without locks
        pass
    return f


def _input_stat(key: str) -> dict:
    """``{"input_size", "input_mtime"}`` of a local input (ns); None values for a URL or an unreadable file."""
    try:
        st = None if is_url(key) else os.stat(key)
    except OSError:
        st = None
    return {"input_size": st and st.st_size, "input_mtime": st and st.st_mtime_ns}


def _changed(item: dict, options: dict | None, stat: dict) -> str | None:
    """What differs between what ``item``'s output was painted from and this run: ``"max_side, crf"``,
    ``"the input"``...; None when nothing does (what the item does not record is not compared)."""
    old = item.get("options")
    why = []
    if isinstance(old, dict) and options is not None:
        why = [k for k in sorted(set(old) | set(options)) if old.get(k) != options.get(k)]
    if any(item.get(k) is not None and v is not None and item[k] != v for k, v in stat.items()):
        why.append("the input")
    return ", ".join(why) or None


def _inputs_inside(sources: list[Source], out: Path) -> set[str]:
    """The local inputs that lie in ``out``, as paths relative to it: names that no output may take."""
    root = out.resolve()
    names = set()
    for s in sources:
        if not is_url(s.input):
            try:
                names.add(Path(s.key).resolve().relative_to(root).as_posix())
            except ValueError:
                pass
    return names


def earlier_outputs(sources: list[Source], out: Path) -> tuple[list[Source], list[str]]:
    """(sources, ignored): the files that ``out``'s manifest records as outputs (of any style) are not inputs.

    So a run whose output folder holds its inputs (``vidstyle run clips -o clips``) never paints the
    paintings of an earlier run again; other files, whatever their names, are inputs as usual.
    """
    if not (out / MANIFEST_NAME).is_file():
        return sources, []
    ours = {(out / i["output"]).resolve() for i in Manifest(out).items if i.get("output")}
    mine = [not is_url(s.input) and Path(s.key).resolve() in ours for s in sources]
    keep = [s for s, m in zip(sources, mine) if not m]
    ignored = [s.input for s, m in zip(sources, mine) if m]
    if not keep:
        raise VidstyleError(f"nothing to paint: every video found is an output of an earlier run in {out} "
                            f"(recorded in {MANIFEST_NAME})")
    return keep, ignored


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
    lock = _lock_folder(out)
    try:
        result = _run_batch(sources, out, paint_one, label, executor, suffix, overwrite, progress, cpus_per_task,
                            gpus_per_task, max_retries, ray_init, probe, t_start)
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

    taken = manifest.taken_outputs() | _inputs_inside(sources, out)  # an output never replaces an input
    # (item, skip, what changed, input stat, whether its output was there when the run began)
    plan: list[tuple[dict, bool, str | None, dict, bool]] = []
    for src in sources:
        stat = _input_stat(src.key)
        item = manifest.get(src.key, label, suffix)
        if item is None and src.old_key != src.key:  # an older manifest: the same input under its old key
            item = manifest.get(src.old_key, label, suffix)
            if item is not None:
                item["input"] = src.key
        if item is None:
            name = _dedupe(output_name(src, label, suffix), taken)
            taken.add(name.as_posix())
            item = manifest.add({"input": src.key, "output": name.as_posix(), "status": "pending", "error": None,
                                 "frames": 0, "seconds": 0.0, "style": label, "complete": None, "written": False,
                                 "attempts": 0, "updated": _now()})
        on_disk = manifest.output_path(item).is_file()
        changed = _changed(item, options, stat) if on_disk else None
        skip = item.get("status") == "done" and on_disk and not changed
        if not skip and not (changed and not overwrite):  # a refused output keeps its status: it is still done
            item["status"], item["error"] = "pending", None
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
        if kind == "queued":
            return
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
            item["updated"] = _now()
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
        if not todo:
            pass
        elif executor == "local":
            _run_local(todo, paint_one, notify, frames_cb)
        else:
            _run_ray(todo, paint_one, notify, frames_cb, executor, cpus_per_task, gpus_per_task, max_retries,
                     ray_init)
    except KeyboardInterrupt as e:
        raise BatchInterrupted(e, state["done"] + result.skipped, len(plan), out, MANIFEST_NAME) from e
    finally:
        manifest.save()
    result.done, result.frames = state["done"], state["frames"]
    result.seconds = time.perf_counter() - t_start
    emit("finish")
    return result
