"""Your own style against its painting, the picture network's take on it and Gatys: issue 33's figures.

    python benchmarks/own_style_report.py STYLE_FILE PAINTING --out docs/own

For the style file's style (painted with its base network) and for the painting as a picture style (the
arbitrary network, ``--style PAINTING``), as ``styles_report.py`` measures them:
- colour: the Lab colour-statistics distance of the 24 held-out photos, painted, to the painting;
- style loss relative to a Gatys optimisation of the first preview photo (cached in --out as gatys_NAME.png: the
  same reference for both), and per loss-network layer;
and a 512-px preview, ``NAME_compare.jpg``: per row a photo, then the painting, Gatys, the picture network and
the style file. Writes ``NAME.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from styles_report import FRAMES, GATYS_SIDE, HELD_OUT, PREVIEW, frame, grid, label, layer_errors, photo, tile  # noqa: E402

from vidstyle.api import make_stylizer  # noqa: E402
from vidstyle.evaluate import colour_distance, perceptual  # noqa: E402
from vidstyle.io.images import read_image, write_image  # noqa: E402
from vidstyle.train.gatys import optimize_image  # noqa: E402


def measure(stylizer, photos: dict, painting: np.ndarray, gatys: np.ndarray, loss_net: str) -> tuple[dict, dict]:
    """({figures}, {photo name: painted}) of one painter."""
    painted = {n: stylizer(p[None])[0] for n, p in photos.items()}
    row = {"colour_distance": round(float(np.mean([colour_distance(p, painting) for p in painted.values()])), 2)}
    h, w = gatys.shape[:2]
    small = cv2.resize(painting, None, fx=GATYS_SIDE / max(painting.shape[:2]), fy=GATYS_SIDE / max(painting.shape[:2]),
                       interpolation=cv2.INTER_AREA)
    ref = cv2.resize(photos[PREVIEW[0]], (w, h), interpolation=cv2.INTER_AREA)
    mine = cv2.resize(painted[PREVIEW[0]], (w, h), interpolation=cv2.INTER_AREA)
    s_net, _ = perceptual([mine], [ref], small, loss_net)
    s_gatys, _ = perceptual([gatys], [ref], small, loss_net)
    row.update(style_loss=s_net, style_loss_gatys=s_gatys, style_loss_vs_gatys=round(s_net / s_gatys, 2),
               style_layers=layer_errors({"network": mine, "gatys": gatys}, small, loss_net)["network"])
    return row, painted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("style_file")
    ap.add_argument("painting")
    ap.add_argument("--out", default="docs/own")
    ap.add_argument("--gatys-steps", type=int, default=200)
    ap.add_argument("--loss-net", default="hed")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(args.painting).stem
    painting = read_image(args.painting)
    photos = {n: photo(n) for n in HELD_OUT}
    t0 = time.perf_counter()
    cache = out / f"gatys_{name}.png"
    if cache.exists():
        gatys = read_image(cache)
    else:
        gatys = optimize_image(photos[PREVIEW[0]], painting, steps=args.gatys_steps, loss_net=args.loss_net,
                               device="cpu", max_side=GATYS_SIDE)
        write_image(cache, gatys, overwrite=True)
    report = {"style_file": Path(args.style_file).name, "painting": Path(args.painting).name,
              "held_out": HELD_OUT, "gatys_seconds": round(time.perf_counter() - t0, 1)}
    painted = {}
    for who, spec in (("picture_network", args.painting), ("style_file", args.style_file)):
        row, painted[who] = measure(make_stylizer(spec, device="cpu"), photos, painting, gatys, args.loss_net)
        report[who] = row
        print(who, json.dumps(row), flush=True)
    rows = []
    for n in PREVIEW[:3]:
        rows.append([label(tile(photos[n]), "photo"), label(tile(painting), "painting"),
                     label(tile(gatys if n == PREVIEW[0] else np.full_like(gatys, 24)), "Gatys" if n == PREVIEW[0] else ""),
                     label(tile(painted["picture_network"][n]), "picture network"),
                     label(tile(painted["style_file"][n]), "own style (style file)")])
    st = make_stylizer(args.style_file, device="cpu")
    pic = make_stylizer(args.painting, device="cpu")
    f = frame(FRAMES[0])
    rows.append([label(tile(f), "video frame"), label(tile(painting), "painting"), tile(np.full_like(f, 24)),
                 label(tile(pic(f[None])[0]), "picture network"), label(tile(st(f[None])[0]), "own style")])
    cv2.imwrite(str(out / f"{name}_compare.jpg"), cv2.cvtColor(grid(rows), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 90])
    (out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    better = report["style_file"]["style_loss_vs_gatys"] < report["picture_network"]["style_loss_vs_gatys"]
    print(f"| {name} | {report['style_file']['colour_distance']} | {report['style_file']['style_loss_vs_gatys']} | "
          f"{report['picture_network']['colour_distance']} | {report['picture_network']['style_loss_vs_gatys']} | "
          f"{'yes' if better else 'no'} |")


if __name__ == "__main__":
    main()
