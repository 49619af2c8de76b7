"""Flow-guided stabilisation at inference: works for any model, trained with a temporal loss or not.

For each frame t: flow between input frames t and t-1, the previous *stylized*
output warped by it, an occlusion mask (forward-backward check plus pixels that
came from outside the frame), and the new output blended with the warped
previous one only where the pixel was visible in both frames; the blend then gets
back the new frame's local stroke contrast (``restore_detail``), which averaging
takes away. A scene cut (most pixels occluded, or a large colour change) resets
the history.

Flows for a batch are computed on a worker thread while the network paints it
(OpenCV releases the GIL), then the blend runs sequentially on the device. RAFT
runs on the device instead, pair by pair, at the painting size (at most about 720p).
No flow is computed while the stabiliser is off (disabled or strength 0).
"""
from __future__ import annotations

from concurrent.futures import Future

import numpy as np
import torch
import torch.nn.functional as F

from .flow import RAFTFlow, make_flow, to_tensor
from .painting import StabilizerBase
from .warp import occlusion, warp


def _coarse(x: torch.Tensor, k: int) -> torch.Tensor:
    """Means over k x k cells: (N, C, H, W) -> (N, C, ceil(H/k), ceil(W/k)); the last cells are
    filled out by repeating the edge."""
    h, w = x.shape[-2:]
    x = F.pad(x, (0, -w % k, 0, -h % k), mode="replicate")
    return F.avg_pool2d(x, k)


def _fine(x: torch.Tensor, k: int, hw: tuple) -> torch.Tensor:
    """Cell values back to pixels, bilinear between the cells' centres: (N, C, h, w) -> (N, C, H, W)."""
    return F.interpolate(x, scale_factor=k, mode="bilinear", align_corners=False)[..., :hw[0], :hw[1]]


