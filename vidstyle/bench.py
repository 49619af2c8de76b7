"""``vidstyle bench``: how fast each stage runs alone, and the whole pipeline.

Decode-only, model-only and encode-only frames per second, then end to end; the ratio
end-to-end / slowest stage shows how well the threads overlap (1.0 = perfectly).
"""
from __future__ import annotations

import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .options import EncodeOptions, PaintOptions
from .sizing import cpu_threads



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
        import torch

        torch.cuda.synchronize()


def _gpu_name(device) -> str | None:
    if device.type != "cuda":
        return None
    import torch

    return torch.cuda.get_device_name(0)


def bench_pipeline(size=(640, 360), frames: int = 60, paint: PaintOptions | None = None,
                   encode: EncodeOptions | None = None, batch_size: int | None = None) -> dict:
    """Frames per second of each stage (decode, the network, encode) and of a whole run, on a synthetic clip
    of ``size`` (w, h) painted with ``paint`` and encoded with ``encode``."""
    from .api import make_stylizer, stylize_video
    from .io.reader import VideoReader
    from .io.writer import VideoWriter

    w, h = size
    encode = encode or EncodeOptions()
    codec, preset = encode.codec, encode.preset
    st = make_stylizer(paint=paint)
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
        # a --codec or --preset the encoder refuses: the error now, not after the model stage
        VideoWriter(Path(tmp) / "enc.mp4", info, codec=codec, preset=preset, overwrite=True).abort()
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
        stylize_video(src, Path(tmp) / "e2e.mp4", stylizer=st, batch_size=bs, encode=encode, overwrite=True)
        e2e_s = time.perf_counter() - t0
    fps = {k: frames / v for k, v in (("decode_fps", decode_s), ("model_fps", model_s), ("encode_fps", encode_s),
                                        ("end_to_end_fps", e2e_s))}
    slowest = min(fps["decode_fps"], fps["model_fps"], fps["encode_fps"])
    gpu = _gpu_name(st.device)
    return {"resolution": f"{w}x{h}", "frames": frames, "batch_size": bs, "device": str(st.device), "gpu": gpu,
            "style": st.name, "arch": st.model.net.config.arch, "half": st.half, "engine": st.engine.name,
            "precision": st.precision, "work_size": "x".join(map(str, st.work_size(h, w)[::-1])),
            **{k: round(v, 2) for k, v in fps.items()},
            "ratio_end_to_end_over_slowest": round(fps["end_to_end_fps"] / slowest, 3),
            "cpu_threads": cpu_threads()}
