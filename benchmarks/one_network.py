"""One network for all? Each bundled style against its own painting given as a picture style.

    python benchmarks/one_network.py --out docs/pictures

The bundled network was trained to copy the picture network's paintings (docs/MODELS.md). For each bundled style
this paints, with the bundled row and with the picture path (``--style PAINTING.jpg``):
- colour: Lab colour-statistics distance to the painting over the 24 held-out photos (as styles_report.py);
- style loss relative to Gatys: the first preview photo at 384 px, over the Gatys result's style loss that
  docs/models/report.json records for the style (the same photo, painting and loss network);
- flicker: the warping error per frame and with ``--temporal`` (each path at its own default strength) on two
  DAVIS sequences (``--frames`` each, 640 px);
- speed: frames per second of each at 640x360 (the engine ``auto`` picks), the same painting size.
Writes one_network.json and one_network.jpg (per style: the painting, the bundled row, the picture path).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.styles_report import (BUNDLED, BUNDLED_REPORT, DATA, GATYS_SIDE, HELD_OUT, PREVIEW,  # noqa: E402
                                      bundled_styles, grid, label, photo, tile)
from vidstyle.api import make_stylizer  # noqa: E402
from vidstyle.evaluate import (FlowBank, colour_distance, load_frames, perceptual, stylize_frames,  # noqa: E402
                               warping_errors)
from vidstyle.io.images import read_image  # noqa: E402

SEQUENCES = ("blackswan", "horsejump-high")


def style_loss(st, first: np.ndarray, painting: np.ndarray, loss_net: str) -> float:
    """Style loss of ``st``'s painting of ``first`` at GATYS_SIDE, measured as styles_report.py does."""
    s = GATYS_SIDE / max(first.shape[:2])
    ref = cv2.resize(first, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    mine = cv2.resize(st(first[None])[0], (ref.shape[1], ref.shape[0]), interpolation=cv2.INTER_AREA)
    small = cv2.resize(painting, None, fx=GATYS_SIDE / max(painting.shape[:2]), fy=GATYS_SIDE / max(painting.shape[:2]),
                       interpolation=cv2.INTER_AREA)
    return perceptual([mine], [ref], small, loss_net)[0]


def fps(st, frame: np.ndarray, n: int = 10) -> float:
    st(frame[None])
    t0 = time.perf_counter()
    for _ in range(n):
        st(frame[None])
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("docs/pictures"))
    ap.add_argument("--styles", nargs="*")
    ap.add_argument("--frames", type=int, default=24, help="frames per DAVIS sequence")
    ap.add_argument("--loss-net", default="hed")
    a = ap.parse_args()
    from vidstyle.temporal import Stabilizer

    gatys = {s: r.get("style_loss_gatys") for s, r in json.loads(BUNDLED_REPORT.read_text())["styles"].items()}
    photos = [photo(n) for n in HELD_OUT]
    first = photo(PREVIEW[0])
    clips = {name: load_frames(DATA / "video" / "davis2016" / name, a.frames, 640) for name in SEQUENCES}
    banks = {name: FlowBank(frames) for name, frames in clips.items()}
    frame = cv2.resize(clips[SEQUENCES[0]][0], (640, 360), interpolation=cv2.INTER_AREA)
    report, tiles = {"sequences": list(SEQUENCES), "frames": a.frames, "styles": {}}, []
    for style in a.styles or bundled_styles():
        painting_path = DATA / "style" / f"{style}.jpg"
        painting = read_image(painting_path)
        row = {}
        shown = [label(tile(painting, 256), style)]
        for path, spec in (("bundled", f"{BUNDLED}:{style}"), ("picture", str(painting_path))):
            st = make_stylizer(spec, device="cpu")
            r = {"colour_distance": round(float(np.mean([colour_distance(st(p[None])[0], painting) for p in photos])), 2)}
            if gatys.get(style):
                r["style_loss_vs_gatys"] = round(style_loss(st, first, painting, a.loss_net) / gatys[style], 2)
            warps, warps_t = [], []
            for name, frames in clips.items():  # the warping error alone (evaluate() adds VGG losses per frame)
                warps.append(np.mean(warping_errors(stylize_frames(frames, st)[0], banks[name])))
                warps_t.append(np.mean(warping_errors(
                    stylize_frames(frames, st, Stabilizer(st.temporal_strength))[0], banks[name])))
            r.update(warp_error=round(float(np.mean(warps)), 5), warp_error_temporal=round(float(np.mean(warps_t)), 5),
                     fps_640x360=round(fps(st, frame), 2), engine=f"{st.engine.name} {st.precision}")
            row[path] = r
            shown.append(label(tile(st(first[None])[0], 256), path))
        report["styles"][style] = row
        tiles.append(shown)
        print(style, json.dumps(row), flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "one_network.json").write_text(json.dumps(report, indent=1) + "\n")
    cv2.imwrite(str(a.out / "one_network.jpg"), cv2.cvtColor(grid(tiles), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 85])
    print("| style | colour: bundled / picture | style loss / Gatys: bundled / picture | E_warp per frame | "
          "E_warp --temporal | fps 640x360 |\n| --- | --- | --- | --- | --- | --- |")
    for s, r in report["styles"].items():
        b, p = r["bundled"], r["picture"]
        print(f"| {s} | {b['colour_distance']} / {p['colour_distance']} | {b.get('style_loss_vs_gatys', '-')} / "
              f"{p.get('style_loss_vs_gatys', '-')} | {b['warp_error']} / {p['warp_error']} | "
              f"{b['warp_error_temporal']} / {p['warp_error_temporal']} | {b['fps_640x360']} / {p['fps_640x360']} |")


if __name__ == "__main__":
    main()
