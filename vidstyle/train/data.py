"""Training data: content photos, synthetic motion with exact flow, and real frame pairs.

Everything random takes a ``torch.Generator``: the loop derives one per step from
(seed, step), so the same seed gives the same data and a resumed run continues
exactly where an uninterrupted one would be.
"""
from __future__ import annotations

import hashlib
import logging
import math
import re
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import VidstyleError
from ..flow import make_flow, read_flo, to_tensor, write_flo
from ..frames import frame_files
from ..io.atomic import AtomicPath
from ..io.images import find_images, is_image
from ..warp import occlusion, warp

log = logging.getLogger("vidstyle")


def load_photo(path: Path, short_side: int) -> np.ndarray | None:
    """(H, W, 3) uint8 RGB scaled so the short side is ``short_side``; None when unreadable (also when
    over OpenCV's pixel limit, which raises cv2.error rather than returning None)."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:  # gone since the folder was listed (moved, deleted), or not readable
        return None
    try:
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error:
        return None
    if bgr is None:
        return None
    return cv2.cvtColor(fit_short_side(bgr, short_side), cv2.COLOR_BGR2RGB)


def fit_short_side(rgb: np.ndarray, short_side: int) -> np.ndarray:
    """(H, W, 3) -> the same picture scaled so its short side is ``short_side`` (area filter when shrinking)."""
    size = _fit(rgb.shape, short_side)
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if size[0] < rgb.shape[1] else cv2.INTER_LINEAR)


def photo_scale(size: int, short_side: int | None) -> int:
    """The short side photos are scaled to before a ``size`` crop (``Photos``; a model's ``scale``)."""
    return max(size, short_side or math.ceil(size * 1.15))


class Photos:
    """Every image below a folder, decoded on demand, scaled so the short side is ``short_side``
    (default ``size`` * 1.15), then cropped to ``size``. A larger ``short_side`` shows the network
    less of each photo per crop, so it learns larger brush strokes relative to the picture."""

    def __init__(self, folder: str | Path, size: int, limit: int | None = None, short_side: int | None = None,
                 targets: list[Path] | None = None):
        folder = Path(folder)
        if not folder.is_dir():
            raise VidstyleError(f"data folder not found: {folder}")
        self.files = find_images(folder)
        # Painted targets (train --targets): per style a folder that mirrors this one, REL.png beside REL.*;
        # only the photos that have one in every style are used.
        self.folder = folder
        self.targets = targets
        if targets is not None:
            for t in targets:
                if not t.is_dir():
                    raise VidstyleError(f"--targets has no folder for style {t.name}: {t}")
            every = [f for f in self.files if all(self.target_file(f, k).is_file() for k in range(len(targets)))]
            if len(every) < len(self.files):
                log.info("%d of %d photos have a painted target in every style; training on those",
                         len(every), len(self.files))
            self.files = every
            if not self.files:
                raise VidstyleError(f"no photo of {folder} has a painted target in every style of --targets")
        if limit:
            self.files = self.files[:limit]
        if not self.files:
            raise VidstyleError(f"no images in data folder {folder}")
        self.size = size
        self.short_side = photo_scale(size, short_side)
        self.skipped: set[Path] = set()
        self.cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.files)

    def get(self, i: int) -> np.ndarray | None:
        img = self.cache.get(i)
        if img is None and self.files[i] not in self.skipped:
            img = load_photo(self.files[i], self.short_side)
            if img is None:
                self.skipped.add(self.files[i])
                log.warning("skipping unreadable image %s", self.files[i])
            elif len(self.cache) < 4096:
                self.cache[i] = img
        return img

    def target_file(self, photo: Path, style: int) -> Path:
        """The painted target of ``photo`` in the style ``style`` (an index into ``targets``)."""
        return self.targets[style] / Path(photo).relative_to(self.folder).with_suffix(".png")

    def batch(self, n: int, gen: torch.Generator, style: int | None = None) -> torch.Tensor:
        """(n, 3, size, size) float [0, 1]: random images, random crops, random flips.

        With ``style`` (photos made with ``targets``): (n, 6, size, size), each photo's crop followed by the
        same crop of its painted target in that style.
        """
        out = []
        tries = 0
        while len(out) < n:
            tries += 1
            if tries > 50 * n:
                raise VidstyleError("too many unreadable images in the data folder")
            i = int(torch.randint(len(self.files), (1,), generator=gen))
            img = self.get(i)
            if img is None:
                continue
            if style is not None:
                target = load_photo(self.target_file(self.files[i], style), self.short_side)
                if target is None or target.shape != img.shape:
                    raise VidstyleError(f"painted target {self.target_file(self.files[i], style)} is unreadable "
                                        f"or not its photo's size at --photo-size {self.short_side}")
                img = np.concatenate([img, target], axis=2)
            h, w = img.shape[:2]
            y = int(torch.randint(h - self.size + 1, (1,), generator=gen))
            x = int(torch.randint(w - self.size + 1, (1,), generator=gen))
            crop = img[y:y + self.size, x:x + self.size]
            if torch.rand(1, generator=gen) < 0.5:
                crop = crop[:, ::-1]
            out.append(torch.from_numpy(np.ascontiguousarray(crop)))
        return torch.stack(out).permute(0, 3, 1, 2).float() / 255


