"""The painter: a style network on a device, taking and giving uint8 RGB frames.

Nothing outside this module knows where tensors live. On CUDA the batch is
copied through pinned memory without blocking, converted to float on the
device, and run in fp16 (autocast) with channels_last; on the CPU in fp32.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .errors import VidstyleError
from .models.files import StyleModel

_LUMA = torch.tensor([0.299, 0.587, 0.114])


def pick_device(name: str = "auto") -> torch.device:
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise VidstyleError("--device cuda: no CUDA GPU is usable here (use --device cpu or auto)")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise VidstyleError(f"--device must be auto, cpu or cuda, not {name!r}")


def scaled_size(h: int, w: int, max_side: int | None) -> tuple[int, int]:
    """(h, w) shrunk so the longer side is at most ``max_side`` (never enlarged)."""
    if not max_side or max(h, w) <= max_side:
        return h, w
    s = max_side / max(h, w)
    return max(4, round(h * s)), max(4, round(w * s))


def resize(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    down = hw[0] < x.shape[-2]
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=down)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> (N, 1, H, W) BT.601 luma."""
    return (x * _LUMA.to(x)[None, :, None, None]).sum(1, keepdim=True)


def keep_colour(stylized: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Luminance of ``stylized``, colour (chroma) of ``original`` (Gatys et al. 2016, 'luminance-only')."""
    return original + (luminance(stylized) - luminance(original))


class Stylizer:
    """Apply a style model to batches of frames.

    ``max_side`` stylizes at a reduced size (brush strokes scale with it) and
    scales back; ``out_size`` (w, h) sets the size returned (default: the input's).
    """

    def __init__(self, model: StyleModel, device: str | torch.device = "auto", *, max_side: int | None = None,
                 out_size: tuple[int, int] | None = None, strength: float = 1.0, preserve_color: bool = False,
                 half: bool | None = None):
        if not 0.0 <= strength <= 1.0:
            raise VidstyleError(f"--strength must be between 0 and 1, not {strength}")
        self.model = model
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.cuda = self.device.type == "cuda"
        self.half = self.cuda if half is None else half
        self.max_side = max_side
        self.out_size = out_size
        self.strength = float(strength)
        self.preserve_color = preserve_color
        net = model.net.to(self.device).eval()
        if self.cuda:
            net = net.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True
        self.net = net

    @property
    def name(self) -> str:
        return self.model.name

    # uint8 host frames <-> float device tensors -------------------------------
    def upload(self, frames: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1] on the device."""
        t = torch.from_numpy(np.ascontiguousarray(frames))
        if self.cuda:
            t = t.pin_memory().to(self.device, non_blocking=True)
        return t.permute(0, 3, 1, 2).float().div_(255.0)

    @staticmethod
    def download(x: torch.Tensor) -> np.ndarray:
        """(N, 3, H, W) float -> (N, H, W, 3) uint8 on the host."""
        y = x.clamp(0, 1).mul(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1)
        return y.contiguous().cpu().numpy()

    @torch.inference_mode()
    def paint(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float [0, 1] on the device -> stylized, same size, blended as asked."""
        h, w = x.shape[-2:]
        small = resize(x, scaled_size(h, w, self.max_side))
        if self.cuda:
            small = small.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.half):
            y = self.net(small)
        y = resize(y.float(), (h, w)).clamp_(0, 1)
        if self.preserve_color:
            y = keep_colour(y, x).clamp_(0, 1)
        if self.strength < 1.0:
            y = torch.lerp(x, y, self.strength)
        return y

    def finish(self, y: torch.Tensor) -> torch.Tensor:
        """Scale to the output size."""
        if self.out_size is not None:
            y = resize(y, (self.out_size[1], self.out_size[0]))
        return y

    def paint_frames(self, frames: np.ndarray, stabilizer=None) -> torch.Tensor:
        """(N, H, W, 3) uint8 -> (N, 3, H, W) float stylized on the device, then stabilised.

        ``stabilizer`` is a callable (inputs, outputs) -> outputs. When it has ``begin``
        (``temporal.Stabilizer``), its flows are started first so that they overlap the
        network, and it is called as (inputs, outputs, pending).
        """
        begin = getattr(stabilizer, "begin", None)
        if begin is not None and getattr(stabilizer, "device", None) is None:
            stabilizer.device = self.device  # RAFT runs where the painter does
        pending = begin(frames) if begin is not None else None
        with torch.inference_mode():
            x = self.upload(frames)
            y = self.paint(x)
            if stabilizer is None:
                return y
            return stabilizer(x, y, pending) if begin is not None else stabilizer(x, y)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, H', W', 3) uint8 stylized."""
        with torch.inference_mode():
            return self.download(self.finish(self.paint_frames(frames)))

    def auto_batch(self, h: int, w: int) -> int:
        """A batch size that keeps the device busy without running out of memory."""
        if not self.cuda:
            return 1
        hh, ww = scaled_size(h, w, self.max_side)
        return int(max(1, min(32, 8 * (1920 * 1080) // max(1, hh * ww))))
