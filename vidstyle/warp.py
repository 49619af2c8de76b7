"""Backward warping and occlusion masks: the only implementations, shared by
training (temporal loss), inference (stabilisation) and evaluation.

Flow convention: ``flow[:, :, y, x] = (dx, dy)`` in pixels, such that the pixel
at (x, y) of the *target* frame is found at (x + dx, y + dy) in the *source*
frame. ``warp(source, flow)`` therefore samples the source into the target grid.
"""
from __future__ import annotations

import threading

import torch
import torch.nn.functional as F

_GRIDS: dict = {}
_GRIDS_LOCK = threading.Lock()  # training's data thread and the painter may warp at once


def _base_grid(h: int, w: int, device, dtype) -> torch.Tensor:
    key = (h, w, device, dtype)
    with _GRIDS_LOCK:
        g = _GRIDS.get(key)
        if g is None:
            ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=dtype),
                                    torch.arange(w, device=device, dtype=dtype), indexing="ij")
            g = _GRIDS[key] = torch.stack((xs, ys))[None]  # (1, 2, H, W)
            if len(_GRIDS) > 16:
                _GRIDS.pop(next(iter(_GRIDS)))
    return g


def warp(source: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear") -> tuple[torch.Tensor, torch.Tensor]:
    """Backward-warp ``source`` (N, C, H, W) with ``flow`` (N, 2, H, W) in pixels.

    Returns (warped (N, C, H, W), inside (N, 1, H, W) float: 1 where the sample
    point lies inside the source frame, 0 where it came from outside).
    """
    n, _, h, w = flow.shape
    pos = _base_grid(h, w, flow.device, flow.dtype) + flow  # (N, 2, H, W) absolute sample positions
    gx = 2.0 * pos[:, 0] / max(w - 1, 1) - 1.0
    gy = 2.0 * pos[:, 1] / max(h - 1, 1) - 1.0
    grid = torch.stack((gx, gy), dim=-1)  # (N, H, W, 2)
    warped = F.grid_sample(source, grid.to(source.dtype), mode=mode, padding_mode="border", align_corners=True)
    inside = ((pos[:, 0] >= 0) & (pos[:, 0] <= w - 1) & (pos[:, 1] >= 0) & (pos[:, 1] <= h - 1))
    return warped, inside[:, None].to(source.dtype)


def occlusion(flow_fw: torch.Tensor, flow_bw: torch.Tensor, alpha: float = 0.01, beta: float = 0.5) -> torch.Tensor:
    """Forward-backward consistency check (Sundaram et al. 2010; Ruder et al. 2016).

    ``flow_fw`` (N, 2, H, W) maps the target grid into the source frame (the flow
    used to warp), ``flow_bw`` maps the source grid back. A target pixel is
    occluded where the round trip does not return:

        |w_f + w_b(x + w_f)|^2 > alpha (|w_f|^2 + |w_b(x + w_f)|^2) + beta

    or where x + w_f leaves the frame. Returns (N, 1, H, W) float: 1 = visible in both.
    """
    bw_at, inside = warp(flow_bw, flow_fw)
    diff = (flow_fw + bw_at).pow(2).sum(1, keepdim=True)
    mag = flow_fw.pow(2).sum(1, keepdim=True) + bw_at.pow(2).sum(1, keepdim=True)
    return (diff <= alpha * mag + beta).to(flow_fw.dtype) * inside
