"""Shared fixtures: tiny clips generated with PyAV, random style models, the shared data folder."""
from __future__ import annotations

import hashlib
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if os.environ.get("VIDSTYLE_SHARED_DATA"):
    SHARED = Path(os.environ["VIDSTYLE_SHARED_DATA"])


def shared(rel: str) -> Path:
    """A path in ../shared/data, or skip the test with the reason."""
    p = SHARED / rel
    if not p.exists():
        pytest.skip(f"shared data missing: {p} (tests that need real content skip without it)")
    return p


def pattern(i: int, w: int, h: int) -> np.ndarray:
    """A moving colour pattern: frame i of a test clip, (h, w, 3) uint8."""
    ys, xs = np.mgrid[0:h, 0:w]
    r = (xs * 4 + i * 7) % 256
    g = (ys * 5 + i * 3) % 256
    b = ((xs + ys) * 2 + i * 11) % 256
    return np.stack([r, g, b], -1).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio of ``a`` against ``b`` in dB (inf when equal)."""
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(peak ** 2 / mse))


def make_clip(path: Path, w: int = 64, h: int = 48, n: int = 12, fps: int = 25, audio: str | None = "aac",
              audio_tracks: int = 1, vfr: bool = False, rotation: int = 0, codec: str = "libx264",
              pix_fmt: str = "yuv420p", metadata: dict | None = None) -> Path:
    """Write a tiny test clip with PyAV; returns its path."""
    opts = {"movflags": "+faststart"} if path.suffix in (".mp4", ".mov") else {}
    tb = Fraction(1, 1000) if vfr else Fraction(1, fps)
    with av.open(str(path), "w", options=opts) as out:
        out.metadata.update(metadata or {})
        v = out.add_stream(codec, rate=fps)
        v.width, v.height, v.pix_fmt = w, h, pix_fmt
        v.time_base = tb
        v.codec_context.time_base = tb
        v.options = {"preset": "ultrafast", "crf": "10"} if codec == "libx264" else {}
        if rotation:
            v.set_display_rotation(rotation)  # a display matrix, as phones write it
        tracks = []
        for k in range(audio_tracks if audio else 0):
            a = out.add_stream(audio, rate=44100)
            a.layout = "mono"
            a.metadata["language"] = ["eng", "fra", "deu"][k]
            tracks.append(a)
        t = 0
        for i in range(n):
            f = av.VideoFrame.from_ndarray(pattern(i, w, h), format="rgb24")
            f.pts, f.time_base = t, tb
            out.mux(v.encode(f))
            t += ([30, 50, 90, 40][i % 4] if vfr else 1)
        out.mux(v.encode(None))
        seconds = n / fps if not vfr else t / 1000
        for k, a in enumerate(tracks):
            fs = a.codec_context.frame_size or 1024
            for j in range(int(seconds * 44100 / fs) + 1):
                s = (np.sin((np.arange(fs) + j * fs) * 0.02 * (k + 1)) * 0.3).astype(np.float32)
                af = av.AudioFrame.from_ndarray(s[None], format="fltp", layout="mono")
                af.sample_rate, af.pts = 44100, j * fs
                out.mux(a.encode(af))
            out.mux(a.encode(None))
    return path


def video_pts(path: Path) -> list[int]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [f.pts for f in c.decode(s)]


def video_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [round(float(f.pts * s.time_base), 4) for f in c.decode(s)]


def audio_hashes(path: Path) -> list[str]:
    """One sha256 per audio stream over its packets' bytes, in order."""
    with av.open(str(path)) as c:
        hs = {s.index: hashlib.sha256() for s in c.streams.audio}
        for p in c.demux(*c.streams.audio):
            if p.size:
                hs[p.stream.index].update(bytes(p))
        return [h.hexdigest() for h in hs.values()]


def frames_rgb(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(scope="session")
def model_file(tmp_path_factory) -> Path:
    """A randomly initialised lite network saved as a model file."""
    from vidstyle.models import TransformerNet, arch_config, save_model

    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("models") / "random_lite.safetensors"
    return save_model(p, TransformerNet(arch_config("lite")), ["random_lite"])


@pytest.fixture
def clip(tmp_path) -> Path:
    return make_clip(tmp_path / "clip.mp4")


@pytest.fixture(scope="session", autouse=True)
def engine_cache(tmp_path_factory):
    """The OpenVINO engine's conversions go to a folder of this test session, not the user's cache.

    Set in the environment, so the vidstyle processes the tests start use it too.
    """
    import os

    old = os.environ.get("VIDSTYLE_CACHE")
    os.environ["VIDSTYLE_CACHE"] = str(tmp_path_factory.mktemp("vidstyle-cache"))
    yield
    if old is None:
        os.environ.pop("VIDSTYLE_CACHE", None)
    else:
        os.environ["VIDSTYLE_CACHE"] = old
