"""The light install: every painting command without PyTorch, painting what the full install paints.

Each command runs in a child process where ``torch`` cannot be imported (an import hook raises, as a missing package
would), and the child checks at exit that no torch module was loaded. The pictures are compared with the full
install's PyTorch fp32 painting of the same input.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import audio_hashes, frames_rgb, psnr, shared, video_pts

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "sample.mp4"

# Run the vidstyle command with torch unimportable; exit 97 if any torch module got loaded anyway.
NO_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "nncf"):
            raise ImportError(f"No module named {name!r} (blocked: the light install has no PyTorch)")
sys.meta_path.insert(0, _NoTorch())
from vidstyle.cli import main
sys.argv = ["vidstyle", *sys.argv[1:]]
code = 0
try:
    main()
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))
if loaded:
    print("TORCH LOADED:", loaded[:5], file=sys.stderr)
    sys.exit(97)
sys.exit(code)
"""


def light(*args, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """``vidstyle ARGS`` in a child process without PyTorch."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", NO_TORCH, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=timeout)


def full(*args, timeout: int = 600) -> subprocess.CompletedProcess:
    """``vidstyle ARGS`` with PyTorch, in a child process."""
    return subprocess.run([sys.executable, "-m", "vidstyle.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


def refused(r: subprocess.CompletedProcess, *words: str) -> str:
    """A one-line error (exit 2, no traceback) that says each of ``words``."""
    assert r.returncode == 2, f"exit {r.returncode}\n{r.stderr[-2000:]}"
    assert "Traceback" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A real 360x640 frame as PNG (lossless), or the sample clip's first frame."""
    import cv2

    out = tmp_path_factory.mktemp("light") / "photo.png"
    src = shared("video/davis2016/blackswan/00000.jpg") if (ROOT.parent / "shared").exists() else None
    rgb = cv2.cvtColor(cv2.imread(str(src)), cv2.COLOR_BGR2RGB) if src else frames_rgb(SAMPLE)[0]
    cv2.imwrite(str(out), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return out


def read_rgb(path: Path) -> np.ndarray:
    import cv2

    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_the_sample_clip_without_torch_keeps_frames_timestamps_and_audio(tmp_path):
    out = tmp_path / "light.mp4"
    result = json.loads(ok(light("run", SAMPLE, "-o", out, "--json")).stdout)
    assert result["frames"] == 90 and result["device"] == "cpu"
    assert video_pts(out) == video_pts(SAMPLE)
    assert audio_hashes(out) == audio_hashes(SAMPLE)  # the audio packets copied untouched
    got = frames_rgb(out)
    assert len(got) == 90 and got[0].shape == (360, 640, 3)
    # painted, not copied: far from the input
    assert psnr(got[10], frames_rgb(SAMPLE)[10]) < 20


def test_out_size_without_torch(tmp_path):
    out = tmp_path / "small.mp4"
    ok(light("run", SAMPLE, "-o", out, "--out-size", "320x180"))
    got = frames_rgb(out)
    assert len(got) == 90 and got[0].shape == (180, 320, 3)


def test_an_image_without_torch_is_the_full_installs_fp32_painting(tmp_path, photo):
    ok(light("image", photo, "-o", tmp_path / "light.png"))
    ok(full("image", photo, "-o", tmp_path / "full.png", "--engine", "torch", "--precision", "fp32"))
    a, b = read_rgb(tmp_path / "light.png"), read_rgb(tmp_path / "full.png")
    assert a.shape == b.shape == read_rgb(photo).shape
    assert psnr(a, b) >= 40.0
    assert a.std() > 20  # a painting with structure, not flat


@pytest.mark.parametrize("extra", [["--strength", "0.5"], ["--preserve-color"], ["--max-side", "200"]])
def test_options_without_torch_paint_as_the_full_install(tmp_path, photo, extra):
    ok(light("image", photo, "-o", tmp_path / "light.png", *extra))
    ok(full("image", photo, "-o", tmp_path / "full.png", "--engine", "torch", "--precision", "fp32", *extra))
    a, b = read_rgb(tmp_path / "light.png"), read_rgb(tmp_path / "full.png")
    assert a.shape == b.shape
    assert psnr(a, b) >= 40.0, extra


def test_a_picture_as_a_style_without_torch(tmp_path, photo):
    style = shared("style")
    picture = sorted(p for p in style.iterdir() if p.suffix.lower() in (".jpg", ".png"))[0]
    cache = tmp_path / "cache"  # no vector cached: the light install computes it with OpenVINO
    env = {"VIDSTYLE_CACHE": str(cache)}
    os.environ.update(env)
    try:
        ok(light("image", photo, "--style", picture, "-o", tmp_path / "light.png"))
        assert len(list((cache / "styles").glob("*.npy"))) == 1
        ok(full("image", photo, "--style", picture, "-o", tmp_path / "full.png", "--engine", "torch",
                "--precision", "fp32"))
    finally:
        os.environ.pop("VIDSTYLE_CACHE", None)
    a, b = read_rgb(tmp_path / "light.png"), read_rgb(tmp_path / "full.png")
    assert psnr(a, b) >= 40.0


def test_temporal_without_torch_stabilises(tmp_path):
    plain, steady = tmp_path / "plain.mp4", tmp_path / "steady.mp4"
    ok(light("run", SAMPLE, "-o", plain))
    r = ok(light("run", SAMPLE, "-o", steady, "--temporal", "--json"))
    assert json.loads(r.stdout)["temporal_strength"] > 0
    a, b = frames_rgb(plain), frames_rgb(steady)
    assert len(a) == len(b) == 90
    step = lambda frames: np.mean([np.abs(frames[i].astype(int) - frames[i - 1]).mean()  # noqa: E731
                                   for i in range(1, len(frames))])
    assert step(b) < step(a)  # less change from frame to frame


def test_styles_and_openvino_export_without_torch(tmp_path):
    r = ok(light("styles"))
    assert "starry_night" in r.stdout
    xml = tmp_path / "night.xml"
    ok(light("export", "starry_night", "-o", xml))
    import openvino as ov

    om = ov.Core().read_model(str(xml))
    assert {p.get_any_name() for p in om.inputs} == {"image", "mix"}
    assert om.get_rt_info(["vidstyle", "name"]).astype(str)


@pytest.mark.parametrize("args,words", [
    (["train", "x.jpg", "--data", "photos"], ["vidstyle train", "vidstyle[train]"]),
    (["eval", "frames", "--style", "udnie"], ["vidstyle eval", "vidstyle[torch]"]),
    (["run", str(SAMPLE), "--engine", "torch"], ["--engine torch", "vidstyle[torch]"]),
    (["run", str(SAMPLE), "--device", "cuda"], ["--device cuda", "vidstyle[torch]"]),
    (["run", str(SAMPLE), "--temporal", "--flow", "raft"], ["RAFT", "vidstyle[torch]"]),
    (["export", "udnie", "-o", "x.onnx"], ["ONNX export", "vidstyle[torch]"]),
])
def test_what_needs_torch_says_which_extra_in_one_line(tmp_path, args, words):
    refused(light(*args, cwd=tmp_path), *words)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_segments_and_a_batch_without_torch(tmp_path):
    """The parallel paths (segments of one video, several videos into a folder) build their painter in worker
    processes: the light one there too."""
    joined = tmp_path / "joined.mp4"
    ok(light("run", SAMPLE, "-o", joined, "--segments", "2", "--max-side", "128"))
    assert video_pts(joined) == video_pts(SAMPLE)
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    for p in (a, b):
        p.write_bytes(SAMPLE.read_bytes())
    out = tmp_path / "out"
    ok(light("run", a, b, "-o", out, "--max-side", "128"))
    painted = sorted(out.glob("*.mp4"))
    assert len(painted) == 2 and all(len(frames_rgb(p)) == 90 for p in painted)


@pytest.mark.parametrize("style", ["udnie", "picture"])
def test_live_without_torch_records_painted_frames(tmp_path, style):
    """Live mode (a file as the source, no window) paints and records with the light painter, a picture too."""
    if style == "picture":
        style = str(sorted(shared("style").glob("*.jpg"))[0])
    out = tmp_path / "rec.mp4"
    r = ok(light("live", "--source", SAMPLE, "--no-preview", "--frames", "12", "--record", out, "--style", style,
                 "--max-side", "160", "--temporal", "--json"))
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["frames"] == 12 and res["recordings"] == [str(out)]
    got = frames_rgb(out)
    assert len(got) == 12 and got[0].shape == (360, 640, 3)
    assert psnr(got[5], frames_rgb(SAMPLE)[5]) < 20  # painted
