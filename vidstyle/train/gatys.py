"""Gatys et al. 2016: optimise the pixels of one image (L-BFGS) for content + Gram style losses.

Slow, but the quality reference for the trained networks.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..errors import VidstyleError
from ..stylizer import pick_device, scaled_size, shrunk_to
from . import losses as L
from .lossnet import MIN_SIDE, load_loss_net


def _check_size(rgb: np.ndarray, max_side: int, what: str) -> None:
    """A VidstyleError when ``rgb`` fitted to ``max_side`` has a short side under ``MIN_SIDE``."""
    h, w = rgb.shape[:2]
    hh, ww = scaled_size(h, w, max_side)
    if min(hh, ww) < MIN_SIDE:
        fitted = f" ({ww}x{hh} px after --max-side {max_side})" if (hh, ww) != (h, w) else ""
        raise VidstyleError(f"the {what} picture is too small for --optimize: {w}x{h} px{fitted}; "
                            f"its short side must be at least {MIN_SIDE} px")


def _tensor(rgb: np.ndarray, max_side: int, device) -> torch.Tensor:
    rgb = shrunk_to(rgb, max_side)
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float().div(255).contiguous().to(device)


def optimize_image(content: np.ndarray, style: np.ndarray, *, steps: int = 300, loss_net: str = "auto",
                   device: str = "auto", max_side: int = 512, content_weight: float = 4.0,
                   style_weight: float = 1.0, content_layer: str = "relu3_3", progress: Callable[[int, int], None] | None = None,
                   history: list | None = None, style_side: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 content and style -> (h, w, 3) uint8 stylized (h, w: content fitted to max_side).

    The style loss is `vidstyle train`'s relative one (each layer's Gram error over the style's own), so a
    network and this optimisation are measured alike. Content is compared at ``content_layer``, relu3_3,
    as `vidstyle train` does by default.
    ``history``, when given, receives the total loss of every evaluation. ``style_side``: the style
    picture's longer side for its Gram matrices (default ``max_side``, the content's).
    A VidstyleError when either picture, fitted to its size, has a short side under 16 px.
    """
    style_side = style_side or max_side
    _check_size(content, max_side, "content")
    _check_size(style, style_side, "style")
    dev = pick_device(device)
    vgg = load_loss_net(loss_net, dev)
    x = _tensor(content, max_side, dev)
    s = _tensor(style, style_side, dev)
    with torch.no_grad():
        fx = vgg(x)
        grams = {k: L.gram(v) for k, v in vgg(s).items()}
        norms = L.gram_norms(grams)
    y = x.clone(memory_format=torch.contiguous_format).requires_grad_(True)  # L-BFGS flattens grads with view()
    opt = torch.optim.LBFGS([y], lr=1.0, max_iter=steps, history_size=50, line_search_fn="strong_wolfe")
    count = [0]

    def closure():
        opt.zero_grad()
        fy = vgg(y)
        loss = content_weight * L.content_loss(fy, fx, content_layer) + style_weight * L.style_loss(fy, grams, norms=norms)
        loss.backward()
        count[0] += 1
        if history is not None:
            history.append(float(loss.detach()))
        if progress:
            progress(min(count[0], steps), steps)
        return loss

    opt.step(closure)
    out = y.detach().clamp(0, 1)[0].permute(1, 2, 0).mul(255).round().byte().cpu().numpy()
    return out
