"""``vidstyle bench``: how fast each stage runs alone, and the whole pipeline.

Decode-only, model-only and encode-only frames per second, then end to end; the ratio
end-to-end / slowest stage shows how well the threads overlap (1.0 = perfectly).
"""
from __future__ import annotations

import json
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Optional

import av
import numpy as np
import torch
import typer

from .cli import Device, app, parse_size, user_errors


def synthetic_clip(path: Path, w: int, h: int, n: int, fps: int = 30) -> Path:
    """A clip with real texture and motion (a panning noise field), so codecs work as on real video."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (h // 8 + 2, (w + n * 4) // 8 + 2, 3), dtype=np.uint8)
    import cv2
    field = cv2.resize(base, (base.shape[1] * 8, base.shape[0] * 8), interpolation=cv2.INTER_CUBIC)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "veryfast", "crf": "20"}
        for i in range(n):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(field[:h, i * 4:i * 4 + w]), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, fps)
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    return path


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_pipeline(size=(640, 360), frames: int = 60, style=None, device: str = "auto", batch_size=None,
                   codec: str | None = None, preset: str | None = None, max_side=None) -> dict:
    from .api import make_stylizer, stylize_video
    from .io.reader import VideoReader
    from .io.writer import VideoWriter

    w, h = size
    st = make_stylizer(style, device=device, max_side=max_side)
    bs = batch_size or st.auto_batch(h, w)
    with tempfile.TemporaryDirectory() as tmp:
        src = synthetic_clip(Path(tmp) / "bench.mp4", w, h, frames)
        # decode only
        t0 = time.perf_counter()
        with VideoReader(src) as r:
            decoded = [f for f in r.frames()]
            info = r.info
        decode_s = time.perf_counter() - t0
        rgb = np.stack([f.rgb for f in decoded])
        # model only (upload, paint, download), after a warm-up batch
        st(rgb[:bs])
        _sync(st.device)
        t0 = time.perf_counter()
        for i in range(0, len(rgb), bs):
            st(rgb[i:i + bs])
        _sync(st.device)
        model_s = time.perf_counter() - t0
        # encode only
        t0 = time.perf_counter()
        wr = VideoWriter(Path(tmp) / "enc.mp4", info, codec=codec, preset=preset, overwrite=True)
        for f in decoded:
            wr.write(f.rgb, f.pts)
        wr.close()
        encode_s = time.perf_counter() - t0
        # end to end
        t0 = time.perf_counter()
        stylize_video(src, Path(tmp) / "e2e.mp4", stylizer=st, batch_size=bs, codec=codec, preset=preset,
                      overwrite=True)
        e2e_s = time.perf_counter() - t0
    fps = {k: frames / v for k, v in (("decode_fps", decode_s), ("model_fps", model_s), ("encode_fps", encode_s),
                                        ("end_to_end_fps", e2e_s))}
    slowest = min(fps["decode_fps"], fps["model_fps"], fps["encode_fps"])
    gpu = torch.cuda.get_device_name(0) if st.device.type == "cuda" else None
    return {"resolution": f"{w}x{h}", "frames": frames, "batch_size": bs, "device": str(st.device), "gpu": gpu,
            "style": st.name, "arch": st.model.net.config.arch, "half": st.half,
            **{k: round(v, 2) for k, v in fps.items()},
            "ratio_end_to_end_over_slowest": round(fps["end_to_end_fps"] / slowest, 3),
            "cpu_threads": torch.get_num_threads()}


@app.command()
def bench(
    size: str = typer.Option("640x360", "--size", help="Resolution WIDTHxHEIGHT of the synthetic clip."),
    frames: int = typer.Option(60, "--frames", min=4),
    style: Optional[str] = typer.Option(None, "--style", "-s"),
    device: Device = typer.Option(Device.auto, "--device"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1),
    codec: Optional[str] = typer.Option(None, "--codec"),
    preset: Optional[str] = typer.Option(None, "--preset"),
    max_side: Optional[int] = typer.Option(None, "--max-side"),
    live: bool = typer.Option(False, "--live", help="Benchmark live mode instead (file source, no window): "
                              "fps and capture-to-output latency."),
    source_fps: int = typer.Option(60, "--source-fps", min=1, help="With --live: the rate the source delivers "
                                   "frames at, like a camera."),
    json_out: bool = typer.Option(False, "--json"),
):
    """Measure decode, model, encode and end-to-end frames per second (not a test: numbers for docs/PERFORMANCE.md)."""
    with user_errors():
        wh = parse_size(size)
        if live:
            from .live.loop import bench_live
            res = bench_live(wh, frames, style, device.value, max_side, source_fps)
        else:
            res = bench_pipeline(wh, frames, style, device.value, batch_size, codec, preset, max_side)
        if json_out:
            typer.echo(json.dumps(res))
        else:
            for k, v in res.items():
                typer.echo(f"{k:<32} {v}")
