"""How far the CPU engines' pictures are from PyTorch fp32, per style: the quality table of docs/PERFORMANCE.md.

    python benchmarks/int8_quality.py [MODEL] [--out docs/int8.jpg]

Paints the 24 held-out photos of benchmarks/styles_report.py (photos the bundled model never trained on) at
the default working size (the model's scale) with PyTorch fp32 (the reference), OpenVINO bf16 and OpenVINO
int8 (the network quantized by NNCF, `vidstyle.quantize`), and prints, per style, the PSNR against the
reference and the mean absolute difference in 0..255 levels. ``--out`` also writes one photo in every style,
fp32 above int8, to look at.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from styles_report import HELD_OUT, photo  # noqa: E402
from vidstyle.api import load_model  # noqa: E402
from vidstyle.stylizer import Stylizer  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default=None, help="model file or style (default: the bundled model)")
    ap.add_argument("--out", default=None, help="write fp32-above-int8 pictures of one photo here (.jpg)")
    args = ap.parse_args()
    model = load_model(args.model)
    photos = [photo(n) for n in HELD_OUT]
    painters = {p: Stylizer(model, "cpu", engine=e, precision=p)
                for e, p in (("torch", "fp32"), ("openvino", "bf16"), ("openvino", "int8"))}
    rows, tiles = {}, []
    for style in model.styles:
        model.select(style)
        out = {p: [st(img[None])[0] for img in photos] for p, st in painters.items()}
        rows[style] = {p: {"psnr_db": round(float(np.mean([psnr(a, b) for a, b in zip(out[p], out["fp32"])])), 1),
                           "mean_abs_levels": round(float(np.mean([np.abs(a.astype(int) - b).mean()
                                                                   for a, b in zip(out[p], out["fp32"])])), 2)}
                       for p in ("bf16", "int8")}
        print(style, json.dumps(rows[style]), flush=True)
        tiles.append(np.concatenate([out["fp32"][2], out["int8"][2]], 0))
    print("| style | bf16: PSNR, mean difference | int8: PSNR, mean difference |")
    print("| --- | --- | --- |")
    for s, r in rows.items():
        print(f"| {s} | {r['bf16']['psnr_db']} dB, {r['bf16']['mean_abs_levels']} | "
              f"{r['int8']['psnr_db']} dB, {r['int8']['mean_abs_levels']} |")
    if args.out:
        h = min(t.shape[0] for t in tiles)
        grid = np.concatenate([t[:h] for t in tiles], 1)
        cv2.imwrite(args.out, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])


if __name__ == "__main__":
    main()
