"""A batch's inputs: files, folders (searched recursively for videos), globs and URLs, in a stable order, unique.

Only regular files are videos: a folder search keeps files with a video extension (``VIDEO_EXTENSIONS``) and
skips hidden names (partial outputs); ``probe_frames`` reads a file's frame count from its header for the
progress bar.
"""
from __future__ import annotations

import glob
import os
import re
from pathlib import Path, PurePosixPath
from typing import Iterable

from ..errors import VidstyleError
from ..io.protocols import is_url, local_path, open_container
from ..naming import Source

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".m2v", ".ts", ".mts", ".m2ts",
    ".wmv", ".flv", ".3gp", ".3g2", ".ogv", ".vob", ".mxf", ".dv", ".y4m", ".nut", ".asf", ".rm", ".rmvb",
})
_GLOB_CHARS = re.compile(r"[*?\[]")


def is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _walk(folder: Path, exclude: list[Path]) -> list[Path]:
    """Regular video files below ``folder``, sorted (a FIFO or a device named like a video would hang the
    batch); hidden names (``.x``, partial outputs) skipped, and the folders of
    ``exclude`` that lie strictly inside ``folder`` (an ``exclude`` that is ``folder`` or above it holds the
    inputs themselves: ``earlier_outputs`` then tells the outputs from them)."""
    exclude = [e for e in exclude if same_or_inside(e, folder) and not same_or_inside(folder, e)]
    found = []
    seen = {os.path.realpath(folder)}  # linked folders are followed (a NAS linked into the tree), each once
    for root, dirs, files in os.walk(folder, followlinks=True):
        r = Path(root)
        keep = []
        for d in sorted(dirs):
            real = os.path.realpath(r / d)
            if d.startswith(".") or real in seen or any(same_or_inside(r / d, e) for e in exclude):
                continue
            seen.add(real)
            keep.append(d)
        dirs[:] = keep
        found += [r / f for f in files if not f.startswith(".") and is_video_file(Path(f)) and (r / f).is_file()]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def same_or_inside(path: Path, folder: Path) -> bool:
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

