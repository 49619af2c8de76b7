"""The painter: a style network on a device, taking and giving uint8 RGB frames.

Nothing outside this module knows where tensors live. On CUDA the batch is
copied through pinned memory without blocking, converted to float on the
device, and run in fp16 (autocast) with channels_last. On the CPU the network
runs on OpenVINO when it is installed (bf16 where the CPU has native bf16
maths, else fp32), or on PyTorch (bf16 autocast or fp32): see ``engines``.
Resizing, padding of tiny frames, strength and colour preservation happen
here, the same for every engine.
"""
from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F

from . import engines
from .errors import VidstyleError
from .models.config import LUMA
from .models.files import StyleModel
from .options import PaintOptions
from .painting import PainterBase
from .sizing import scaled_size, shrunk_to, working_size  # noqa: F401 - this module's API too

_LUMA = torch.tensor(LUMA)


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


def resize(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    down = hw[0] < x.shape[-2] or hw[1] < x.shape[-1]  # either axis shrunk: without antialias it aliases
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=down)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> (N, 1, H, W) BT.601 luma."""
    return (x * _LUMA.to(x)[None, :, None, None]).sum(1, keepdim=True)


def keep_colour(stylized: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Luminance of ``stylized``, colour (chroma) of ``original`` (Gatys et al. 2016, 'luminance-only')."""
    return original + (luminance(stylized) - luminance(original))


class Stylizer(PainterBase):
    """Apply a style model to batches of frames.

    Frames are painted at ``working_size``: by default at the scale the model was trained at, so the
    brush strokes look the same on 360p and 4K (``brush`` makes them larger or smaller; ``max_side``
    sets the longer side instead), then scaled back; ``out_size`` (w, h) sets the size returned
    (default: the input's).

    ``engine``: ``auto`` (OpenVINO on the CPU when installed, else PyTorch; PyTorch on CUDA),
    ``torch`` or ``openvino`` (CPU only). ``precision``: ``auto`` (fp16 on CUDA, bf16 on a CPU
    with native bf16, else fp32), ``fp32``, ``bf16`` or ``fp16`` (CUDA). ``half`` is the older
    switch: True means fp16 on CUDA and bf16 on the CPU, False fp32; it applies when
    ``precision`` is ``auto``. ``realtime`` (live mode): ``auto`` favours speed, int8 on CPUs where it
    pays (``engines.make_engine``).

    Frames smaller than the network can paint (a side under 8 after ``max_side``) are padded
    with their edge pixels and cropped back, so even 1x1 works. The style (mix) is read from
    ``model.net.mix`` on every call, so ``model.select(...)`` takes effect at once on any engine.
    """

    def __init__(self, model: StyleModel, device: str | torch.device | None = None, *,
                 options: PaintOptions | None = None, half: bool | None = None, realtime: bool = False, **kwargs):
        # ``options`` (a PaintOptions) or its fields as keyword arguments; ``device`` given here wins over its own
        options = options.replace(**kwargs) if options is not None and kwargs else options or PaintOptions(**kwargs)
        if device is not None and not isinstance(device, torch.device):
            options = options.replace(device=device)
        self._take(model, options)
        self.device = device if isinstance(device, torch.device) else pick_device(options.device)
        self.cuda = self.device.type == "cuda"
        precision = options.precision
        if half is not None and precision == "auto":
            precision = ("fp16" if self.cuda else "bf16") if half else "fp32"
        self.engine = engines.make_engine(model, self.device, options.engine, precision, realtime)
        self.precision = self.engine.precision  # "fp32", "bf16" or "fp16"
        self.half = self.engine.dtype is not None

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
        small = resize(x, self.work_size(h, w))
        # a picture's strength moves its style vector towards the content's own (Ghiasi et al.), truer than a blend
        by_vector = self.strength < 1.0 and getattr(self.model, "is_picture", False)
        mix = self.model.toward_content(small[0], self.strength) if by_vector else None
        y = resize(self.run_net(small, mix), (h, w)).clamp_(0, 1)
        if self.preserve_color:
            y = keep_colour(y, x).clamp_(0, 1)
        if self.strength < 1.0 and not by_vector:
            y = torch.lerp(x, y, self.strength)
        return y

    @torch.inference_mode()
    def run_net(self, x: torch.Tensor, mix: torch.Tensor | None = None) -> torch.Tensor:
        """The network alone on (N, 3, H, W) float [0, 1]: raw float32 output of the same size; ``mix``: the
        style weights (a picture's vector) to paint with instead of the model's own.

        Sizes go to the engine as multiples of 4 and at least ``engines.MIN_SIDE``: padded by
        reflection as ``TransformerNet`` does, by edge pixels where the frame is too small to
        reflect, then cropped back.
        """
        h, w = x.shape[-2:]
        # not shared with TransformerNet.forward (no MIN_SIDE floor) nor torch_export.StyleGraph (branch-free, always
        # reflect, so that tracing keeps H and W dynamic): each pads to multiples of 4 its own way on purpose
        th, tw = max(engines.MIN_SIDE, -(-h // 4) * 4), max(engines.MIN_SIDE, -(-w // 4) * 4)
        if (th, tw) != (h, w):
            mode = "reflect" if (th - h < h and tw - w < w) else "replicate"
            x = F.pad(x, (0, tw - w, 0, th - h), mode=mode)
        y = self.engine(x, self.model.net.mix if mix is None else mix)
        return y[..., :h, :w]

    def finish(self, y: torch.Tensor, out_size: tuple[int, int] | None = None) -> torch.Tensor:
        """Scale to the output size (w, h): ``out_size``, else the Stylizer's (none: as painted)."""
        out_size = out_size or self.out_size
        if out_size is not None:
            y = resize(y, (out_size[1], out_size[0]))
        return y

    def paint_frames(self, frames: np.ndarray, stabilizer=None) -> torch.Tensor:
        """(N, H, W, 3) uint8 -> (N, 3, H, W) float stylized on the device, then stabilised.

        ``stabilizer`` is a callable (inputs, outputs) -> outputs. When it has ``begin``
        (``temporal.Stabilizer``), its flows are started first so that they overlap the
        network, and it is called as (inputs, outputs, pending).
        """
        begin = getattr(stabilizer, "begin", None)
        if hasattr(stabilizer, "style_strength"):
            stabilizer.style_strength = self.temporal_strength  # the style painted now (live can switch)
        if begin is not None and getattr(stabilizer, "device", None) is None:
            stabilizer.device = self.device  # RAFT runs where the painter does
        if begin is not None and getattr(stabilizer, "max_side", None) is None:
            stabilizer.max_side = max(self.work_size(*frames.shape[1:3]))  # RAFT's flow at the painting size
        self.check_fits(*frames.shape[:3])
        pending = begin(frames) if begin is not None else None
        with torch.inference_mode():
            x = self.upload(frames)
            y = self.paint(x)
            if stabilizer is None:
                return y
            return stabilizer(x, y, pending) if begin is not None else stabilizer(x, y)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB -> (N, H', W', 3) uint8 stylized (``PainterBase.__call__``, in inference mode)."""
        with torch.inference_mode():
            return super().__call__(frames)

    def auto_batch(self, h: int, w: int) -> int:
        """A batch size that keeps the device busy without running out of memory."""
        if not self.cuda:
            return super().auto_batch(h, w)
        hh, ww = self.work_size(h, w)
        return int(max(1, min(32, 8 * (1920 * 1080) // max(1, hh * ww))))
