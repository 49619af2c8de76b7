"""Flicker of every style of a model on the DAVIS sequences: the temporal table of docs/MODELS.md.

    python benchmarks/temporal_report.py vidstyle/models/bundled/paintings.safetensors --out docs/models

For each style and each sequence of ``../shared/data/video/davis2016`` (read at 640 px, as `vidstyle eval
--max-side 640` does), painted per frame and with the flow-guided stabiliser (``--temporal``):
- the short-term warping error E_warp (``vidstyle.evaluate``: the metric of `vidstyle eval`);
- the style loss, and its rise with ``--temporal`` (the acceptance: E_warp <= 0.03 with ``--temporal``, the
  style loss up by at most 10%).
The stabiliser runs at each style's own strength (the one its model file records, else 0.7), as
`vidstyle run --temporal` does; ``--strength STYLE=S`` tries another. With ``--styles``, the other styles'
rows already in temporal.json are kept.
It also writes ``temporal_<style>.jpg``: four consecutive frames of one moving sequence, per frame above and
with ``--temporal`` below, to look for ghosting trails. Writes temporal.json; prints a markdown table.

    python benchmarks/temporal_report.py --pictures A.jpg B.jpg --max-frames 12 --out docs/pictures

measures pictures as styles instead (``--style A.jpg``; each named by its file stem, its style loss measured
against the picture itself), at the pictures' default strength; ``--strength S`` (no ``STYLE=``) tries S for
every style.
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
from benchmarks.styles_report import style_pictures  # noqa: E402
from vidstyle.api import make_stylizer  # noqa: E402
from vidstyle.evaluate import FlowBank, evaluate, load_frames, stylize_frames  # noqa: E402
from vidstyle.io.images import read_image  # noqa: E402
from vidstyle.temporal import Stabilizer  # noqa: E402

DAVIS = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "davis2016"
STRIP = ("dog", 20)  # sequence and first frame of the ghosting strip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", help="a model file (single or multi-style)")
    ap.add_argument("--pictures", nargs="+", metavar="PICTURE", help="pictures as styles, instead of a model file")
    ap.add_argument("--style-size", type=int, default=None, help="with --pictures: the vector's picture size")
    ap.add_argument("--out", default="docs/models", help="folder for temporal.json and the frame strips")
    ap.add_argument("--styles", nargs="*", help="only these styles of the model")
    ap.add_argument("--max-frames", type=int, default=40, help="frames per sequence (CPU time grows with it)")
    ap.add_argument("--max-side", type=int, default=640)
    ap.add_argument("--loss-net", default="hed")
    ap.add_argument("--strength", nargs="*", default=[], metavar="STYLE=S",
                    help="stabiliser strength for these styles instead of the model's own (S alone: every style)")
    args = ap.parse_args()
    if bool(args.model) == bool(args.pictures):
        ap.error("give either a model file or --pictures")
    tries = {k: float(v) for k, v in (item.split("=") if "=" in item else ("*", item) for item in args.strength)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    specs, paintings = style_pictures(args.model, args.pictures)
    names = list(specs)
    seqs = sorted(p for p in DAVIS.iterdir() if p.is_dir())
    clips = {s.name: load_frames(s, args.max_frames, args.max_side) for s in seqs}
    banks = {n: FlowBank(f) for n, f in clips.items()}
    report = {"model": Path(args.model).name if args.model else "pictures", "max_side": args.max_side, "max_frames": args.max_frames, "styles": {}}
    old = out / "temporal.json"
    if args.styles and old.is_file():  # a partial run: keep the other styles' rows
        kept = json.loads(old.read_text())
        if (kept.get("model"), kept.get("max_side"), kept.get("max_frames")) == (report["model"], args.max_side, args.max_frames):
            report["styles"] = {s: r for s, r in kept["styles"].items() if s in names}
    for style in args.styles or names:
        t0 = time.perf_counter()
        size = {"style_size": args.style_size} if args.style_size else {}
        st = make_stylizer(specs[style], device="cpu", **size)
        strength = tries.get(style, tries.get("*", st.temporal_strength))
        painting = read_image(paintings[style])
        rows = {}
        for name, frames in clips.items():
            plain = evaluate(frames, st, label="per frame", bank=banks[name], loss_net=args.loss_net, style_rgb=painting)
            stab = evaluate(frames, st, label="temporal", stabilizer=Stabilizer(strength), bank=banks[name],
                            loss_net=args.loss_net, style_rgb=painting)
            rows[name] = {"warp_error": round(plain.warp_error, 5), "warp_error_temporal": round(stab.warp_error, 5),
                          "style_loss": plain.style_loss, "style_loss_temporal": stab.style_loss,
                          "style_loss_rise": round(stab.style_loss / plain.style_loss - 1, 3)}
        worst = max(r["warp_error_temporal"] for r in rows.values())
        rise = max(r["style_loss_rise"] for r in rows.values())
        report["styles"][style] = {"temporal_strength": strength, "sequences": rows, "worst_warp_error_temporal": worst, "worst_style_loss_rise": rise,
                                   "mean_warp_error": round(float(np.mean([r["warp_error"] for r in rows.values()])), 5),
                                   "mean_warp_error_temporal": round(float(np.mean([r["warp_error_temporal"] for r in rows.values()])), 5),
                                   "seconds": round(time.perf_counter() - t0, 1)}
        print(style, json.dumps({k: v for k, v in report["styles"][style].items() if k != "sequences"}), flush=True)
        seq, first = STRIP
        first = max(0, min(first, len(clips[seq]) - 4))  # fewer frames than the strip's start: the last four
        a, _ = stylize_frames(clips[seq][:first + 4], st)
        b, _ = stylize_frames(clips[seq][:first + 4], st, Stabilizer(strength))
        strip = np.concatenate([np.concatenate(a[first:], 1), np.concatenate(b[first:], 1)], 0)
        cv2.imwrite(str(out / f"temporal_{style}.jpg"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    (out / "temporal.json").write_text(json.dumps(report, indent=1) + "\n")
    print("| style | strength | E_warp per frame (mean) | E_warp --temporal (mean, worst) | style loss rise (worst) |")
    print("| --- | --- | --- | --- | --- |")
    for s, r in report["styles"].items():
        print(f"| {s} | {r.get('temporal_strength', 0.7):g} | {r['mean_warp_error']} | {r['mean_warp_error_temporal']}, "
              f"{r['worst_warp_error_temporal']} | {r['worst_style_loss_rise']:+.1%} |")


if __name__ == "__main__":
    main()
