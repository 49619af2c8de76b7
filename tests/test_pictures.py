"""Any picture as a style (vidstyle.io.pictures): what reads, what is refused with one line, and the notes."""
from __future__ import annotations

import functools
import hashlib
import http.server
import io
import resource
import struct
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import pattern
from vidstyle.errors import VidstyleError
from vidstyle.io import pictures
from vidstyle.io.pictures import MIN_SIDE, Picture, is_picture, read_picture

W, H = 48, 32


def write(path: Path, rgb: np.ndarray, **params) -> Path:
    """Save (H, W, 3|4) uint8 RGB(A) with OpenCV (the format from the suffix)."""
    code = cv2.COLOR_RGBA2BGRA if rgb.ndim == 3 and rgb.shape[2] == 4 else cv2.COLOR_RGB2BGR
    ok, buf = cv2.imencode(path.suffix, cv2.cvtColor(rgb, code) if rgb.ndim == 3 else rgb)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def refused(spec, *words: str, **kw) -> str:
    """The one-line VidstyleError that read_picture raises for ``spec``, checked to name it and hold ``words``."""
    with pytest.raises(VidstyleError) as info:
        read_picture(spec, **kw)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(spec) in msg
    for w in words:
        assert w in msg
    return msg


def exif_orientation(value: int) -> bytes:
    ex = Image.Exif()
    ex[0x0112] = value
    return ex.tobytes()


def test_a_jpeg_reads_as_rgb_with_the_digest_of_its_bytes(tmp_path):
    p = write(tmp_path / "a.jpg", pattern(0, W, H))
    pic = read_picture(p)
    assert isinstance(pic, Picture)
    assert pic.rgb.shape == (H, W, 3) and pic.rgb.dtype == np.uint8
    assert np.abs(pic.rgb.astype(int) - pattern(0, W, H)).mean() < 4  # RGB, not BGR
    assert pic.digest == hashlib.sha256(p.read_bytes()).hexdigest()
    assert pic.notes == ()
    assert read_picture(f"file:{p}").digest == pic.digest


def test_is_picture():
    assert is_picture("a.JPG") and is_picture(Path("x/b.tiff")) and is_picture("c.gif") and is_picture("d.webp")
    assert is_picture("https://example.com/a/b.png?w=200#top")
    assert not is_picture("clip.mp4") and not is_picture("https://example.com/a.jpg/stream")
    assert not is_picture("https://example.com/") and not is_picture("noext")


@pytest.mark.parametrize("case", ["missing", "folder", "text", "empty"])
def test_what_is_not_a_picture_is_one_line(tmp_path, case):
    p = tmp_path / "x.jpg"
    if case == "folder":
        p.mkdir()
    elif case == "text":
        p.write_text("not a picture at all\n")
    elif case == "empty":
        p.write_bytes(b"")
    words = {"missing": "not found", "folder": "folder", "text": "not a picture", "empty": "empty"}[case]
    refused(p, words)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
@pytest.mark.parametrize("keep", [0.5, 0.97, -2])
def test_a_truncated_jpeg_or_png_is_refused_quietly(tmp_path, capfd, suffix, keep):
    rng = np.random.default_rng(0)
    rgb = cv2.GaussianBlur(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), (5, 5), 2)
    data = write(tmp_path / f"full{suffix}", rgb).read_bytes()
    cut = data[:int(len(data) * keep)] if keep > 0 else data[:keep]
    p = tmp_path / f"x{suffix}"
    p.write_bytes(cut)
    refused(p, "truncated", "JPEG" if suffix == ".jpg" else "PNG")
    assert capfd.readouterr().err == ""  # OpenCV never saw it: no "libpng error" on stderr


