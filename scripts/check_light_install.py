"""Check a light install (``pip install vidstyle``, no extras) as a user gets it: run with that install's Python.

    VENV/bin/python scripts/check_light_install.py [--max-mb 800]

It paints the sample clip with the ``vidstyle`` command of that install, checks the frames, timestamps and audio,
paints a picture, lists the styles, exports OpenVINO IR, checks that what needs PyTorch says so in one line, and
that PyTorch is neither installed nor loaded. Prints one JSON line of figures (install size, start-up, run time).
Exit code 0 when every check passes. No PyTorch, no pytest: only what the light install has.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "sample.mp4"
BIN = Path(sys.executable).parent
# Run vidstyle's CLI in this process's interpreter and say, at exit, whether any torch module was loaded.
RUN = ("import sys, runpy\nsys.argv = ['vidstyle', *sys.argv[1:]]\ncode = 0\ntry:\n"
       "    runpy.run_module('vidstyle.cli', run_name='__main__')\nexcept SystemExit as e:\n"
       "    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)\n"
       "if any(m.split('.')[0] == 'torch' for m in sys.modules):\n    print('TORCH LOADED', file=sys.stderr)\n"
       "    sys.exit(97)\nsys.exit(code)\n")


def vidstyle(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", RUN, *map(str, args)], capture_output=True, text=True, cwd=cwd)


def check(ok: bool, what: str, r: subprocess.CompletedProcess | None = None) -> None:
    if not ok:
        detail = f"\n{r.stdout[-1500:]}\n{r.stderr[-2500:]}" if r is not None else ""
        sys.exit(f"light install check failed: {what}{detail}")
    print(f"ok: {what}")


def packets(path: Path) -> dict:
    """{stream type: [(pts, bytes hash)]} of the audio packets, and the video pts."""
    import hashlib

    import av

    with av.open(str(path)) as c:
        audio = [(p.pts, hashlib.sha256(bytes(p)).hexdigest()) for p in c.demux(audio=0) if p.size]
    with av.open(str(path)) as c:
        video = sorted(f.pts for f in c.decode(video=0))
    return {"audio": audio, "video": video}


def site_size_mb() -> float:
    prefix = Path(sys.prefix)
    return sum(p.stat().st_size for p in prefix.rglob("*") if p.is_file() and not p.is_symlink()) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-mb", type=float, default=800.0, help="fail above this install size (the whole venv)")
    a = ap.parse_args()
    check(importlib.util.find_spec("torch") is None, "PyTorch is not installed")
    check(importlib.util.find_spec("vidstyle") is not None and "site-packages" in str(
        importlib.util.find_spec("vidstyle").origin), f"vidstyle is installed ({sysconfig.get_paths()['purelib']})")
    size = site_size_mb()
    check(size <= a.max_mb, f"the install takes {size:.0f} MB (at most {a.max_mb:.0f})")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        out = tmp / "sample.mp4"
        t0 = time.perf_counter()
        r = vidstyle("run", SAMPLE, "-o", out, "--json")
        run_s = time.perf_counter() - t0
        check(r.returncode == 0, "vidstyle run paints the sample clip", r)
        got, want = packets(out), packets(SAMPLE)
        check(got["video"] == want["video"] and len(got["video"]) == 90, "all 90 frames, at their timestamps")
        check(got["audio"] == want["audio"], "the audio packets copied untouched")
        t0 = time.perf_counter()
        r = vidstyle("run", SAMPLE, "-o", tmp / "again.mp4")
        again_s = time.perf_counter() - t0
        check(r.returncode == 0, "a second run (warm cache)", r)
        r = vidstyle("run", SAMPLE, "-o", tmp / "steady.mp4", "--temporal")
        check(r.returncode == 0, "vidstyle run --temporal", r)
        import av
        import cv2

        with av.open(str(SAMPLE)) as c:
            cv2.imwrite(str(tmp / "frame.png"), next(c.decode(video=0)).to_ndarray(format="bgr24"))
        r = vidstyle("image", tmp / "frame.png", "-o", tmp / "painted.png")
        check(r.returncode == 0 and (tmp / "painted.png").stat().st_size > 1000, "vidstyle image", r)
        r = vidstyle("styles")
        check(r.returncode == 0 and "starry_night" in r.stdout, "vidstyle styles lists the bundled styles", r)
        # a style file (vidstyle train PICTURE's output): udnie's rows under another name paint as udnie does
        import os

        import numpy as np

        from vidstyle.models.registry import model_file
        from vidstyle.models.style_file import norm_rows, save_rows
        from vidstyle.models.weights import read_model_file

        bundled = read_model_file(model_file("paintings"))
        models = tmp / "models"
        models.mkdir()
        save_rows(models / "mine.safetensors", norm_rows(bundled.weights, bundled.styles.index("udnie")), "mine",
                  model_file("paintings"))
        os.environ["VIDSTYLE_MODELS"] = str(models)
        mine = vidstyle("image", tmp / "frame.png", "--style", "mine", "-o", tmp / "mine.png")
        udnie = vidstyle("image", tmp / "frame.png", "--style", "udnie", "-o", tmp / "udnie.png")
        r = vidstyle("styles")
        del os.environ["VIDSTYLE_MODELS"]
        same = mine.returncode == udnie.returncode == 0 and np.array_equal(cv2.imread(str(tmp / "mine.png")),
                                                                           cv2.imread(str(tmp / "udnie.png")))
        check(same and "mine" in r.stdout, "a style file is listed and paints with the bundled network", mine)
        r = vidstyle("export", "starry_night", "-o", tmp / "night.xml")
        check(r.returncode == 0 and (tmp / "night.bin").is_file(), "vidstyle export to OpenVINO IR", r)
        for args, extra in ((["train", "x.jpg", "--data", "photos"], "vidstyle[train]"),
                            (["run", SAMPLE, "--engine", "torch"], "vidstyle[torch]")):
            r = vidstyle(*args, cwd=tmp)
            lines = [x for x in r.stderr.splitlines() if x.strip()]
            check(r.returncode == 2 and len(lines) == 1 and extra in lines[0] and "Traceback" not in r.stderr,
                  f"vidstyle {args[0]} {' '.join(map(str, args[1:3]))}... says in one line: {extra}", r)
    print(json.dumps({"install_mb": round(size), "run_sample_s": round(run_s, 2), "run_sample_warm_s": round(again_s, 2),
                      "python": sys.version.split()[0]}))


if __name__ == "__main__":
    main()