def synthetic_flow(n: int, h: int, w: int, gen: torch.Generator, max_shift: float = 6.0,
                   max_angle: float = 3.0, max_zoom: float = 0.04, elastic: float = 1.0) -> torch.Tensor:
    """(n, 2, h, w) flows of random camera-like motions: affine + a small perspective term + a smooth field."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    cx, cy = (w - 1) / 2, (h - 1) / 2
    flows = []
    for _ in range(n):
        r = torch.rand(7, generator=gen) * 2 - 1
        a = math.radians(max_angle) * float(r[0])
        z = 1 + max_zoom * float(r[1])
        tx, ty = max_shift * float(r[2]), max_shift * float(r[3])
        px, py = 2e-4 * float(r[4]), 2e-4 * float(r[5])  # perspective
        u, v = xs - cx, ys - cy
        den = 1 + px * u + py * v
        sx = (z * (math.cos(a) * u - math.sin(a) * v) + tx) / den + cx
        sy = (z * (math.sin(a) * u + math.cos(a) * v) + ty) / den + cy
        f = torch.stack((sx - xs, sy - ys))
        if elastic > 0:
            field = torch.randn(1, 2, 4, 4, generator=gen) * elastic
            f = f + F.interpolate(field, size=(h, w), mode="bicubic", align_corners=True)[0]
        flows.append(f)
    return torch.stack(flows)


def synthetic_pair(x_prev: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frame t from frame t-1 with an exact flow: x_t = warp(x_prev, flow).

    Returns (x_t, flow (N, 2, H, W), mask (N, 1, H, W): 1 where x_t's pixel came from inside x_prev).
    """
    n, _, h, w = x_prev.shape
    flow = synthetic_flow(n, h, w, gen).to(x_prev.device)
    x_t, inside = warp(x_prev, flow)
    return x_t, flow, inside


VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi")


