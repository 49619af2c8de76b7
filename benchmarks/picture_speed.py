"""Speed of a picture as the style, against a bundled style: the figures of docs/MODELS.md "Any picture as a style".

    python benchmarks/picture_speed.py A.jpg B.jpg C.jpg --json docs/pictures/speed.json

1. vector: a picture's style vector, cold (a fresh process, an empty cache: reading the picture, loading the
   predictor, running it) and warm (from the disk cache);
2. run: a whole ``vidstyle run`` (``stylize_video``) of a 640x360 synthetic clip with the first picture, against
   the same run with the default bundled style, both painted at the same size (``--max-side``, default 640),
   taken in turns (A B A B ...) and the fastest of each kept; the engine's set-up is warmed first;
3. live: ``vidstyle live`` at 320x240 from a 30 fps source, switching between the pictures every second (the
   number keys every 30 frames), at live mode's own precision (int8 where it pays): frames per second,
   latency median and p95, frames skipped;
4. engines: OpenVINO at bf16 (what it runs at on this CPU is reported) and int8 (live mode's) against PyTorch
   fp32, PSNR on photos.
Say what else ran on the machine: the figures are ratios measured in one run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vidstyle.api import make_stylizer, stylize_video  # noqa: E402
from vidstyle.bench import synthetic_clip  # noqa: E402
from vidstyle.models.registry import DEFAULT_STYLE  # noqa: E402

COLD = """
import sys, time
t0 = time.perf_counter()
from vidstyle.io.pictures import read_picture
from vidstyle.models.picture_style import style_vector
t1 = time.perf_counter()
v = style_vector(read_picture(sys.argv[1]), 256)
t2 = time.perf_counter()
v = style_vector(read_picture(sys.argv[1]), 256)
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def cpu() -> str:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "?"
    bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {isa}{', bf16' if bf16 else ''}"


def vector_times(picture: str) -> dict:
    """Seconds to a style vector in a fresh process with an empty cache (imports apart), then from the cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "VIDSTYLE_CACHE": cache}
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", COLD, picture], env=env, capture_output=True, text=True,
                             check=True).stdout.split()
        whole = time.perf_counter() - t0
    imports, cold, warm = (float(x) for x in out[-3:])
    return {"picture": Path(picture).name, "cold_s": round(cold, 3), "warm_s": round(warm, 4),
            "imports_s": round(imports, 2), "process_s": round(whole, 2)}


def run_times(picture: str, max_side: int, frames: int, repeats: int) -> dict:
    """Seconds of whole runs at 640x360, the picture and the default style in turns; the fastest of each."""
    with tempfile.TemporaryDirectory() as tmp:
        clip = synthetic_clip(Path(tmp) / "clip.mp4", 640, 360, frames)
        styles = {"picture": picture, "bundled": DEFAULT_STYLE}
        for style in styles.values():  # engines converted and compiled, vectors cached, before timing
            stylize_video(clip, Path(tmp) / "warm.mp4", style=style, max_side=max_side, overwrite=True)
        times: dict[str, list[float]] = {k: [] for k in styles}
        for _ in range(repeats):
            for key, style in styles.items():
                t0 = time.perf_counter()
                r = stylize_video(clip, Path(tmp) / f"{key}.mp4", style=style, max_side=max_side, overwrite=True)
                times[key].append(time.perf_counter() - t0)
                assert r.frames == frames
    best = {k: min(v) for k, v in times.items()}
    return {"size": "640x360", "max_side": max_side, "frames": frames, "repeats": repeats,
            "picture_s": round(best["picture"], 2), "bundled_s": round(best["bundled"], 2),
            "ratio": round(best["picture"] / best["bundled"], 3), "all_s": {k: [round(x, 2) for x in v]
                                                                           for k, v in times.items()}}


def live_figures(pictures: list[str], seconds: int) -> dict:
    """vidstyle live at 320x240 from a 30 fps clip, switching picture every second."""
    from vidstyle.live.loop import LiveOptions, LiveSession

    with tempfile.TemporaryDirectory() as tmp:
        clip = synthetic_clip(Path(tmp) / "cam.mp4", 320, 240, 90, fps=30)
        warmup = 10
        n = 30 * seconds
        keys = {warmup + 30 * k: str(k % len(pictures) + 1) for k in range(1, seconds)}  # 1, 2, 3 pick a picture
        opts = LiveOptions.make(source=str(clip), styles=tuple(pictures), preview=False, loop=True,
                                frames=n + warmup, warmup=warmup, keys=keys)
        session = LiveSession(opts, notify=lambda m: None)
        for spec, _ in session.bank.specs[:len(pictures)]:  # as after a few seconds live: the vectors are ready
            while not session.bank.ready(session.bank.specs.index((spec, None))):
                time.sleep(0.05)
        seen = []
        real = session._paint

        def paint(rgb):
            seen.append(session.state.style)
            return real(rgb)

        session._paint = paint
        r = session.run()
    switches = sum(1 for a, b in zip(seen, seen[1:]) if a != b)
    return {"size": "320x240", "source_fps": 30, "frames": r.frames - warmup, "fps": r.fps,
            "latency_ms_median": r.latency_ms_median, "latency_ms_p95": r.latency_ms_p95,
            "dropped_frames": r.dropped, "switches": switches, "pictures": [Path(p).name for p in pictures]}


def engine_psnr(pictures: list[str], photos: list[np.ndarray]) -> dict:
    """PSNR (dB) of OpenVINO bf16 and int8 against PyTorch fp32, per picture, over the photos."""
    out = {}
    for picture in pictures:
        ref = make_stylizer(picture, device="cpu", engine="torch", precision="fp32")
        row = {}
        for precision in ("bf16", "int8"):
            ov = make_stylizer(picture, device="cpu", engine="openvino", precision=precision)
            vals = []
            for p in photos:
                a, b = ref(p[None]).astype(np.float64), ov(p[None]).astype(np.float64)
                mse = np.mean((a - b) ** 2)
                vals.append(99.0 if mse == 0 else 10 * np.log10(255 ** 2 / mse))
            row[precision] = {"psnr_db_min": round(min(vals), 2), "psnr_db_mean": round(float(np.mean(vals)), 2),
                              "asked": ov.precision, "openvino_runs_at": ov.engine.runs_at()}
        out[Path(picture).name] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pictures", nargs="+")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--max-side", type=int, default=640)
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--live-seconds", type=int, default=10)
    ap.add_argument("--photos", default=str(Path(__file__).resolve().parents[2] / "shared/data/content/bsds500"))
    ap.add_argument("--note", default="", help="what else ran on the machine")
    a = ap.parse_args()
    from vidstyle.io.images import find_images, read_image

    photos = [read_image(p) for p in find_images(Path(a.photos))[:4]]
    report = {"cpu": cpu(), "note": a.note, "date": time.strftime("%Y-%m-%d %H:%M")}
    report["vector"] = [vector_times(p) for p in a.pictures]
    print(json.dumps(report["vector"]))
    report["run"] = run_times(a.pictures[0], a.max_side, a.frames, a.repeats)
    print(json.dumps(report["run"]))
    report["live"] = live_figures(a.pictures, a.live_seconds)
    print(json.dumps(report["live"]))
    report["engines"] = engine_psnr(a.pictures, photos)
    print(json.dumps(report["engines"]))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
