"""Model files and batch folders made to hurt: each is one line and a refusal, never a black video or 6 GB."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from conftest import make_clip
from vidstyle.cli import app
from vidstyle.errors import VidstyleError
from vidstyle.models.files import load_model, write_safetensors
from vidstyle.models.metadata import read_metadata

runner = CliRunner()


def _copy_with(src: Path, dst: Path, *, tensors=None, **meta_changes) -> Path:
    """``src``'s model file written to ``dst`` with some tensors or metadata keys replaced."""
    meta = {**read_metadata(src), **meta_changes}
    state = load_file(str(src))
    state.update(tensors or {})
    return write_safetensors(dst, state, meta)


def test_a_model_with_nan_or_inf_weights_is_refused_at_load(tmp_path, model_file):
    state = load_file(str(model_file))
    name = next(k for k in state if k.endswith("conv.weight"))
    for value in (float("nan"), float("inf")):
        broken = state[name].clone()
        broken.view(-1)[3] = value
        p = _copy_with(model_file, tmp_path / "random_lite.safetensors", tensors={name: broken})
        with pytest.raises(VidstyleError, match=r"NaN or infinite.*" + name.replace(".", r"\.")):
            load_model(p)
    clip = make_clip(tmp_path / "c.mp4", w=32, h=24, n=3, audio=None)
    res = runner.invoke(app, ["run", str(clip), "-o", str(tmp_path / "o.mp4"), "--style", str(p), "--device", "cpu"])
    assert res.exit_code == 2 and "NaN or infinite" in res.stderr and not (tmp_path / "o.mp4").exists()
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(sys.platform != "linux", reason="the peak memory is read from /proc")
@pytest.mark.parametrize("arch", [{"channels": [6144, 6144, 6144]}, {"res_blocks": 5000}, {"n_styles": 10 ** 6},
                                  {"channels": [16, 32]}])
