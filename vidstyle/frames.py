"""Folders of video frames: the one reader that says which files of a folder are its frames.

Used wherever a folder of frames is read (evaluation, training on real frame pairs), so that
side files stored beside the frames never become frames anywhere.
"""
from __future__ import annotations

import re
from pathlib import Path

from .io.images import is_image

# Ruder et al.'s layout (artistic-videos) stores flow-reliability masks and flows beside the frames
SIDE_FILES = ("reliable_", "forward_", "backward_", "occlusion", "mask")
SAME_TYPE = {".jpeg": ".jpg", ".tiff": ".tif"}  # two spellings of one image type


def frame_order(path: Path) -> list:
    """Sort key: numbers in the name by value, so ``2.png`` comes before ``10.png`` (ffmpeg's ``%d.png``)."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", path.name) if t]


def frame_files(folder: str | Path) -> list[Path]:
    """The frames of ``folder`` (not its subfolders), in frame order (``frame_order``): its images minus
    flow side files (``reliable_*.png`` ...) and macOS ``._*`` files, keeping only the commonest image type
    (``.jpg`` and ``.jpeg`` are one type). [] when there are none."""
    folder = Path(folder)
    files = sorted((p for p in folder.iterdir()
                    if p.is_file() and is_image(p) and not p.name.startswith("._")
                    and not p.stem.lower().startswith(SIDE_FILES)), key=frame_order)
    if not files:
        return []
    kinds = [SAME_TYPE.get(p.suffix.lower(), p.suffix.lower()) for p in files]
    main = max(sorted(set(kinds)), key=kinds.count)
    return [p for p, kind in zip(files, kinds) if kind == main]
