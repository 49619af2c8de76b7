"""What a keyframe costs at a seam: re-encode one lossless painting of a clip in the ways a join could.

    vidstyle run clip.mp4 -o painted.mp4 --temporal --crf 0
    python benchmarks/seam_keyframes.py clip.mp4 painted.mp4 --cuts 100 250 [--params ipratio=1.0 ...]
        [--seam-zones 8:1 8:3 ...]

Encodes the painted frames with x264 (CRF 18, veryfast, as `vidstyle run`) in one piece, in one piece with a
keyframe forced at each cut, as separate parts (what `--segments` joins), and as parts whose encoders also
see the frames around the cut; then prints the warping error (``vidstyle.evaluate``) of the pair across each
cut against the median of the pairs near it. Each ``--params`` string is tried with forced keyframes; each
``--seam-zones Q:K`` encodes the parts with the K frames on each side of a seam at quantiser Q (what
``vidstyle.segments.x264_part_params`` does with Q = CRF - 10, K = 1), with the bytes against plain parts.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vidstyle.evaluate import load_frames  # noqa: E402
from vidstyle.evaluate import seam_table  # noqa: E402


def encode(frames: list, force=(), params: str = "", crf: int = 18, sizes: list | None = None) -> list:
    """Frames -> x264 in memory (a keyframe forced at each index of ``force``) -> decoded frames.

    The encoded size in bytes is appended to ``sizes`` when given."""
    h, w = frames[0].shape[:2]
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": str(crf), "preset": "veryfast", **({"x264-params": params} if params else {})}
        for i, a in enumerate(frames):
            f = av.VideoFrame.from_ndarray(a, format="rgb24")
            f.pts = i
            if i in force:
                f.pict_type = av.video.frame.PictureType.I
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    if sizes is not None:
        sizes.append(buf.tell())
    buf.seek(0)
    with av.open(buf) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source")
    ap.add_argument("painted", help="the lossless painting of the source")
    ap.add_argument("--cuts", type=int, nargs="+", default=[100, 250])
    ap.add_argument("--window", type=int, default=6)
    ap.add_argument("--margin", type=int, default=30, help="frames the warm parts' encoders see beyond their ends")
    ap.add_argument("--params", nargs="*", default=[], help="x264-params strings to try")
    ap.add_argument("--seam-zones", nargs="*", default=[], metavar="Q:K",
                    help="parts whose K frames on each side of a seam are encoded at quantiser Q")
    a = ap.parse_args()
    src, painted = load_frames(a.source, max_side=640), load_frames(a.painted, max_side=640)
    cuts = a.cuts

    def measure(out, label):
        t = seam_table(dict(enumerate(src)), dict(enumerate(out)), cuts, window=a.window)
        print(f"{label:44s} cuts {[round(s['error'], 5) for s in t['seams']]} median {t['inside_median']:.5f} "
              f"worst/median {t['worst_ratio']:.2f}", flush=True)

    bounds = [0, *cuts, len(painted)]
    spans = list(zip(bounds, bounds[1:]))
    measure(painted, "lossless painting")
    measure(encode(painted), "one piece")
    measure(encode(painted, force=set(cuts)), "one piece, keyframe forced at the cuts")
    plain: list = []
    measure(sum((encode(painted[s:e], sizes=plain) for s, e in spans), []), "parts (as --segments joins them)")
    warm = []
    for s, e in spans:
        lo, hi = max(0, s - a.margin), min(len(painted), e + a.margin)
        warm += encode(painted[lo:hi], force={s - lo, e - lo})[s - lo:e - lo]
    measure(warm, "parts whose encoders see the margins")
    for params in a.params:
        measure(encode(painted, force=set(cuts), params=params), f"forced keyframes, {params}")
    for qk in a.seam_zones:
        q, k = (int(v) for v in qk.split(":"))
        sizes: list = []
        out = []
        for i, (s, e) in enumerate(spans):
            n = e - s
            zones = ([f"0,{k - 1},q={q}"] if i > 0 else []) + ([f"{n - k},{n - 1},q={q}"] if i < len(spans) - 1 else [])
            out += encode(painted[s:e], params="zones=" + "/".join(zones), sizes=sizes)
        measure(out, f"parts, q={q} on {k} frames each side ({sum(sizes) / sum(plain):.2f}x the bytes)")


if __name__ == "__main__":
    main()