def test_metadata_that_asks_for_a_huge_network_is_refused_before_it_is_built(tmp_path, model_file, arch):
    meta = read_metadata(model_file)
    p = _copy_with(model_file, tmp_path / "huge.safetensors", arch=json.dumps({**json.loads(meta["arch"]), **arch}))
    # the peak from /proc (VmHWM), not ru_maxrss: that one keeps the test runner's own peak across fork and exec
    code = (f"from vidstyle.models.files import load_model\nfrom vidstyle.errors import "
            f"VidstyleError\ntry:\n    load_model({str(p)!r})\nexcept VidstyleError as e:\n    print(e)\n"
            "print(next(ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    message, peak_kb = out.stdout.strip().splitlines()
    assert "broken metadata" in message, out.stdout + out.stderr
    assert int(peak_kb) < 1_000_000  # torch alone is a few hundred MB; a 6144-channel network is gigabytes


def test_metadata_that_does_not_match_the_tensors_is_refused_from_the_header(tmp_path, model_file):
    meta = read_metadata(model_file)
    bigger = {**json.loads(meta["arch"]), "channels": [32, 64, 128]}  # a lite file that claims the full network
    p = _copy_with(model_file, tmp_path / "liar.safetensors", arch=json.dumps(bigger))
    with pytest.raises(VidstyleError, match="does not match its architecture"):
        load_model(p)


def test_a_styles_list_of_the_wrong_length_is_refused_not_renamed(tmp_path, model_file):
    p = _copy_with(model_file, tmp_path / "two.safetensors", styles=json.dumps(["a", "b"]))
    with pytest.raises(VidstyleError, match="2 style names for the 1 styles of its network"):
        load_model(p)


def test_an_onnx_export_gets_the_permissions_of_a_new_file(tmp_path, model_file):
    pytest.importorskip("onnx", reason="onnx comes with the openvino extra (make install adds it)")
    out = tmp_path / "m.onnx"
    res = runner.invoke(app, ["export", str(model_file), "-o", str(out)])
    assert res.exit_code == 0, res.output
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask  # it was 0600, unlike every other output


def test_an_onnx_export_records_the_size_the_network_paints_at(tmp_path):
    """Fed a full-size frame the look changes: the file says the short side vidstyle paints at."""
    onnx = pytest.importorskip("onnx", reason="onnx comes with the openvino extra (make install adds it)")
    from vidstyle.models import TransformerNet, arch_config, save_model

    model = save_model(tmp_path / "scaled.safetensors", TransformerNet(arch_config("lite")), ["scaled"],
                       training={"scale": 288})
    res = runner.invoke(app, ["export", str(model), "-o", str(tmp_path / "m.onnx")])
    assert res.exit_code == 0, res.output
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert meta["vidstyle.scale"] == "288" and "short side is vidstyle.scale" in meta["vidstyle.io"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_named_like_a_video_is_not_a_batch_input(tmp_path):
    from vidstyle.batch import find_inputs

    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "a.mp4", w=32, h=24, n=3, audio=None)
    os.mkfifo(folder / "pipe.mp4")
    t0 = time.monotonic()
    assert [Path(s.input).name for s in find_inputs([folder])] == ["a.mp4"]
    assert time.monotonic() - t0 < 60  # reading the FIFO would block forever


def test_picture_sizes_are_read_from_the_header_of_every_format():
    import cv2
    import numpy as np

    from vidstyle.io.images import header_size

    rgb = (np.random.default_rng(0).random((37, 53, 3)) * 255).astype(np.uint8)
    for ext, params in [(".png", []), (".jpg", []), (".webp", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),
                        (".bmp", []), (".tif", []), (".ppm", []), (".pgm", [])]:
        ok, buf = cv2.imencode(ext, rgb[..., 0] if ext == ".pgm" else rgb, params)
        assert ok and header_size(buf.tobytes()) == (53, 37), ext
    assert header_size(b"GIF89a\x35\x00\x25\x00") == (53, 37)
    assert header_size(b"not a picture at all") is None and header_size(b"\x89PNG\r\n\x1a\n") is None


def _png_header(w: int, h: int) -> bytes:
    """The first bytes of a PNG claiming (w, h): enough for its size to be read, not to be decoded."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def test_a_huge_picture_is_refused_from_its_header_before_any_style_loads(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(20000, 20000) + bytes(1000))
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "vidstyle", "image", str(bomb), "-o", str(tmp_path / "o.png")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        f"error: {bomb} is 20000x20000 (400 megapixels), over the limit of 100 megapixels; --max-pixels raises it"]
    assert not (tmp_path / "o.png").exists() and time.monotonic() - t0 < 60
    res = runner.invoke(app, ["image", str(bomb), "-o", str(tmp_path / "o.png"), "--max-pixels", str(500_000_000)])
    assert res.exit_code == 2 and "over the limit" not in res.stderr  # let through: the damaged file fails later


def test_a_painting_larger_than_the_free_memory_is_one_line(monkeypatch, model_file):
    import numpy as np

    from vidstyle import sizing
    from vidstyle.api import make_stylizer

    st = make_stylizer(str(model_file), device="cpu", max_side=64, engine="torch")
    monkeypatch.setattr(sizing, "free_memory", lambda: 10_000_000)
    assert st(np.zeros((1, 48, 64, 3), np.uint8)).shape == (1, 48, 64, 3)  # 64x48 takes about 1 MB
    with pytest.raises(VidstyleError, match=r"painting 1000x800 at 64x51 needs about .* lower --max-side"):
        st(np.zeros((1, 800, 1000, 3), np.uint8))  # the frames' float copies alone are 32 MB
    monkeypatch.setattr(sizing, "free_memory", lambda: None)  # where it cannot be told: painted
    assert st(np.zeros((1, 800, 1000, 3), np.uint8)).shape == (1, 800, 1000, 3)


def test_a_run_killed_between_its_rename_and_its_manifest_is_painted_again(tmp_path, model_file):
    """The output is complete, but the manifest still says pending: the next run must not refuse it."""
    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "a.mp4", w=32, h=24, n=4, audio=None)
    code = (f"import os, signal\nfrom vidstyle.batch import StylizeJob, run_batch\n"
            f"job = StylizeJob({str(model_file)!r}, device='cpu')\n"
            "def paint_then_die(input, output, *, overwrite=False, progress=None):\n"
            "    job(input, output, overwrite=overwrite)\n"
            "    os.kill(os.getpid(), signal.SIGKILL)  # after the rename, before the manifest says done\n"
            f"paint_then_die.label, paint_then_die.options = job.label, job.options\n"
            f"run_batch([{str(folder)!r}], {str(tmp_path / 'out')!r}, paint_then_die)\n")
    died = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert died.returncode == -signal.SIGKILL, died.stderr
    out = tmp_path / "out" / "a.random_lite.mp4"
    assert out.is_file()
    res = runner.invoke(app, ["run", str(folder), "-o", str(tmp_path / "out"), "--style", str(model_file),
                              "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output  # was: "exists; pass --overwrite to replace it", exit 1
    assert json.loads((tmp_path / "out" / "vidstyle-manifest.json").read_text())["items"][0]["status"] == "done"


def _manifest(folder: Path, items: list, version=1) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "vidstyle-manifest.json").write_text(json.dumps({"version": version, "items": items}))


@pytest.mark.parametrize("case", ["link out", "two on one", "version", "options", "nan seconds", "frames text"])
def test_a_manifest_is_checked_before_it_is_trusted(tmp_path, case):
    from vidstyle.batch import Manifest

    out = tmp_path / "out"
    out.mkdir()
    item = {"input": str(tmp_path / "a.mp4"), "output": "a.x.mp4", "status": "done", "frames": 3, "seconds": 1.0}
    items, version = [item], 1
    if case == "link out":  # OUT/link -> ../elsewhere: an output there would replace a file outside OUT
        (tmp_path / "elsewhere").mkdir()
        (out / "link").symlink_to(tmp_path / "elsewhere")
        items = [{**item, "output": "link/a.x.mp4"}]
    elif case == "two on one":
        items = [item, {**item, "input": str(tmp_path / "b.mp4")}]
    elif case == "version":
        version = 7
    elif case == "options":
        items = [{**item, "options": "xx"}]
    elif case == "nan seconds":
        items = [{**item, "seconds": float("nan")}]
    else:
        items = [{**item, "frames": "3"}]
    _manifest(out, items, version)
    with pytest.raises(VidstyleError, match="is not a readable vidstyle manifest"):
        Manifest(out)


def test_a_mix_that_names_a_style_twice_is_refused():
    from vidstyle.models.registry import parse_mix

    with pytest.raises(VidstyleError, match="names a twice"):
        parse_mix("a:1,a:1")


def _three_styles(path: Path, training: dict | None = None) -> Path:
    """A lite network with three styles a, b, c whose norm rows differ (they paint differently)."""
    from vidstyle.models import TransformerNet, arch_config, save_model

    torch_ = pytest.importorskip("torch")
    torch_.manual_seed(1)
    net = TransformerNet(arch_config("lite", n_styles=3))
    with torch_.no_grad():
        for name, p in net.named_parameters():
            if ".norm." in name:
                p.add_(torch_.randn_like(p))
    return save_model(path, net, ["a", "b", "c"], training=training)


def test_a_multi_style_file_named_without_a_style_paints_its_own_or_says_which_it_holds(tmp_path):
    import numpy as np

    from vidstyle.api import make_stylizer

    frame = (np.random.default_rng(2).random((1, 40, 48, 3)) * 255).astype(np.uint8)
    paint = lambda spec: make_stylizer(spec, device="cpu", engine="torch")  # noqa: E731
    plain = _three_styles(tmp_path / "set.safetensors")
    with pytest.raises(VidstyleError, match=r"holds 3 styles \(a, b, c\); name one as --style .*:STYLE"):
        paint(str(plain))  # it painted a, labelled "set", before
    named = _three_styles(tmp_path / "b.safetensors")
    st = paint(str(named))
    assert st.model.label == "b" and np.array_equal(st(frame), paint(f"{named}:b")(frame))
    assert not np.array_equal(st(frame), paint(f"{named}:a")(frame))  # the styles do paint differently
    trained = _three_styles(tmp_path / "mine.safetensors", training={"trained_styles": ["c"]})
    st = paint(str(trained))
    assert st.model.label == "c" and np.array_equal(st(frame), paint(f"{trained}:c")(frame))
    clip = make_clip(tmp_path / "v.mp4", w=32, h=24, n=2, audio=None)
    res = runner.invoke(app, ["run", str(clip), "-o", str(tmp_path / "o.mp4"), "--style", str(trained), "--json",
                              "-q", "--device", "cpu"])
    assert res.exit_code == 0 and json.loads(res.stdout)["style"] == "c", res.output


def test_the_python_api_names_its_own_overwrite_switch(tmp_path, model_file):
    """The API's errors say overwrite=True (its keyword), the command line's say --overwrite."""
    import cv2
    import numpy as np

    from vidstyle.api import stylize_image

    pic = tmp_path / "p.png"
    cv2.imwrite(str(pic), np.full((24, 32, 3), 90, np.uint8))
    out = tmp_path / "o.png"
    out.write_bytes(b"mine")
    with pytest.raises(VidstyleError, match=r"exists; pass overwrite=True to replace it"):
        stylize_image(pic, out, style=str(model_file), device="cpu")
    res = runner.invoke(app, ["image", str(pic), "-o", str(out), "--style", str(model_file), "--device", "cpu"])
    assert res.exit_code == 2 and "exists; pass --overwrite to replace it" in res.stderr
    assert out.read_bytes() == b"mine"