def test_a_progressive_jpeg_with_data_after_its_end_reads(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(pattern(1, W, H)).save(buf, "JPEG", progressive=True, exif=exif_orientation(1))
    p = tmp_path / "p.jpg"
    p.write_bytes(buf.getvalue() + b"\xff\xda\x00\x08 appended video data")  # as a motion photo appends an MP4
    assert read_picture(p).rgb.shape == (H, W, 3)
    p.write_bytes(buf.getvalue()[:-300])
    refused(p, "truncated")


@pytest.mark.parametrize("w,h", [(1, 1), (MIN_SIDE - 1, 40), (40, MIN_SIDE - 1)])
def test_a_tiny_picture_is_refused(tmp_path, w, h):
    p = write(tmp_path / "tiny.png", pattern(0, w, h))
    refused(p, f"{w}x{h}", "too small to use as a style: at least 16x16")
    assert read_picture(write(tmp_path / "ok.png", pattern(0, MIN_SIDE, MIN_SIDE))).rgb.shape == (16, 16, 3)


def bomb_png(w: int, h: int) -> bytes:
    """A 1-bit grey PNG of w x h, all black, built with zlib: small on disk, huge decoded."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    z = zlib.compressobj(9)
    row = bytes(1 + (w + 7) // 8)  # filter byte 0, then the bits
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, monkeypatch):
    p = tmp_path / "bomb.png"
    p.write_bytes(bomb_png(20000, 20000))
    assert p.stat().st_size < 500_000

    def no_decode(*a, **k):
        raise AssertionError("decoded")

    monkeypatch.setattr(pictures.cv2, "imdecode", no_decode)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    refused(p, "20000x20000", "400 megapixels", "over the limit of 100 megapixels", "shrink it first")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB: nothing decoded
    monkeypatch.undo()
    small = write(tmp_path / "small.png", pattern(0, 100, 100))
    refused(small, "100x100", "over the limit", max_pixels=5000)
    assert read_picture(small, max_pixels=10_000).rgb.shape == (100, 100, 3)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_grey_picture_gives_three_equal_channels(tmp_path, suffix):
    grey = pattern(0, W, H)[..., 0]
    p = tmp_path / f"g{suffix}"
    Image.fromarray(grey, "L").save(p)
    rgb = read_picture(p).rgb
    assert rgb.shape == (H, W, 3)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    assert np.abs(rgb[..., 0].astype(int) - grey).mean() < 3


def test_a_cmyk_jpeg_keeps_its_colours(tmp_path):
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:, :16] = (200, 40, 30)
    rgb[:, 16:32] = (20, 160, 90)
    rgb[:, 32:] = (60, 80, 220)
    p = tmp_path / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(p, "JPEG", quality=95)
    assert Image.open(p).mode == "CMYK" and b"Adobe" in p.read_bytes()  # Pillow writes Adobe (inverted) CMYK
    out = read_picture(p).rgb
    for cols in (slice(2, 14), slice(18, 30), slice(34, 46)):
        assert np.abs(out[:, cols].reshape(-1, 3).mean(0) - rgb[:, cols].reshape(-1, 3).mean(0)).max() < 4


def test_a_png_with_alpha_is_painted_over_white(tmp_path):
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., :3] = (255, 0, 0)  # hidden red under the transparent part
    rgba[:, :16, 3] = 0
    rgba[:, 16:32, 3] = 128
    rgba[:, 32:, :] = (0, 0, 255, 255)
    p = write(tmp_path / "a.png", rgba)
    pic = read_picture(p)
    assert (pic.rgb[:, :16] == 255).all()
    assert (np.abs(pic.rgb[:, 16:32].astype(int) - (255, 127, 127)) <= 1).all()
    assert (pic.rgb[:, 32:] == (0, 0, 255)).all()
    assert pic.notes == (f"{p} has transparent pixels: they are painted white",)
    assert read_picture(write(tmp_path / "opaque.png", rgba[..., :3])).notes == ()


def test_a_turned_png_with_alpha_turns_its_alpha_too(tmp_path):
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., :3] = (10, 20, 30)
    rgba[..., 3] = 255
    rgba[:, :8, 3] = 0  # the left columns: the top rows once turned clockwise
    p = tmp_path / "turned.png"
    Image.fromarray(rgba, "RGBA").save(p, exif=exif_orientation(6))
    rgb = read_picture(p).rgb
    assert rgb.shape == (W, H, 3)
    assert (rgb[:8] == 255).all() and (rgb[8:] == (10, 20, 30)).all()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_turns_as_opencv_does(tmp_path, orientation):
    buf = io.BytesIO()
    Image.fromarray(pattern(2, W, H)).save(buf, "JPEG", exif=exif_orientation(orientation))
    data = np.frombuffer(buf.getvalue(), np.uint8)
    turned = cv2.imdecode(data, cv2.IMREAD_COLOR)
    raw = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert np.array_equal(pictures._orient(raw, orientation), turned)
    assert pictures._exif_orientation(exif_orientation(orientation)[6:]) == orientation


def test_exif_orientation_6_comes_out_turned(tmp_path):
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:8, :8] = (255, 0, 0)  # red top-left: top-right once turned clockwise
    p = tmp_path / "phone.jpg"
    Image.fromarray(rgb).save(p, quality=95, exif=exif_orientation(6))
    out = read_picture(p).rgb
    assert out.shape == (W, H, 3)
    assert out[2, -3, 0] > 200 and out[2, 2, 0] < 50


def gif(path: Path, frames: list[np.ndarray]) -> Path:
    ims = [Image.fromarray(f) for f in frames]
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=100, loop=0)
    return path


def test_an_animated_gif_gives_its_first_frame_with_a_note(tmp_path):
    first, second = np.full((H, W, 3), (200, 100, 30), np.uint8), np.full((H, W, 3), (30, 100, 200), np.uint8)
    p = gif(tmp_path / "x.gif", [first, second])
    pic = read_picture(p)
    assert (np.abs(pic.rgb.astype(int) - first) <= 2).all()
    assert pic.notes == (f"{p} is animated: its first frame is the style",)
    assert read_picture(gif(tmp_path / "still.gif", [first])).notes == ()


def test_without_opencv_gif_ffmpeg_reads_the_first_frame(tmp_path, monkeypatch):
    first = np.full((H, W, 3), (200, 100, 30), np.uint8)
    p = gif(tmp_path / "x.gif", [first, 255 - first])
    opencv = pictures._imdecode
    monkeypatch.setattr(pictures, "_opencv_reads_gif", lambda: False)
    monkeypatch.setattr(pictures, "_imdecode", lambda name, buf, flags: None if buf[:3].tobytes() == b"GIF"
                        else opencv(name, buf, flags))
    pic = read_picture(p)
    assert (np.abs(pic.rgb.astype(int) - first) <= 2).all() and "is animated" in pic.notes[0]


def test_a_truncated_gif_is_refused_quietly(tmp_path, capfd):
    data = gif(tmp_path / "full.gif", [pattern(0, W, H)]).read_bytes()
    p = tmp_path / "cut.gif"
    p.write_bytes(data[:len(data) // 2])
    refused(p, "not a picture")
    assert capfd.readouterr().err == ""  # OpenCV's own "[ERROR] imdecode_" log is off while it decodes


@pytest.mark.parametrize("suffix", [".png", ".webp"])
def test_an_animated_png_or_webp_gets_the_note(tmp_path, suffix):
    first, second = np.full((H, W, 3), 200, np.uint8), np.full((H, W, 3), 30, np.uint8)
    ims = [Image.fromarray(first), Image.fromarray(second)]
    p = tmp_path / f"anim{suffix}"
    ims[0].save(p, save_all=True, append_images=ims[1:], duration=100, loop=0, lossless=True)
    pic = read_picture(p)
    assert (np.abs(pic.rgb.astype(int) - 200) <= 2).all()
    assert pic.notes == (f"{p} is animated: its first frame is the style",)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_a_16_bit_picture_is_scaled_to_8_bits(tmp_path, suffix):
    bgr16 = np.zeros((H, W, 3), np.uint16)
    bgr16[..., 2], bgr16[..., 1], bgr16[..., 0] = 65535, 32768, 0  # R, G, B
    bgr16[:, :8, 0] = 256
    ok, buf = cv2.imencode(suffix, bgr16)
    p = tmp_path / f"deep{suffix}"
    p.write_bytes(buf.tobytes())
    rgb = read_picture(p).rgb
    assert (rgb[:, 8:] == (255, 128, 0)).all() and (rgb[:, :8, 2] == 1).all()


def test_a_url_needs_its_protocol_allowed():
    url = "https://example.com/a.jpg"
    msg = refused(url, "needs --allow-protocol https")
    assert msg == f"reading a style picture from {url} needs --allow-protocol https"
    refused("http://example.com/a.png", "--allow-protocol http", allow_protocols=["https"])


@pytest.fixture
def server(tmp_path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_an_allowed_url_reads_as_the_file_does(tmp_path, server):
    p = write(tmp_path / "a.png", pattern(3, W, H))
    local = read_picture(p)
    pic = read_picture(f"{server}/a.png", allow_protocols=["http"])
    assert np.array_equal(pic.rgb, local.rgb) and pic.digest == local.digest
    gif(tmp_path / "x.gif", [pattern(0, W, H), pattern(5, W, H)])
    assert "is animated" in read_picture(f"{server}/x.gif", allow_protocols=["http"]).notes[0]
    refused(f"{server}/missing.jpg", "404", allow_protocols=["http"])
    (tmp_path / "cut.jpg").write_bytes(write(tmp_path / "b.jpg", pattern(0, W, H)).read_bytes()[:-100])
    refused(f"{server}/cut.jpg", "truncated", allow_protocols=["http"])
