"""Your own style's training pictures: photos and video frames at the network's scale, each painted by the picture
network (``models.arbitrary``, Ghiasi et al. 2017): what the new rows learn first (``own_style``).

    RUN_DIR/data/photos/NNNNN.png           a photo or a video frame, ``scale`` px on its short side
    RUN_DIR/data/targets/<style>/NNNNN.png  the picture network's painting of it, the same size
    RUN_DIR/data/video/NNN.<ext>            links to the videos given: real frame pairs for the temporal loss
"""
from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..errors import VidstyleError
from ..io.atomic import atomic_write_bytes
from ..io.images import find_images, is_image

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts")
MIN_PHOTOS = 20  # fewer, and the rows learn those few pictures
MAX_VIDEOS = 16  # videos sampled (and kept for the temporal loss); a Pictures folder may hold hundreds
MAX_SIDE_RATIO = 4  # a panorama longer than 4x its short side is left out: its crops would all be sky


def find_data(given: tuple[str, ...]) -> tuple[list[Path], list[Path]]:
    """(photo files, video files) of the ``--data`` folders and files; without any, the user's Pictures folder.

    A one-line VidstyleError when they hold too few pictures, saying what to give."""
    if not given:
        import platformdirs

        pictures = Path(platformdirs.user_pictures_dir())
        if not pictures.is_dir():
            raise VidstyleError(f"no training photos: give --data PHOTOS (a folder of at least {MIN_PHOTOS} photos, "
                                "or videos of the footage you will paint)")
        given = (str(pictures),)
    photos, videos = [], []
    for item in map(Path, given):
        if item.is_dir():
            photos += find_images(item)
            videos += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        elif item.is_file() and item.suffix.lower() in VIDEO_SUFFIXES:
            videos.append(item)
        elif item.is_file() and is_image(item):
            photos.append(item)
        else:
            raise VidstyleError(f"--data {item}: not a folder, a video or a picture")
    if len(photos) < MIN_PHOTOS and not videos:
        where = ", ".join(given)
        raise VidstyleError(f"{where} holds {len(photos)} photo(s) and no video: give --data a folder of at least "
                            f"{MIN_PHOTOS} photos, or videos of the footage you will paint")
    return photos, videos[:MAX_VIDEOS]


def sample_frames(video: Path, count: int, short_side: int) -> list[np.ndarray]:
    """Up to ``count`` frames spread evenly over a video, (H, W, 3) uint8 RGB at ``short_side``.

    Frames are scaled as they are decoded and thinned out as the clip goes on (every 2nd, then every 4th ...
    kept), so memory stays at a few times ``count`` small frames whatever the clip's length or size."""
    from ..io.reader import VideoReader
    from .data import fit_short_side

    kept: list[np.ndarray] = []
    stride = 1
    with VideoReader(video) as r:
        for f in r.frames():
            if f.index % stride == 0:
                kept.append(fit_short_side(f.rgb, short_side))
                if len(kept) > 4 * count:
                    kept, stride = kept[::2], stride * 2
    if not kept:
        return []
    picks = np.linspace(0, len(kept) - 1, min(count, len(kept))).round().astype(int)
    return [kept[i] for i in sorted(set(picks.tolist()))]


def prepare_data(picture: str, style: str, found: tuple[list[Path], list[Path]], folder: Path, *, scale: int,
                 count: int, seed: int, device) -> None:
    """Write ``count`` training pictures of ``found`` (``find_data``'s photos and videos) and their paintings in the
    style of ``picture`` under ``folder`` (module docstring). What is there is kept (a resumed run paints only what
    is missing)."""
    from .data import load_photo

    photos_dir, targets_dir = folder / "photos", folder / "targets" / style
    photos_dir.mkdir(parents=True, exist_ok=True)
    targets_dir.mkdir(parents=True, exist_ok=True)
    files, videos = list(found[0]), found[1]
    random.Random(seed).shuffle(files)
    # frames: up to half the pictures, all of them when there are too few photos
    frames = count if len(files) < count // 2 else count // 2
    per_video = math.ceil(frames / len(videos)) if videos else 0
    painter = picture_painter(picture, device)
    n = 0

    def add(img: np.ndarray) -> None:
        nonlocal n
        photo, target = photos_dir / f"{n:05d}.png", targets_dir / f"{n:05d}.png"
        if not target.exists():
            write_png(photo, img)
            write_png(target, painter(img))
        n += 1

    for v in videos:
        for frame in sample_frames(v, per_video, scale):
            if n < count:
                add(frame)
    for f in files:
        if n >= count:
            break
        img = load_photo(f, scale)
        if img is not None and max(img.shape[:2]) <= MAX_SIDE_RATIO * scale:
            add(img)
    if n < MIN_PHOTOS:
        raise VidstyleError(f"only {n} readable picture(s) in --data: give at least {MIN_PHOTOS}")
    if videos:  # real frame pairs for the temporal loss
        video_dir = folder / "video"
        video_dir.mkdir(exist_ok=True)
        for i, v in enumerate(videos):
            link = video_dir / f"{i:03d}{v.suffix.lower()}"
            if not link.exists():
                try:
                    link.symlink_to(v.resolve())
                except OSError:  # no symlinks here (Windows without the right): a copy
                    import shutil

                    shutil.copyfile(v, link)


def picture_painter(picture: str, device) -> Callable[[np.ndarray], np.ndarray]:
    """(H, W, 3) uint8 -> the picture network's painting of it in the style of ``picture``, the same size."""
    import torch

    from ..models.picture_style import picture_model

    model = picture_model({picture: 1.0}, device=device, light=False)
    net, mix = model.net.eval(), model.net.mix.to(device)

    def paint(img: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(img).permute(2, 0, 1)[None].float().div(255).to(device)
            return net(x, mix)[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()

    return paint


def write_png(path: Path, rgb: np.ndarray) -> None:
    """(H, W, 3) uint8 RGB -> a PNG file, atomically."""
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise VidstyleError(f"cannot encode {path}")
    atomic_write_bytes(path, png.tobytes())