def restore_detail(blend: torch.Tensor, frame: torch.Tensor, max_gain: float = 1.6) -> torch.Tensor:
    """Give ``blend`` the local detail contrast of ``frame``: both (N, C, H, W) in [0, 1], float.

    Averaging the new painting with the warped previous one lowers the contrast of every brush
    stroke that is not in the same place in both (two independent textures averaged with weights
    0.3/0.7 keep about 76% of their amplitude), and repeated resampling softens them a little more
    each frame: the picture turns flat as it is stabilised. Here the blend's detail (itself minus
    its local mean: the means of k x k cells, k about 1/60 of the shorter side and at least 3,
    interpolated between the cells' centres) is scaled, per pixel, by the ratio of the frame's
    local detail amplitude to the blend's (the square root of their energies), at least 1 and at
    most ``max_gain``. Where the two paintings agree the ratio is 1 and nothing changes; the
    structure and its position stay the blend's, so flicker stays down. The energies are smoothed
    over 5 x 5 cells, so the gain varies slowly in space (and in time, as the frame's strokes do).
    Inference only (some operations are in place).
    """
    k = max(3, min(blend.shape[-2:]) // 60)
    hw = blend.shape[-2:]
    base = _fine(_coarse(blend, k), k, hw)                          # (N, C, H, W) local mean
    detail = blend - base
    frame_detail = frame - _fine(_coarse(frame, k), k, hw)
    # local detail energies per k x k cell, smoothed over 5 x 5 cells (the gain varies slowly)
    smooth = lambda e: F.avg_pool2d(F.pad(e, (2, 2, 2, 2), mode="replicate"), 5, stride=1)  # noqa: E731
    e_blend = smooth(_coarse(detail.pow(2).mean(1, keepdim=True), k))   # (N, 1, H/k, W/k)
    e_frame = smooth(_coarse(frame_detail.pow(2).mean(1, keepdim=True), k))
    gain = ((e_frame + 1e-6) / (e_blend + 1e-6)).sqrt_().clamp_(1.0, max_gain)
    return (base + detail * _fine(gain, k, hw)).clamp_(0, 1)


class Stabilizer(StabilizerBase):
    """Stateful: call it on consecutive batches of one video.

    ``strength``: weight of the warped previous output where it is visible (0 = off). None: the
    style's own, which the painter sets as ``style_strength`` on every batch (``Stylizer.paint_frames``:
    the strength recorded in the model file for the style painted now, else ``DEFAULT_STRENGTH``).
    ``flow``: dis | raft | auto, or a flow estimator (``flow.DISFlow``, ``flow.RAFTFlow``);
    ``flow_scale``: DIS runs at this fraction of the size.
    ``max_side``: the longer side the network paints at (None: full size); RAFT computes the flow
    at most at that size, and at most about 720p.
    ``warp_mode``: how the previous output is resampled. Bicubic, because the history is warped
    again every frame and bilinear resampling would blur the brush strokes a little more each time
    (on davis2016/blackswan the style loss rose 23% with bilinear and 7% with bicubic).
    ``keep_detail``: give the blend back the brush strokes' contrast (see ``restore_detail``).
    """

    def __init__(self, strength: float | None = None, flow="auto", flow_scale: float = 0.5,
                 cut_occluded: float = 0.5, cut_colour: float = 0.15, warp_mode: str = "bicubic",
                 max_side: int | None = None, keep_detail: bool = True):
        self._settings(strength, flow, flow_scale, cut_occluded, cut_colour, warp_mode, max_side, keep_detail)
        self.device: torch.device | None = None  # where RAFT runs; set by the caller (the painter's device)
        self.reset()

    def reset(self) -> None:
        self.prev_rgb: np.ndarray | None = None   # (H, W, 3) uint8, last input frame
        self.prev_in: torch.Tensor | None = None  # (1, 3, H, W) last input frame
        self.prev_out: torch.Tensor | None = None  # (1, 3, H, W) last stabilized output
        self.cuts = 0

    def estimator(self, device: torch.device):
        """The flow estimator, made on first use (a bad ``flow`` kind, or RAFT without weights, fails here)."""
        if self._flow is None:
            self._flow = make_flow(self.flow_kind, device, scale=self.flow_scale, preset="medium")
        return self._flow

    def begin(self, frames: np.ndarray) -> Future | str | None:
        """Start the flows of a batch ((N, H, W, 3) uint8) before the network paints it.

        Returns what ``__call__`` takes as ``pending``: a Future of the host (DIS) flows, ``"device"``
        when RAFT will run on the device in ``__call__``, or None when stabilisation is off.
        """
        prev, self.prev_rgb = self.prev_rgb, frames[-1].copy()
        if not self.active:
            return None
        est = self.estimator(self.device or torch.device("cpu"))
        if isinstance(est, RAFTFlow):
            return "device"
        return self._pool.submit(self._flows_host, frames, prev)

    def _flows_device(self, x: torch.Tensor) -> list:
        """RAFT for a batch (N, 3, H, W): [(fw, bw) (1, 2, H, W) each, or None] per frame."""
        if self.prev_in is not None and self.prev_in.shape[1:] == x.shape[1:]:
            prev, cur, first = torch.cat([self.prev_in, x[:-1]]), x, []
        else:  # first frame of a video (or a new frame size): no flow for it
            prev, cur, first = x[:-1], x[1:], [None]
        if len(cur) == 0:
            return first
        fw = self._flow.batch(cur, prev, self.max_side)  # (N', 2, H, W)
        bw = self._flow.batch(prev, cur, self.max_side)
        return first + [(fw[i:i + 1], bw[i:i + 1]) for i in range(len(cur))]

    def is_cut(self, x: torch.Tensor, prev: torch.Tensor, mask: torch.Tensor) -> bool:
        occluded = 1.0 - float(mask.mean())
        a, b = (F.adaptive_avg_pool2d(v.float(), 16) for v in (x, prev))
        colour = float((a - b).abs().mean())
        return occluded > self.cut_occluded or colour > self.cut_colour

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, y: torch.Tensor, pending=None) -> torch.Tensor:
        """x: inputs (N, 3, H, W) [0, 1]; y: stylized (N, 3, H, W) -> stabilized (N, 3, H, W)."""
        if not self.active:
            if isinstance(pending, Future) and not pending.cancel():
                pending.result()  # started before stabilisation was turned off: never leave it behind
            self.prev_in, self.prev_out = x[-1:].clone(), y[-1:].clone()
            return y
        if pending is None:
            pending = self.begin((x.permute(0, 2, 3, 1) * 255).round().byte().cpu().numpy())
        flows = pending.result() if isinstance(pending, Future) else self._flows_device(x)
        out = []
        for i in range(len(x)):
            xi, yi = x[i:i + 1], y[i:i + 1].float()
            f = flows[i]
            if f is None or self.prev_out is None or self.prev_out.shape != yi.shape:
                res = yi
            else:
                fw, bw = (v if torch.is_tensor(v) else to_tensor(v, y.device) for v in f)
                mask = occlusion(fw, bw)
                if self.is_cut(xi, self.prev_in, mask):
                    self.cuts += 1
                    res = yi
                else:
                    warped, _ = warp(self.prev_out, fw, self.warp_mode)
                    warped = warped.clamp_(0, 1)
                    a = self.weight * mask
                    res = yi * (1 - a) + warped * a
                    if self.keep_detail:
                        res = restore_detail(res, yi)
            out.append(res)
            self.prev_in, self.prev_out = xi, res
        return torch.cat(out).to(y.dtype)
