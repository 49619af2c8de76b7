"""What the two painters share (``stylizer.Stylizer`` on PyTorch, ``light.painter.FramePainter`` without it), and
what the two stabilisers share (``temporal.Stabilizer``, ``light.stabilizer.Stabilizer``). No PyTorch here.

A painter sets ``model``, ``max_side``, ``brush``, ``scale``, ``out_size`` and ``_fits`` (a set), and defines
``paint_frames(frames, stabilizer)``, ``finish(painted, out_size)`` and ``download(painted)`` (-> uint8 array).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import sizing
from .errors import VidstyleError


class PainterBase:
    """The interface the pipeline, ``image``, ``live`` and ``bench`` use, the same for both painters."""

    cuda = False  # a GPU painter skips the host-memory check

    def _take(self, model, options) -> None:
        """The model and the painting options both painters keep as attributes (live mode changes ``strength``
        and ``preserve_color`` between frames)."""
        from .models.files import model_scale

        self.options = options
        self.model = model
        self.net = model.net
        self.max_side = options.max_side
        self.brush = options.brush
        self.scale = model_scale(model.training)
        self.out_size = options.out_size
        self.strength = options.strength
        self.preserve_color = options.preserve_color
        self._fits: set[tuple[int, int, int]] = set()

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def temporal_strength(self) -> float:
        """The ``--temporal`` strength of the style painted now: its model file's, else the default."""
        from .models.metadata import DEFAULT_STRENGTH

        own = self.model.temporal_strength()
        return DEFAULT_STRENGTH if own is None else own

    def work_size(self, h: int, w: int) -> tuple[int, int]:
        """The size an (h, w) frame is painted at (``sizing.working_size``)."""
        return sizing.working_size(h, w, max_side=self.max_side, scale=self.scale, brush=self.brush)

    def paint_batch(self, frames: list[np.ndarray], stabilizer=None,
                    out_size: tuple[int, int] | None = None) -> list[np.ndarray]:
        """A batch of decoded frames, (H, W, 3) uint8 each, -> their paintings at the output size (``finish``),
        in order, uint8.

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
        """(N, H, W, 3) uint8 RGB -> (N, H', W', 3) uint8 paintings; anything else is a VidstyleError (a float
        or 16-bit picture would be painted as if it were 0..255)."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise VidstyleError(f"a painter paints (N, H, W, 3) RGB frames, not an array of shape {frames.shape}")
        if frames.dtype != np.uint8:
            raise VidstyleError(f"a painter paints uint8 frames (0..255), not {frames.dtype}; convert with "
                                "(x * 255).round().astype(np.uint8) for 0..1 floats")
        if len(frames) == 0:
            return np.zeros((0, *frames.shape[1:]), np.uint8)
        return self.download(self.finish(self.paint_frames(np.ascontiguousarray(frames))))

    def check_fits(self, n: int, h: int, w: int) -> None:
        """A one-line VidstyleError, before anything is allocated, when painting ``n`` (h, w) frames on the CPU
        would take more memory than this machine has free (``--max-side 8000`` on a large picture)."""
        if self.cuda or (n, h, w) in self._fits:
            return
        refusal = sizing.memory_refusal(n, h, w, self.work_size(h, w), self.max_side, sizing.free_memory())
        if refusal:
            raise VidstyleError(refusal)
        self._fits.add((n, h, w))

    def auto_batch(self, h: int, w: int) -> int:
        """Frames per call on the CPU: one (the network paints one frame with every core)."""
        return 1


class StabilizerBase:
    """The settings and the flow bookkeeping of a stabiliser (see ``temporal.Stabilizer`` for what they mean)."""

    def _settings(self, strength, flow, flow_scale, cut_occluded, cut_colour, warp_mode, max_side, keep_detail):
        from .models.metadata import DEFAULT_STRENGTH

        self.strength = None if strength is None else float(strength)
        self.style_strength = DEFAULT_STRENGTH
        self.flow_kind = flow
        self.flow_scale = flow_scale
        self.cut_occluded = cut_occluded
        self.cut_colour = cut_colour
        self.warp_mode = warp_mode
        self.keep_detail = keep_detail
        self.enabled = True
        self.max_side = max_side  # the painting size; may be set by the caller
        self._flow = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="vidstyle-flow")

    @property
    def weight(self) -> float:
        """The strength in use: ``strength``, or the style's own when that is None."""
        return self.style_strength if self.strength is None else self.strength

    @property
    def active(self) -> bool:
        """False while stabilisation is off: no flow is computed then."""
        return self.enabled and self.weight > 0

    def _flows_host(self, frames: np.ndarray, prev: np.ndarray | None) -> list:
        """[(fw, bw) or None] per frame of (N, H, W, 3) uint8: fw (H, W, 2) warps frame t-1 onto t; bw the other way."""
        est = self._flow
        out = []
        for rgb in frames:
            same = prev is not None and prev.shape == rgb.shape
            out.append((est(rgb, prev), est(prev, rgb)) if same else None)
            prev = rgb
        return out
