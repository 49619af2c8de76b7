"""What a batch (or a segments run) paints each video with: a picklable job, and the wrapper that never raises.

* ``StylizeJob``: ``job(input, output, overwrite=..., progress=...) -> dict``, the painting of ``vidstyle run``.
  It holds the options as values (``paint``, ``encode``, ``read``, ``temporal``) and the model file's bytes,
  so that no path needs to exist on a remote worker; each process builds its Stylizer once and keeps it.
* ``paint_item``: one video through any such callable, its failure turned into a result line.
"""
from __future__ import annotations

import copy
import hashlib
import inspect
import json
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import IncompleteInput, error_line
from ..options import EncodeOptions, PaintOptions, ReadOptions, TemporalOptions, gather

log = logging.getLogger("vidstyle")

_STYLIZERS: dict[str, object] = {}  # per process: job key -> Stylizer (one model kept at a time)
_STYLIZER_LOCK = threading.Lock()


class StylizeJob:
    """A picklable ``paint_one``: ``job(input, output, overwrite=..., progress=...) -> dict``.

    The options come as values (``paint``, ``encode``, ``read``, ``temporal``: ``vidstyle.options``) or as their
    fields by name, as for ``api.stylize_video``. The style is resolved and loaded here, once (a bad style or
    option fails at once, in the driver); the model file's bytes travel with the job. ``temporal``: a fresh
    stabiliser per video. ``options``: what changes the output (the manifest keeps it with each output).
    """

    def __init__(self, style: str | None = None, *, paint: PaintOptions | None = None,
                 encode: EncodeOptions | None = None, read: ReadOptions | None = None,
                 temporal: TemporalOptions | bool | None = None, batch_size: int | None = None, **options):
        from ..api import painting_model

        self.paint, self.encode, self.read, self.temporal = gather(
            options, style, paint=paint, encode=encode, read=read, temporal=temporal, caller="StylizeJob")
        self.batch_size = batch_size
        model = painting_model(self.paint.style, mix=self.paint.mix, style_size=self.paint.style_size,
                               allow_protocols=self.read.allow_protocol)  # checks it; its label names outputs
        self.label: str = model.label
        self._model = model  # this process's copy, not pickled: the Stylizer built here starts from it
        # a picture's style travels as its vector (100 numbers), a trained style as its model file's bytes
        self.picture: dict | None = model.to_dict() if getattr(model, "is_picture", False) else None
        data = json.dumps(self.picture, sort_keys=True).encode() if self.picture else Path(model.path).read_bytes()
        self.model_bytes = np.frombuffer(b"" if self.picture else data, dtype=np.uint8)  # zero-copy out of Ray's store
        self.model_name = "picture" if self.picture else Path(model.path).name
        self.inner = model.inner
        digest = hashlib.sha256(data).hexdigest()
        # what changes the output's pixels or encoding (not where or how fast it is painted), as JSON values
        paint_fp = {**self.paint.fingerprint(), "style": self.inner}
        self.options: dict = {"model": digest[:16], **paint_fp, **self.encode.fingerprint(),
                              **self.temporal.fingerprint(), **self.read.fingerprint()}
        key = json.dumps([self.model_name, self.inner, self.paint.replace(style=None).fingerprint(),
                          self.paint.engine, self.paint.device], sort_keys=True, default=str)
        self.key = hashlib.sha256(data + key.encode()).hexdigest()[:20]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_model"] = None  # the bytes travel; the model is built again where the job runs
        return state

    def __repr__(self) -> str:
        return f"StylizeJob({self.label!r}, key={self.key})"

    def with_encode(self, **changes) -> "StylizeJob":
        """A copy of the job encoding with other ``EncodeOptions`` (segments: the parts' codec)."""
        job = copy.copy(self)
        job.encode = self.encode.replace(**changes)
        return job

    def stylizer(self):
        """This process's painter for the job (a Stylizer, or the light install's FramePainter), built on first use."""
        with _STYLIZER_LOCK:
            st = _STYLIZERS.get(self.key)
            if st is None:
                from ..painters import new_painter

                _STYLIZERS.clear()  # one model per process: free the previous one (GPU memory)
                model = self._model if self._model is not None else self._load()
                st = new_painter(model, options=self.paint)
                _STYLIZERS[self.key] = st
            return st

    def _load(self):
        from ..models import files
        from ..painters import light

        if self.picture is not None:
            from ..models.picture_style import PictureStyle

            return PictureStyle.from_dict(self.picture)

        folder = Path(tempfile.mkdtemp(prefix="vidstyle-model-"))
        p = folder / self.model_name
        p.write_bytes(self.model_bytes.tobytes())
        try:
            model = files.load_model(p, light=light())  # the weights alone where this worker has no PyTorch
        finally:
            p.unlink(missing_ok=True)
            folder.rmdir()
        model.path = Path(self.model_name)
        model.label = model.select(self.inner, self.paint.mix)
        return model

    def __call__(self, input: str, output: str, *, overwrite: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> dict:
        from ..api import stylize_video

        r = stylize_video(input, output, stylizer=self.stylizer(), batch_size=self.batch_size, encode=self.encode,
                          read=self.read, temporal=self.temporal, overwrite=overwrite, progress=progress)
        return r.to_dict()


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

