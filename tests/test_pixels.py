"""Painting checked on pixels: a network stand-in with structure, against an independent computation in NumPy.

The random test network paints near-flat grey, which hides channel order, strength and painting size. Here
the engine behind the Stylizer is a fixed function that rotates the colours (R <- G, G <- B, B <- R) and adds
an edge map, so a swapped channel order, a strength ignored or made all-or-nothing, or a painting size
ignored changes the pictures. The expected values are computed with NumPy and OpenCV from the input frames,
not with the code under test.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from conftest import frames_rgb, make_clip
from vidstyle import engines
from vidstyle.cli import app

runner = CliRunner()


class ColourEdges:
    """The engine stand-in: (N, 3, H, W) float [0, 1] -> 0.8 x the colours rotated + the local contrast."""

    precision, dtype, name = "fp32", None, "colour-edges"

    def __init__(self):
        self.seen: list[tuple[int, int]] = []

    def __call__(self, x: torch.Tensor, mix) -> torch.Tensor:
        self.seen.append(tuple(x.shape[-2:]))
        blur = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        edges = (x - blur).abs().sum(1, keepdim=True)
        return 0.8 * x[:, [1, 2, 0]] + 0.5 * edges


def expected(rgb: np.ndarray) -> np.ndarray:
    """``ColourEdges`` in NumPy: (H, W, 3) uint8 -> (H, W, 3) float [0, 1] (not clamped)."""
    x = rgb.astype(np.float64) / 255
    edges = np.abs(x - cv2.blur(x, (3, 3), borderType=cv2.BORDER_REPLICATE)).sum(2, keepdims=True)
    return 0.8 * x[..., [1, 2, 0]] + 0.5 * edges


def to_uint8(v: np.ndarray) -> np.ndarray:
    return np.round(np.clip(v, 0, 1) * 255).astype(np.uint8)


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth coloured blobs, each channel its own pattern (so a channel swap shows)."""
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)


@pytest.fixture
def colour_edges(monkeypatch) -> ColourEdges:
    engine = ColourEdges()
    monkeypatch.setattr(engines, "make_engine", lambda *a, **k: engine)
    return engine


def test_the_painter_gives_the_network_rgb_and_takes_rgb_back(colour_edges, model_file):
    from vidstyle.api import make_stylizer

    frame = texture(48, 64)
    out = make_stylizer(str(model_file), device="cpu")(frame[None])[0]
    assert colour_edges.seen == [(48, 64)]
    assert np.abs(out.astype(int) - to_uint8(expected(frame))).max() <= 1


def test_strength_blends_with_the_input_in_proportion(colour_edges, model_file):
    from vidstyle.api import make_stylizer

    frame = texture(48, 64, seed=1)
    x = frame / 255
    for s in (0.0, 0.25, 0.5, 1.0):
        out = make_stylizer(str(model_file), device="cpu", strength=s)(frame[None])[0]
        want = to_uint8((1 - s) * x + s * np.clip(expected(frame), 0, 1))
        assert np.abs(out.astype(int) - want).max() <= 1, s


def test_preserve_color_keeps_the_inputs_colour_and_the_paintings_light(colour_edges, model_file):
    from vidstyle.api import make_stylizer

    frame = texture(48, 64, seed=2)
    x, y = frame / 255, np.clip(expected(frame), 0, 1)
    luma = np.array([0.299, 0.587, 0.114])
    want = to_uint8(x + ((y @ luma) - (x @ luma))[..., None])
    out = make_stylizer(str(model_file), device="cpu", preserve_color=True)(frame[None])[0]
    assert np.abs(out.astype(int) - want).max() <= 1


def test_max_side_sets_the_size_the_network_paints_at(colour_edges, model_file):
    from vidstyle.api import make_stylizer

    frame = texture(48, 64, seed=3)
    out = make_stylizer(str(model_file), device="cpu", max_side=32)(frame[None])[0]
    assert colour_edges.seen == [(24, 32)] and out.shape == (48, 64, 3)  # painted small, returned full size
    small = cv2.resize(frame, (32, 24), interpolation=cv2.INTER_AREA)
    want = cv2.resize(to_uint8(expected(small)), (64, 48), interpolation=cv2.INTER_LINEAR)
    full = to_uint8(expected(frame))
    assert np.abs(out.astype(int) - want).mean() < np.abs(out.astype(int) - full).mean() / 2


def test_run_paints_the_videos_colours_in_order_at_the_strength_asked(tmp_path, colour_edges, model_file):
    """The whole path: PyAV decode -> painter -> PyAV encode, with --strength from the command line."""
    src = make_clip(tmp_path / "in.mp4", w=64, h=48, n=4, audio=None)
    out = tmp_path / "out.mp4"
    res = runner.invoke(app, ["run", str(src), "-o", str(out), "--style", str(model_file), "--device", "cpu",
                              "--strength", "0.5", "--chroma", "444", "--crf", "0", "-q"])
    assert res.exit_code == 0, res.output
    for rgb, got in zip(frames_rgb(src), frames_rgb(out)):
        want = to_uint8(0.5 * rgb / 255 + 0.5 * np.clip(expected(rgb), 0, 1))
        assert np.abs(got.astype(int) - want).mean() < 3  # the YUV round trip: a level or two
        swapped = to_uint8(0.5 * rgb / 255 + 0.5 * np.clip(expected(rgb[..., ::-1]), 0, 1)[..., ::-1])
        assert np.abs(swapped.astype(int) - want).mean() > 10  # what a channel swap would give: far


def test_read_image_gives_rgb(tmp_path):
    from vidstyle.io.images import read_image

    rgb = texture(24, 32, seed=4)
    cv2.imwrite(str(tmp_path / "p.png"), rgb[..., ::-1])  # OpenCV writes BGR
    assert np.array_equal(read_image(tmp_path / "p.png"), rgb)
