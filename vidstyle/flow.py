"""Optical flow: OpenCV DIS (always there), torchvision RAFT (when its weights are cached),
and Middlebury ``.flo`` files.

Flows here are numpy float32 (H, W, 2) in pixels or torch (N, 2, H, W); the
convention is the one of ``warp.py``: ``flow(prev_to_next)`` computed with
``estimate(target, source)`` warps ``source`` onto ``target``.

Every estimator has a ``tag``: a short string naming the method and the settings that change
its result, used in cache keys.

Importable without PyTorch (the light install): ``DISFlow``, ``read_flo``, ``write_flo`` and
``make_flow("dis")`` / ``make_flow("auto")`` need only OpenCV and NumPy; torch is imported inside
what needs it (RAFT, ``to_tensor``), and ``make_flow("raft")`` without it raises a ``VidstyleError``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .errors import VidstyleError
from .extras import need_torch, torch_missing

if TYPE_CHECKING:  # annotations only: torch is imported where it is used
    import torch

RAFT_MIN_SIDE = 128          # torchvision's RAFT needs feature maps of 16 px: frames of 128 px at least
RAFT_MAX_PIXELS = 1280 * 720  # RAFT's all-pairs correlation grows with the square of this: about 720p at most
RAFT_NEEDS_TORCH = torch_missing("RAFT flow")  # the light stabiliser's line for --flow raft


def read_flo(path: str | Path) -> np.ndarray:
    """Middlebury .flo -> (H, W, 2) float32 (OpenCV's reader)."""
    path = Path(path)
    if not path.is_file():
        raise VidstyleError(f"flow file not found: {path}")
    with open(path, "rb") as f:  # the header first: OpenCV would try to allocate what a damaged one says
        head = f.read(12)
    w, h = (int(v) for v in np.frombuffer(head[4:], "<i4")) if len(head) == 12 else (0, 0)
    if head[:4] != b"PIEH" or not (0 < w < 100_000 and 0 < h < 100_000) or path.stat().st_size != 12 + 8 * w * h:
        raise VidstyleError(f"{path} is not a .flo file (bad header or truncated)")
    flow = cv2.readOpticalFlow(str(path))
    if flow is None or flow.size == 0:
        raise VidstyleError(f"{path} is not a .flo file (bad header or truncated)")
    return flow


def write_flo(path: str | Path, flow: np.ndarray) -> None:
    """(H, W, 2) flow -> Middlebury .flo (OpenCV's writer, float32)."""
    flow = np.ascontiguousarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise VidstyleError(f"a .flo file holds an (H, W, 2) flow, not {flow.shape}")
    if not cv2.writeOpticalFlow(str(path), flow):
        raise VidstyleError(f"cannot write {path}")


def _dis_padded(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grey (h, w) images padded (edge pixels repeated, bottom and right) to what OpenCV's DIS can take.

    DIS picks its pyramid depth from the longer side; where the shorter side is under a quarter of it,
    or under 32 px, the coarsest level is too thin and OpenCV 4 crashes the process (a segmentation
    fault, measured on 12x40, 16x80 and 8x200 frames). Padding to at least that keeps every level whole;
    the caller crops the flow back to (h, w).
    """
    h, w = a.shape[:2]
    need = max(32, -(-max(h, w) // 4))
    ph, pw = max(0, need - h), max(0, need - w)
    if not (ph or pw):
        return a, b
    return tuple(cv2.copyMakeBorder(x, 0, ph, 0, pw, cv2.BORDER_REPLICATE) for x in (a, b))


class DISFlow:
    """OpenCV's Dense Inverse Search flow on grey images; ``scale`` < 1 computes at reduced size."""

    PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}

    def __init__(self, preset: str = "medium", scale: float = 1.0):
        if preset not in self.PRESETS:
            raise VidstyleError(f"DIS preset must be one of {', '.join(self.PRESETS)}, not {preset!r}")
        self.dis = cv2.DISOpticalFlow_create(self.PRESETS[preset])
        self.scale = scale
        self.tag = f"dis-{preset}-x{scale:g}"

    def __call__(self, target: np.ndarray, source: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB frames -> (H, W, 2) float32 flow warping ``source`` onto ``target``."""
        h, w = target.shape[:2]
        a, b = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (target, source))
        if self.scale != 1.0:
            size = (max(8, round(w * self.scale)), max(8, round(h * self.scale)))  # (w, h)
            a, b = cv2.resize(a, size, interpolation=cv2.INTER_AREA), cv2.resize(b, size, interpolation=cv2.INTER_AREA)
        f = self.dis.calc(*_dis_padded(a, b), None)[:a.shape[0], :a.shape[1]]
        if self.scale != 1.0:
            # back to frame pixels per axis: the 8 px floor and rounding make the real factors differ from 1/scale
            f = cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR)
            f[..., 0] *= w / size[0]
            f[..., 1] *= h / size[1]
        return f.astype(np.float32)


def raft_weights_path(variant: str = "large") -> Path:
    """Where torchvision caches RAFT ``large`` or ``small`` weights (the torch hub checkpoints folder)."""
    import torch
    from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights

    weights = {"large": Raft_Large_Weights, "small": Raft_Small_Weights}[variant].DEFAULT
    return Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1]


def raft_available(variant: str = "large") -> bool:
    """True when torchvision's RAFT weights are already in the torch hub cache (False without torch)."""
    try:
        return raft_weights_path(variant).is_file()
    except ImportError:
        return False


def raft_work_size(h: int, w: int, max_side: int | None = None,
                   max_pixels: int = RAFT_MAX_PIXELS) -> tuple[int, int]:
    """(h, w) of a frame -> (h', w') RAFT runs at: at most ``max_pixels`` and ``max_side`` (the
    longer side), never under 128 px on the shorter side, both multiples of 8.

    Differs from ``stylizer.scaled_size`` / ``working_size`` on purpose: RAFT needs sides that are multiples
    of 8 and at least 128 px (it may enlarge), and its memory grows with the pixel count, hence the cap.
    """
    s = min(1.0, math.sqrt(max_pixels / (h * w)))
    if max_side:
        s = min(s, max_side / max(h, w))
    s = max(s, RAFT_MIN_SIDE / min(h, w))
    return max(RAFT_MIN_SIDE, round(h * s / 8) * 8), max(RAFT_MIN_SIDE, round(w * s / 8) * 8)


def _load_raft(variant: str) -> torch.nn.Module:
    """torchvision's RAFT with the cached weights, read as tensors only (no pickle)."""
    import torch
    from torchvision.models.optical_flow import raft_large, raft_small

    path = raft_weights_path(variant)
    if not path.is_file():
        raise VidstyleError(f"RAFT weights are not cached ({path}); use --flow dis (or run once with internet)")
    model = {"large": raft_large, "small": raft_small}[variant](weights=None)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as e:  # not a tensor-only file, or not these weights
        raise VidstyleError(f"{path} is not torchvision's RAFT-{variant} weights "
                            f"({str(e).splitlines()[0][:120]}); delete it or use --flow dis") from None
    return model


class RAFTFlow:
    """torchvision RAFT on a device (needs cached weights; never downloads here).

    ``model``: ``large`` or ``small`` (the cached torchvision weights), or a RAFT module to use as is.
    Each pair runs on its own (the correlation volume of one 720p pair is about 1 GB), at
    ``raft_work_size`` of the frames, and the flow is scaled back to the frame size.
    """

    def __init__(self, device: str | torch.device = "cuda", model: str | torch.nn.Module = "large",
                 num_flow_updates: int = 12, max_pixels: int = RAFT_MAX_PIXELS):
        need_torch("RAFT flow")
        import torch

        self.device = torch.device(device)
        if isinstance(model, str):
            if model not in ("large", "small"):
                raise VidstyleError(f"RAFT model must be large or small, not {model!r}")
            name, model = model, _load_raft(model)
        else:
            name = "custom"
        self.model = model.eval().to(self.device)
        self.num_flow_updates = num_flow_updates
        self.max_pixels = max_pixels
        self.tag = f"raft-{name}-u{num_flow_updates}-p{max_pixels}"

    def batch(self, target: torch.Tensor, source: torch.Tensor, max_side: int | None = None) -> torch.Tensor:
        """(N, 3, H, W) [0, 1] -> (N, 2, H, W) float32 flows warping ``source`` onto ``target``.

        RAFT runs pair by pair at ``raft_work_size(H, W, max_side)``; N may be 0. Runs in inference mode.
        """
        import torch

        with torch.inference_mode():
            return self._batch(target, source, max_side)

    def _batch(self, target: torch.Tensor, source: torch.Tensor, max_side: int | None) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        n, _, h, w = target.shape
        if n == 0:
            return target.new_zeros((0, 2, h, w), dtype=torch.float32)
        rh, rw = raft_work_size(h, w, max_side, self.max_pixels)
        # per-axis factors from the work size back to the frame size: (1, 2, 1, 1) as (x, y)
        back = torch.tensor([w / rw, h / rh], device=self.device).view(1, 2, 1, 1)
        out = []
        for i in range(n):
            a, b = (v[i:i + 1].to(self.device, torch.float32) for v in (target, source))  # (1, 3, H, W)
            if (rh, rw) != (h, w):
                a, b = (F.interpolate(v, size=(rh, rw), mode="bilinear", align_corners=False,
                                      antialias=rh < h) for v in (a, b))
            f = self.model(a * 2 - 1, b * 2 - 1, num_flow_updates=self.num_flow_updates)[-1]  # (1, 2, rh, rw)
            if (rh, rw) != (h, w):
                f = F.interpolate(f, size=(h, w), mode="bilinear", align_corners=False) * back
            out.append(f.to(target.device))
        return torch.cat(out)

    def __call__(self, target: np.ndarray, source: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB frames -> (H, W, 2) float32 flow warping ``source`` onto ``target``."""
        import torch

        t = lambda x: torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float() / 255  # noqa: E731
        return self.batch(t(target), t(source))[0].permute(1, 2, 0).cpu().numpy()


def make_flow(kind="auto", device: str | torch.device = "cpu", scale: float = 1.0, preset: str = "medium"):
    """``dis``, ``raft``, ``auto`` (RAFT on CUDA when cached, else DIS) or a flow object (returned as is).

    Without PyTorch (or with ``VIDSTYLE_TORCH=0``: ``extras.has_torch``) ``auto`` is DIS and ``raft`` raises a
    one-line ``VidstyleError``; torch is not imported then.
    """
    from .extras import has_torch

    if not isinstance(kind, str):
        if not callable(kind):
            raise VidstyleError(f"a flow must be dis, raft, auto or a flow estimator, not {kind!r}")
        return kind
    kind = kind.lower()
    if kind == "auto":
        if has_torch():
            import torch
            kind = "raft" if torch.device(device).type == "cuda" and raft_available() else "dis"
        else:  # the light install: no RAFT
            kind = "dis"
    if kind == "raft":
        need_torch("RAFT flow")
        return RAFTFlow(device)
    if kind == "dis":
        return DISFlow(preset, scale)
    raise VidstyleError(f"--flow must be dis, raft or auto, not {kind!r}")


def to_tensor(flow: np.ndarray, device="cpu") -> torch.Tensor:
    """(H, W, 2) or (N, H, W, 2) numpy -> (N, 2, H, W) torch."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(flow)).to(device)
    return (t[None] if t.dim() == 3 else t).permute(0, 3, 1, 2).float()
