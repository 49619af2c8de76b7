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

import os

import numpy as np
import torch
import torch.nn.functional as F

from . import engines
from .errors import VidstyleError
from .models.files import StyleModel, model_scale
from .options import PaintOptions

_LUMA = torch.tensor([0.299, 0.587, 0.114])
# Memory a CPU painting takes, beyond the model: per pixel painted (the network's activations; measured with the
# bundled network on OpenVINO, 1024x1024 to 2048x2048 frames: about 250 B) and per pixel of the frame (its float
# copies on the way in and out). A painting that would take more than FREE_SHARE of the free memory is refused.
BYTES_PER_PAINTED_PIXEL = 320
BYTES_PER_FRAME_PIXEL = 40
FREE_SHARE = 0.8


def free_memory() -> int | None:
    """Bytes of memory this machine can still give (Linux's MemAvailable), or None where it cannot be told."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


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


def _shrunk(h: int, w: int, s: float) -> tuple[int, int]:
    """(h, w) times ``s``, rounded, at least 4 px a side: the last step of ``scaled_size`` and ``working_size``."""
    return max(4, round(h * s)), max(4, round(w * s))


def scaled_size(h: int, w: int, max_side: int | None) -> tuple[int, int]:
    """(h, w) shrunk so the longer side is at most ``max_side`` (never enlarged).

    Differs from ``working_size`` (which can target the short side instead) and ``flow.raft_work_size``
    (pixel cap, 128 px minimum, multiples of 8): only the longer side is capped.
    """
    if not max_side or max(h, w) <= max_side:
        return h, w
    return _shrunk(h, w, max_side / max(h, w))


def shrunk_to(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    """(H, W, 3) uint8 ``rgb`` resized (area) to ``scaled_size``: itself when it already fits."""
    import cv2

    h, w = rgb.shape[:2]
    hh, ww = scaled_size(h, w, max_side)
    return cv2.resize(rgb, (ww, hh), interpolation=cv2.INTER_AREA) if (hh, ww) != (h, w) else rgb


def working_size(h: int, w: int, *, max_side: int | None = None, scale: int | None = None,
                 brush: float = 1.0) -> tuple[int, int]:
    """The size a (h, w) frame is painted at (never larger than the frame).

    ``max_side``: the longer side, when given (it overrides the rest). Otherwise ``scale``, the short
    side of the pictures the model learnt on, divided by ``brush``: at that size the strokes are as
    large, relative to the picture, as they were in training, whatever the video's resolution
    (a 1080p frame painted at full size would get strokes a quarter as large). ``brush`` 2 paints
    strokes twice as large; 0.5 half as large.

    Differs from ``scaled_size`` (which it uses for ``max_side``) by shrinking the short side to the model's
    scale, and from ``flow.raft_work_size`` by having no pixel cap, no 128 px minimum and no rounding to 8.
    """
    if max_side:
        return scaled_size(h, w, max_side)
    if not scale or brush <= 0:
        return h, w
    short = max(8, round(scale / brush))
    if min(h, w) <= short:
        return h, w
    return _shrunk(h, w, short / min(h, w))


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


class Stylizer:
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
        self.options = options
        self.model = model
        self.device = device if isinstance(device, torch.device) else pick_device(options.device)
        self.cuda = self.device.type == "cuda"
        precision = options.precision
        if half is not None and precision == "auto":
            precision = ("fp16" if self.cuda else "bf16") if half else "fp32"
        self.max_side = options.max_side
        self.brush = options.brush
        self.scale = model_scale(model.training)
        self.out_size = options.out_size
        self.strength = options.strength
        self.preserve_color = options.preserve_color
        self.engine = engines.make_engine(model, self.device, options.engine, precision, realtime)
        self.precision = self.engine.precision  # "fp32", "bf16" or "fp16"
        self.half = self.engine.dtype is not None
        self.net = model.net
        self._fits: set[tuple[int, int, int]] = set()  # (n, h, w) batches known to fit in memory

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def temporal_strength(self) -> float:
        """The ``--temporal`` strength of the style painted now: its model file's, else the default."""
        from .models.metadata import DEFAULT_STRENGTH

        own = self.model.temporal_strength()
        return DEFAULT_STRENGTH if own is None else own

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
        # not shared with TransformerNet.forward (no MIN_SIDE floor) nor export.StyleGraph (branch-free, always
        # reflect, so that tracing keeps H and W dynamic): each pads to multiples of 4 its own way on purpose
        th, tw = max(engines.MIN_SIDE, -(-h // 4) * 4), max(engines.MIN_SIDE, -(-w // 4) * 4)
        if (th, tw) != (h, w):
            mode = "reflect" if (th - h < h and tw - w < w) else "replicate"
            x = F.pad(x, (0, tw - w, 0, th - h), mode=mode)
        y = self.engine(x, self.model.net.mix if mix is None else mix)
        return y[..., :h, :w]

    def work_size(self, h: int, w: int) -> tuple[int, int]:
        """The size an (h, w) frame is painted at (see ``working_size``)."""
        return working_size(h, w, max_side=self.max_side, scale=self.scale, brush=self.brush)

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

    def paint_batch(self, frames: list[np.ndarray], stabilizer=None,
                    out_size: tuple[int, int] | None = None) -> list[np.ndarray]:
        """A batch of decoded frames, (H, W, 3) uint8 each, -> their paintings at the output size (``finish``),
        in order.

        A video may change its frame size mid-stream: frames of one size are painted together, so a batch
        that spans the change is painted in two calls (the stabiliser sees the frames in order either way).
        """
        out: list[np.ndarray] = []
        start = 0
        for i in range(1, len(frames) + 1):
            if i == len(frames) or frames[i].shape != frames[start].shape:
                y = self.paint_frames(np.stack(frames[start:i]), stabilizer)
                out += list(self.download(self.finish(y, out_size)))
                start = i
        return out

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB -> (N, H', W', 3) uint8 stylized; anything else is a VidstyleError (a float
        or 16-bit picture would be painted as if it were 0..255)."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise VidstyleError(f"a Stylizer paints (N, H, W, 3) RGB frames, not an array of shape {frames.shape}")
        if frames.dtype != np.uint8:
            raise VidstyleError(f"a Stylizer paints uint8 frames (0..255), not {frames.dtype}; convert with "
                                "(x * 255).round().astype(np.uint8) for 0..1 floats")
        if len(frames) == 0:
            return np.zeros((0, *frames.shape[1:]), np.uint8)
        with torch.inference_mode():
            return self.download(self.finish(self.paint_frames(frames)))

    def check_fits(self, n: int, h: int, w: int) -> None:
        """A one-line VidstyleError, before anything is allocated, when painting ``n`` (h, w) frames on the CPU
        would take more memory than this machine has free (``--max-side 8000`` on a large picture)."""
        if self.cuda or (n, h, w) in self._fits:
            return
        hh, ww = self.work_size(h, w)
        need = n * (hh * ww * BYTES_PER_PAINTED_PIXEL + h * w * BYTES_PER_FRAME_PIXEL)
        free = free_memory()
        if free is not None and need > FREE_SHARE * free:
            what = "lower --max-side" if self.max_side else "raise --brush"
            raise VidstyleError(f"painting {w}x{h} at {ww}x{hh} needs about {need / 1e9:.1f} GB of memory and "
                                f"{free / 1e9:.1f} GB are free; {what}, or paint a smaller picture")
        self._fits.add((n, h, w))

    def auto_batch(self, h: int, w: int) -> int:
        """A batch size that keeps the device busy without running out of memory."""
        if not self.cuda:
            return 1
        hh, ww = self.work_size(h, w)
        return int(max(1, min(32, 8 * (1920 * 1080) // max(1, hh * ww))))
