"""Folders of video frames: the one reader that says which files of a folder are its frames.

Used wherever a folder of frames is read (evaluation, training on real frame pairs), so that
side files stored beside the frames never become frames anywhere.
"""
from __future__ import annotations

from pathlib import Path

from .io.images import is_image

# Ruder et al.'s layout (artistic-videos) stores flow-reliability masks and flows beside the frames
SIDE_FILES = ("reliable_", "forward_", "backward_", "occlusion", "mask")


def frame_files(folder: str | Path) -> list[Path]:
    """The frames of ``folder`` (not its subfolders), in name order: its images minus flow side files
    (``reliable_*.png`` ...), keeping only the commonest image type. [] when there are none."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and is_image(p) and not p.stem.lower().startswith(SIDE_FILES))
    if not files:
        return []
    suffixes = [p.suffix.lower() for p in files]
    main = max(sorted(set(suffixes)), key=suffixes.count)
    return [p for p in files if p.suffix.lower() == main]
