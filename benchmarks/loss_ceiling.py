"""What the loss itself can paint: `vidstyle image --optimize` variants on one photo (docs/MODELS.md,
*A second GPU session*).

A trained network can at best approach the per-image optimisation of its own loss, so this asks the loss,
not a network, whether a change could bring a painting's forms (the Great Wave's curls):
- ``--painting-side N``: the Gram loss with the painting at N px on its long side (the photo stays at
  ``--side``), as `vidstyle train --style-size N` would ask;
- ``--mrf``: instead of Gram matrices, a patch loss (Li and Wand 2016): each 3x3 patch of the picture's
  relu3_3 and relu4_3 features is pulled towards its nearest patch (normalised cross-correlation) of the
  painting's, at the painting's size and 0.7 of it; the content compared at relu4_3.

Writes the picture as PNG. About 4 to 5 minutes on 2 CPU cores at the defaults.

Usage: .venv/bin/python benchmarks/loss_ceiling.py STYLE OUT.png [--painting-side 768] [--mrf
       --content-weight 0.02] [--steps 200]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from styles_report import DATA, PREVIEW, photo  # noqa: E402
from vidstyle.io.images import read_image, write_image  # noqa: E402
from vidstyle.train import losses as L  # noqa: E402
from vidstyle.train.gatys import _tensor, optimize_image  # noqa: E402
from vidstyle.train.lossnet import load_loss_net  # noqa: E402

MRF_LAYERS = {"relu3_3": 2, "relu4_3": 1}  # layer -> stride of the painting's patches (memory)


def patches(f: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """(1, C, H, W) features -> (P, C*9): every 3x3 patch as a row."""
    return F.unfold(f, 3, stride=stride)[0].t()


def unit(p: torch.Tensor) -> torch.Tensor:
    return p / p.norm(dim=1, keepdim=True).clamp_min(1e-6)


def mrf_optimize(content: np.ndarray, painting: np.ndarray, side: int, painting_side: int, steps: int,
                 content_weight: float) -> np.ndarray:
    """(H, W, 3) uint8 photo and painting -> the photo at ``side`` optimised for the patch loss, uint8."""
    vgg = load_loss_net("hed", "cpu")
    x = _tensor(content, side, "cpu")  # (1, 3, h, w) in 0..1
    with torch.no_grad():
        fx = vgg(x)
        bank: dict[str, list] = {}
        for s in (painting_side, int(painting_side * 0.7)):
            fs = vgg(_tensor(painting, s, "cpu"))
            for layer, stride in MRF_LAYERS.items():
                bank.setdefault(layer, []).append(patches(fs[layer], stride))
        ps = {k: torch.cat(v) for k, v in bank.items()}  # (P_s, C*9) per layer
        ps_unit = {k: unit(v) for k, v in ps.items()}
        ps_scale = {k: v.pow(2).sum(1).mean() for k, v in ps.items()}
        cx = fx["relu4_3"].pow(2).mean()
    y = x.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([y], lr=1.0, max_iter=steps, history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        fy = vgg(y)
        loss = content_weight * F.mse_loss(fy["relu4_3"], fx["relu4_3"]) / cx + 0.5 * L.tv_loss(y)
        for layer in MRF_LAYERS:
            p = patches(fy[layer])
            with torch.no_grad():
                nearest = (unit(p) @ ps_unit[layer].t()).argmax(1)
            loss = loss + (p - ps[layer][nearest]).pow(2).sum(1).mean() / ps_scale[layer]
        loss.backward()
        return loss

    opt.step(closure)
    return y.detach().clamp(0, 1)[0].permute(1, 2, 0).mul(255).round().byte().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("style", help="a painting of ../shared/data/style, by its stem")
    ap.add_argument("out", type=Path)
    ap.add_argument("--side", type=int, default=384, help="the photo's long side")
    ap.add_argument("--painting-side", type=int, help="the painting's long side (default: --side)")
    ap.add_argument("--mrf", action="store_true", help="patch loss instead of Gram matrices")
    ap.add_argument("--content-weight", type=float, help="default: 4 (Gram, as --optimize), 1 (--mrf)")
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(2)
    content = photo(PREVIEW[0])
    painting = read_image(DATA / "style" / f"{args.style}.jpg")
    side = args.painting_side or args.side
    if args.mrf:
        out = mrf_optimize(content, painting, args.side, side, args.steps,
                           1.0 if args.content_weight is None else args.content_weight)
    else:  # `vidstyle image --optimize`, the painting at its own size
        out = optimize_image(content, painting, steps=args.steps, loss_net="hed", device="cpu", max_side=args.side,
                             style_side=side, content_weight=4.0 if args.content_weight is None else args.content_weight)
    write_image(args.out, out, overwrite=True)
    print(args.out)


if __name__ == "__main__":
    main()
