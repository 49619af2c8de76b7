"""Perceptual, total-variation and temporal losses.

Shapes: images (N, 3, H, W) in [0, 1]; flows (N, 2, H, W) in pixels; masks (N, 1, H, W) in {0, 1}.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..stylizer import luminance
from ..warp import warp

STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def gram(f: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C) Gram matrix normalised by C*H*W (Johnson et al.)."""
    n, c, h, w = f.shape
    f = f.reshape(n, c, h * w).float()
    return f @ f.transpose(1, 2) / (c * h * w)


def content_loss(feats_y: dict, feats_x: dict, layer: str = "relu2_2") -> torch.Tensor:
    return F.mse_loss(feats_y[layer].float(), feats_x[layer].float())


def style_loss(feats_y: dict, style_grams: dict, layers=STYLE_LAYERS, norms: dict | None = None) -> torch.Tensor:
    """Sum over layers of the MSE between Gram matrices; ``style_grams[l]`` is (1 or N, C, C).

    ``norms`` (``gram_norms``): each layer's MSE is divided by its own, so that every layer counts. Without
    them the shallowest layer dominates: with the hed loss network the raw MSEs of relu1_2 .. relu4_3 are
    about 1e-5, 1e-7, 1e-9 and 1e-12, and a network trained on their sum matches colour and pixel-scale
    texture only, not the painting's strokes.
    """
    total = 0.0
    for l in layers:
        g = gram(feats_y[l])
        err = F.mse_loss(g, style_grams[l].expand_as(g))
        total = total + (err / norms[l] if norms is not None else err)
    return total


def gram_norms(style_grams: dict) -> dict:
    """Per layer, the mean square of the style's Gram matrix: ``style_loss`` then measures relative errors."""
    return {l: g.float().pow(2).mean().clamp_min(1e-30) for l, g in style_grams.items()}


def tv_loss(y: torch.Tensor) -> torch.Tensor:
    return (y[..., 1:, :] - y[..., :-1, :]).abs().mean() + (y[..., :, 1:] - y[..., :, :-1]).abs().mean()


def layout_loss(y: torch.Tensor, x: torch.Tensor, cells: int = 16) -> torch.Tensor:
    """MSE between the coarse lightness of y and x (N, 3, H, W in [0, 1]): luma averaged over square cells,
    ``cells`` of them along the short side (8-px cells on a 128-px crop).

    The loss network's Gram and content terms barely see where a picture is light or dark: optimised from
    noise, a picture matches them as well with a third of the photo's lightness contrast as with all of it.
    This term keeps the photo's light and dark layout (a bright sky, a dark roof) and leaves everything
    finer than a cell, strokes included, and all of the colour to the style.
    """
    k = max(1, min(y.shape[-2:]) // cells)
    ly = F.avg_pool2d(luminance(y.float()), k)  # (N, 1, H/k, W/k)
    lx = F.avg_pool2d(luminance(x.float()), k)
    return F.mse_loss(ly, lx)


def colour_directions(n: int = 16) -> torch.Tensor:
    """(3, n) unit directions in RGB: the three channels, then fixed random ones (the same in every run)."""
    extra = torch.randn(n - 3, 3, generator=torch.Generator().manual_seed(1))
    return F.normalize(torch.cat([torch.eye(3), extra]), dim=1).T


def colour_quantiles(pictures: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """The pixel colours of (N, 3, H, W) pictures, pooled, along ``dirs`` (3, D), each direction sorted: (N*H*W, D)."""
    return (pictures.float().permute(0, 2, 3, 1).reshape(-1, 3) @ dirs.to(pictures.device)).sort(0).values


def colour_loss(y: torch.Tensor, quantiles: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Sliced 1-D optimal transport between the pixel colours of y (N, 3, H, W), pooled over the batch, and
    the painting's (``colour_quantiles``): the histogram loss of Risser et al. 2017, along D directions.

    Gram matrices fix a palette only loosely: a network settles on a mean colour (grey-green for the
    Great Wave, dark blue for Starry Night). This term asks for the painting's distribution of colours,
    its darks, lights and accents included, without saying where they go.
    """
    p = colour_quantiles(y, dirs)  # (M, D)
    idx = torch.linspace(0, quantiles.shape[0] - 1, p.shape[0], device=y.device).round().long()
    return F.mse_loss(p, quantiles[idx])


def masked_mean(err: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``err`` (N, C, H, W) over the pixels where ``mask`` (N, 1, H, W) is 1."""
    return (err * mask).sum() / (mask.sum() * err.shape[1]).clamp_min(1.0)


def temporal_loss(y_t: torch.Tensor, y_prev: torch.Tensor, flow: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Ruder et al. 2016: output t against output t-1 warped by the flow, where visible in both."""
    warped, inside = warp(y_prev, flow)
    return masked_mean((y_t - warped).pow(2), mask * inside)


def reconet_loss(y_t, y_prev, x_t, x_prev, flow, mask) -> torch.Tensor:
    """ReCoNet (Gao et al. 2018): the change of the output follows the change of the input's luminance."""
    wy, inside = warp(y_prev, flow)
    wx, _ = warp(x_prev, flow)
    d = (y_t - wy) - (luminance(x_t) - luminance(wx))
    return masked_mean(d.pow(2), mask * inside)


def feature_temporal_loss(f_t: torch.Tensor, f_prev: torch.Tensor, flow: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The same idea on the encoder output (N, C, H/4, W/4): flow and mask are downsampled to match."""
    h, w = f_t.shape[-2:]
    sy, sx = h / flow.shape[-2], w / flow.shape[-1]
    fl = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
    fl = torch.stack((fl[:, 0] * sx, fl[:, 1] * sy), 1)
    m = (F.interpolate(mask, size=(h, w), mode="area") > 0.99).to(f_t.dtype)
    wf, inside = warp(f_prev, fl)
    return masked_mean((f_t - wf).pow(2), m * inside)
