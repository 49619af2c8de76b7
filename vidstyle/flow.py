"""Optical flow: OpenCV DIS (always there), torchvision RAFT (when its weights are cached),
and Middlebury ``.flo`` files.

Flows here are numpy float32 (H, W, 2) in pixels or torch (N, 2, H, W); the
convention is the one of ``warp.py``: ``flow(prev_to_next)`` computed with
``estimate(target, source)`` warps ``source`` onto ``target``.
"""
from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import torch

from .errors import VidstyleError

FLO_MAGIC = 202021.25


def read_flo(path: str | Path) -> np.ndarray:
    """Middlebury .flo -> (H, W, 2) float32."""
    with open(path, "rb") as f:
        magic = struct.unpack("<f", f.read(4))[0]
        if abs(magic - FLO_MAGIC) > 1e-3:
            raise VidstyleError(f"{path} is not a .flo file (bad magic {magic})")
        w, h = struct.unpack("<ii", f.read(8))
        data = np.frombuffer(f.read(w * h * 8), dtype="<f4")
    if data.size != w * h * 2:
        raise VidstyleError(f"{path} is truncated")
    return data.reshape(h, w, 2).astype(np.float32)


def write_flo(path: str | Path, flow: np.ndarray) -> None:
    flow = np.asarray(flow, dtype="<f4")
    h, w = flow.shape[:2]
    with open(path, "wb") as f:
        f.write(struct.pack("<f", FLO_MAGIC))
        f.write(struct.pack("<ii", w, h))
        f.write(flow.tobytes())


class DISFlow:
    """OpenCV's Dense Inverse Search flow on grey images; ``scale`` < 1 computes at reduced size."""

    def __init__(self, preset: str = "medium", scale: float = 1.0):
        presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                   "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
        self.dis = cv2.DISOpticalFlow_create(presets[preset])
        self.scale = scale

    def __call__(self, target: np.ndarray, source: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB frames -> (H, W, 2) float32 flow warping ``source`` onto ``target``."""
        h, w = target.shape[:2]
        a, b = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (target, source))
        if self.scale != 1.0:
            size = (max(8, round(w * self.scale)), max(8, round(h * self.scale)))
            a, b = cv2.resize(a, size, interpolation=cv2.INTER_AREA), cv2.resize(b, size, interpolation=cv2.INTER_AREA)
        f = self.dis.calc(a, b, None)
        if self.scale != 1.0:
            f = cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) / self.scale
        return f.astype(np.float32)


def raft_available() -> bool:
    """True when torchvision's RAFT (large) weights are already in the torch hub cache."""
    try:
        from torchvision.models.optical_flow import Raft_Large_Weights
    except ImportError:
        return False
    url = Raft_Large_Weights.DEFAULT.url
    cache = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    return cache.is_file()


class RAFTFlow:
    """torchvision RAFT-large on a device (needs cached weights; never downloads here)."""

    def __init__(self, device: str | torch.device = "cuda"):
        if not raft_available():
            raise VidstyleError("RAFT weights are not cached; use --flow dis (or run once with internet)")
        from torchvision.models.optical_flow import Raft_Large_Weights, raft_large
        self.device = torch.device(device)
        self.model = raft_large(weights=Raft_Large_Weights.DEFAULT).eval().to(self.device)

    @torch.inference_mode()
    def batch(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) [0, 1] -> (N, 2, H, W)."""
        h, w = target.shape[-2:]
        ph, pw = (-h) % 8, (-w) % 8
        pad = lambda x: torch.nn.functional.pad(x * 2 - 1, (0, pw, 0, ph), mode="replicate")  # noqa: E731
        return self.model(pad(target), pad(source), num_flow_updates=12)[-1][..., :h, :w]

    def __call__(self, target: np.ndarray, source: np.ndarray) -> np.ndarray:
        t = lambda x: torch.from_numpy(x).to(self.device).permute(2, 0, 1)[None].float() / 255  # noqa: E731
        return self.batch(t(target), t(source))[0].permute(1, 2, 0).cpu().numpy()


def make_flow(kind: str = "auto", device: str | torch.device = "cpu", scale: float = 1.0, preset: str = "medium"):
    kind = kind.lower()
    if kind == "auto":
        kind = "raft" if torch.device(device).type == "cuda" and raft_available() else "dis"
    if kind == "raft":
        return RAFTFlow(device)
    if kind == "dis":
        return DISFlow(preset, scale)
    raise VidstyleError(f"--flow must be dis, raft or auto, not {kind!r}")


def to_tensor(flow: np.ndarray, device="cpu") -> torch.Tensor:
    """(H, W, 2) or (N, H, W, 2) numpy -> (N, 2, H, W) torch."""
    t = torch.from_numpy(np.ascontiguousarray(flow)).to(device)
    return (t[None] if t.dim() == 3 else t).permute(0, 3, 1, 2).float()
