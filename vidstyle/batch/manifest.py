"""A batch's record: ``OUT/vidstyle-manifest.json``, and the lock that keeps two runs out of one folder.

The manifest records every input's status (``done``, ``failed`` with its one-line error, ``pending``), its
output, frames and seconds, and what the output was painted from (the job's ``options`` fingerprint and the
input's size and time). It is rewritten atomically after every change, by the driver only, so a worker that
dies never leaves it wrong. ``changed`` says what differs between an output on disk and this run;
``earlier_outputs`` keeps a folder's outputs out of its inputs.
"""
from __future__ import annotations

import json
import math
import os
import threading
from datetime import datetime, timezone
from pathlib import Path

from ..errors import VidstyleError
from ..io.atomic import atomic_write_text
from ..io.protocols import is_url
from ..naming import Source

MANIFEST_NAME = "vidstyle-manifest.json"
MANIFEST_VERSION = 1
LOCK_NAME = ".vidstyle-manifest.lock"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
                self.items = self._checked(json.loads(self.path.read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise VidstyleError(f"{self.path} is not a readable vidstyle manifest ({e}); "
                                    "move it away to start afresh") from None
        self._lock = threading.Lock()

    def _checked(self, data) -> list[dict]:
        """The items of a manifest read back, checked as a schema: a ValueError says what is wrong. A manifest
        is trusted to name outputs to replace, so each must lie inside this folder (links followed), and no
        two items may name one output."""
        if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
            raise ValueError(f"version {data.get('version') if isinstance(data, dict) else None!r} is not "
                             f"{MANIFEST_VERSION}")
        items = data["items"]
        if not isinstance(items, list):
            raise ValueError("items is not a list")
        root = os.path.realpath(self.folder)
        seen: set[str] = set()
        for n, i in enumerate(items):
            if not (isinstance(i, dict) and isinstance(i.get("input"), str) and isinstance(i.get("output"), str)):
                raise ValueError(f"item {n} has no input and output names")
            out = i["output"]
            real = os.path.realpath(self.folder / out)
            if Path(out).is_absolute() or ".." in Path(out).parts or os.path.commonpath([root, real]) != root:
                raise ValueError(f"item {n}'s output {out} is not inside the folder")
            if real in seen:
                raise ValueError(f"two items name the output {out}")
            seen.add(real)
            if i.get("status", "pending") not in ("pending", "done", "failed"):
                raise ValueError(f"item {n}'s status is {i.get('status')!r}")
            for key in ("frames", "attempts"):
                v = i.get(key, 0)
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise ValueError(f"item {n}'s {key} is {v!r}")
            v = i.get("seconds", 0.0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"item {n}'s seconds is {v!r}")
            if not isinstance(i.get("options", {}) or {}, dict):
                raise ValueError(f"item {n}'s options is not an object")
        return items

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




def lock_folder(folder: Path):
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


def input_stat(key: str) -> dict:
    """``{"input_size", "input_mtime"}`` of a local input (ns); None values for a URL or an unreadable file."""
    try:
        st = None if is_url(key) else os.stat(key)
    except OSError:
        st = None
    return {"input_size": st and st.st_size, "input_mtime": st and st.st_mtime_ns}


def what_changed(item: dict, options: dict | None, stat: dict) -> str | None:
    """What differs between what ``item``'s output was painted from and this run: ``"max_side, crf"``,
    ``"the input"``...; None when nothing does (what the item does not record is not compared)."""
    old = item.get("options")
    why = []
    if isinstance(old, dict) and isinstance(old.get("video"), dict):  # manifests before options were values
        old = {**{k: v for k, v in old.items() if k != "video"}, **old["video"]}
    if isinstance(old, dict) and options is not None:
        why = [k for k in sorted(set(old) | set(options)) if old.get(k) != options.get(k)]
    if any(item.get(k) is not None and v is not None and item[k] != v for k, v in stat.items()):
        why.append("the input")
    return ", ".join(why) or None


def inputs_inside(sources: list[Source], out: Path) -> set[str]:
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