class VideoPairs:
    """Consecutive frame pairs from folders of frames or video files, with flow and occlusion masks.

    ``root``: a folder of frame folders and/or videos (searched recursively), or one video file.
    Frames are scaled so that the short side is ``short_side`` (default ``size``), then cropped to ``size``
    (training passes the photos' short side: the same picture-relative scale as ``Photos``).
    Frames of a folder are ``frames.frame_files`` (flow side files such as ``reliable_*.png`` are not frames).
    A folder or video whose frames change size is split there: a pair is always two frames of one size.
    ``flow``: ``dis`` (OpenCV, default), ``raft`` (torchvision, on ``device``; needs cached weights),
    ``auto``, or a flow estimator with a ``tag`` (``flow.DISFlow``, ``flow.RAFTFlow``).
    Flows are computed once and cached as .flo beside the data (or in ``cache`` when that is read-only),
    one file per direction and pair, named by sequence, frame index, size, flow settings and a digest of
    the two frames: a different video, size or flow method never reads another's flows.
    """

    def __init__(self, root: str | Path, size: int, cache: str | Path | None = None, max_frames: int = 60,
                 flow="dis", device: str | torch.device = "cpu", short_side: int | None = None):
        root = Path(root)
        if not root.exists():
            raise VidstyleError(f"video data not found: {root}")
        self.size = size
        short = max(size, short_side or size)
        self.sequences: list[list[np.ndarray]] = []  # per sequence: (H, W, 3) uint8 frames, short side ``short``
        self.names: list[str] = []
        top = root if root.is_dir() else root.parent
        if root.is_dir():
            folders = sorted({p.parent for p in root.rglob("*") if p.is_file() and is_image(p)})
            videos = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        elif root.suffix.lower() in VIDEO_SUFFIXES:
            folders, videos = [], [root]
        else:
            raise VidstyleError(f"video data must be a folder or a video file ({', '.join(VIDEO_SUFFIXES)}): {root}")
        for d in folders:
            frames = [f for f in (load_photo(p, short) for p in frame_files(d)[:max_frames]) if f is not None]
            self._add(frames, d.relative_to(root).as_posix() if d != root else root.name)
        for v in videos:
            from ..io.reader import VideoReader
            with VideoReader(v) as r:
                frames = []
                for fr in r.frames():
                    frames.append(fit_short_side(fr.rgb, short))
                    if len(frames) >= max_frames:
                        break
            self._add(frames, v.relative_to(top).as_posix())
        if not self.sequences:
            raise VidstyleError(f"no frame sequences or videos in {root}")
        cache_root = top / ".vidstyle-flow"
        try:
            cache_root.mkdir(exist_ok=True)
            probe = cache_root / ".w"
            probe.touch()
            probe.unlink()
        except OSError:
            cache_root = Path(cache or Path.home() / ".cache" / "vidstyle" / "flow") / hashlib.md5(str(root.resolve()).encode()).hexdigest()[:12]
            cache_root.mkdir(parents=True, exist_ok=True)
        self.cache_root = cache_root
        self.pairs = [(s, t) for s, seq in enumerate(self.sequences) for t in range(1, len(seq))]
        self.flow = make_flow(flow, device)
        self._flows: dict = {}

    def _add(self, frames: list[np.ndarray], name: str) -> None:
        """Add the frames of one folder or video as sequences: split where the frame size changes (flow
        needs both frames of a pair the same size); runs of under two frames are left out. The first
        run keeps ``name``, a later one is ``name@i`` (i: its first frame's index)."""
        runs = [0] + [i for i in range(1, len(frames)) if frames[i].shape != frames[i - 1].shape]
        if len(runs) > 1:
            log.warning("frames of %s change size at frame %s: pairs only join frames of one size",
                        name, ", ".join(str(i) for i in runs[1:]))
        for a, b in zip(runs, runs[1:] + [len(frames)]):
            if b - a >= 2:
                self.sequences.append(frames[a:b])
                self.names.append(name if a == 0 else f"{name}@{a}")

    def cache_paths(self, s: int, t: int) -> tuple[Path, Path]:
        """The .flo files of pair (s, t): (flow warping frame t-1 onto t, flow warping t onto t-1)."""
        a, b = self.sequences[s][t], self.sequences[s][t - 1]
        tag = getattr(self.flow, "tag", type(self.flow).__name__)
        digest = hashlib.blake2b(digest_size=6)
        for part in (self.names[s], str(t), str(self.size), tag, str(a.shape)):
            digest.update(part.encode() + b"\0")
        digest.update(a.tobytes())
        digest.update(b.tobytes())
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", self.names[s])[-80:]
        base = f"{slug}-{t:05d}-{a.shape[1]}x{a.shape[0]}-{re.sub(r'[^A-Za-z0-9_-]+', '_', tag)}-{digest.hexdigest()}"
        return self.cache_root / f"{base}.fw.flo", self.cache_root / f"{base}.bw.flo"

    def flows(self, s: int, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Pair (s, t) -> (flow (H, W, 2) warping frame t-1 onto t, occlusion mask (H, W): 1 = visible)."""
        key = (s, t)
        if key not in self._flows:
            a, b = self.sequences[s][t], self.sequences[s][t - 1]
            fw_p, bw_p = self.cache_paths(s, t)
            fw = bw = None
            if fw_p.is_file() and bw_p.is_file():
                try:
                    fw, bw = read_flo(fw_p), read_flo(bw_p)
                except VidstyleError:  # a damaged cache file: compute it again
                    log.warning("recomputing damaged flow cache files %s", fw_p.name)
            if fw is None or fw.shape[:2] != a.shape[:2] or bw.shape[:2] != a.shape[:2]:
                fw, bw = self.flow(a, b), self.flow(b, a)
                _write_flo_atomic(fw_p, fw)
                _write_flo_atomic(bw_p, bw)
            mask = occlusion(to_tensor(fw), to_tensor(bw))[0, 0].numpy()
            self._flows[key] = (fw, mask)
        return self._flows[key]

    def batch(self, n: int, gen: torch.Generator):
        """(x_prev, x_t, flow, mask) random crops of ``size``."""
        xp, xt, fl, ms = [], [], [], []
        for _ in range(n):
            s, t = self.pairs[int(torch.randint(len(self.pairs), (1,), generator=gen))]
            flow, mask = self.flows(s, t)
            a, b = self.sequences[s][t], self.sequences[s][t - 1]
            h, w = a.shape[:2]
            y = int(torch.randint(h - self.size + 1, (1,), generator=gen))
            x = int(torch.randint(w - self.size + 1, (1,), generator=gen))
            sl = (slice(y, y + self.size), slice(x, x + self.size))
            xt.append(torch.from_numpy(np.ascontiguousarray(a[sl])))
            xp.append(torch.from_numpy(np.ascontiguousarray(b[sl])))
            fl.append(torch.from_numpy(np.ascontiguousarray(flow[sl])))
            ms.append(torch.from_numpy(np.ascontiguousarray(mask[sl])))
        img = lambda v: torch.stack(v).permute(0, 3, 1, 2).float() / 255  # noqa: E731
        return img(xp), img(xt), torch.stack(fl).permute(0, 3, 1, 2).float(), torch.stack(ms)[:, None].float()


def _write_flo_atomic(path: Path, flow: np.ndarray) -> None:
    """Write a .flo file whole or not at all (a reader never sees half a file)."""
    with AtomicPath(path) as atomic:
        write_flo(atomic.tmp, flow)


def _fit(shape, short_side: int) -> tuple[int, int]:
    h, w = shape[:2]
    s = short_side / min(h, w)
    return max(short_side, round(w * s)), max(short_side, round(h * s))
