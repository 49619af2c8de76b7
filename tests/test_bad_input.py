"""Every bad input: one clear line on stderr, a non-zero exit code, no traceback, no file at the target."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import make_clip
from vidstyle.cli import app

runner = CliRunner()


def run_cli(*args):
    res = runner.invoke(app, [str(a) for a in args])
    # a user error ends in SystemExit (typer.Exit), never in another exception
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res


def assert_clean_error(res, target: Path | None, *words: str, code: int = 2):
    assert res.exit_code == code, (res.exit_code, res.output)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error:"), lines
    assert "Traceback" not in res.output
    for w in words:
        assert w.lower() in lines[0].lower(), lines[0]
    if target is not None:
        assert not target.exists()
        assert not list(target.parent.glob(f".{target.stem}.partial-*"))


def test_missing_file(tmp_path, model_file):
    out = tmp_path / "o.mp4"
    assert_clean_error(run_cli("run", tmp_path / "nope.mp4", "-o", out, "--style", model_file), out, "not found")


def test_directory(tmp_path, model_file):
    out = tmp_path / "o.mp4"
    assert_clean_error(run_cli("run", tmp_path, "-o", out, "--style", model_file), out, "directory")


def test_text_file_renamed_mp4(tmp_path, model_file):
    src = tmp_path / "notes.mp4"
    src.write_text("this is not a video\n" * 50)
    out = tmp_path / "o.mp4"
    assert_clean_error(run_cli("run", src, "-o", out, "--style", model_file), out, "not a video")


def test_audio_only_file(tmp_path, model_file):
    import av
    import numpy as np
    src = tmp_path / "song.m4a"
    with av.open(str(src), "w", format="mp4") as c:
        a = c.add_stream("aac", rate=44100)
        a.layout = "mono"
        for j in range(10):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 44100, j * 1024
            c.mux(a.encode(f))
        c.mux(a.encode(None))
    out = tmp_path / "o.mp4"
    assert_clean_error(run_cli("run", src, "-o", out, "--style", model_file), out, "no video stream")


def test_truncated_file_writes_decodable_frames(tmp_path, model_file):
    src = make_clip(tmp_path / "full.mp4", w=64, h=48, n=40, audio=None)
    data = src.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    out = tmp_path / "o.mp4"
    res = run_cli("run", cut, "-o", out, "--style", model_file, "--device", "cpu")
    assert res.exit_code == 3, res.output
    assert "incomplete" in res.stderr and "Traceback" not in res.output
    from conftest import video_pts
    n = len(video_pts(out))
    assert 0 < n < 40
    assert video_pts(out) == video_pts(src)[:n]


def test_unreadable_model_file(tmp_path, clip):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x00\x01garbage" * 10)
    out = tmp_path / "o.mp4"
    assert_clean_error(run_cli("run", clip, "-o", out, "--style", bad), out, "safetensors")


def test_pickle_model_file_is_refused(tmp_path, clip):
    bad = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(3)}, bad)
    out = tmp_path / "o.mp4"
    assert_clean_error(run_cli("run", clip, "-o", out, "--style", bad), out, "not a readable .safetensors")


def test_model_with_wrong_shapes(tmp_path, clip):
    import json
    from safetensors.torch import load_file, save_file
    from vidstyle.models import TransformerNet, arch_config, save_model
    good = save_model(tmp_path / "g.safetensors", TransformerNet(arch_config("lite")), ["g"])
    state = load_file(str(good))
    state["encoder.0.conv.weight"] = torch.zeros(8, 3, 9, 9)
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad), metadata={"format": "vidstyle-model", "arch": json.dumps(arch_config("lite").to_dict()),
                                         "styles": '["bad"]', "training": "{}"})
    out = tmp_path / "o.mp4"
    assert_clean_error(run_cli("run", clip, "-o", out, "--style", bad), out, "shape")


def test_unknown_style_lists_known(tmp_path, clip, monkeypatch, model_file):
    monkeypatch.setenv("VIDSTYLE_MODELS", str(model_file.parent))
    out = tmp_path / "o.mp4"
    res = run_cli("run", clip, "-o", out, "--style", "no_such_style")
    assert_clean_error(res, out, "unknown style", "random_lite")


def test_output_folder_missing(tmp_path, clip, model_file):
    out = tmp_path / "nowhere" / "o.mp4"
    assert_clean_error(run_cli("run", clip, "-o", out, "--style", model_file), out, "does not exist")


def test_existing_output_kept_without_overwrite(tmp_path, clip, model_file):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"precious")
    res = run_cli("run", clip, "-o", out, "--style", model_file)
    assert res.exit_code == 2 and "--overwrite" in res.stderr
    assert out.read_bytes() == b"precious"
    res = run_cli("run", clip, "-o", out, "--style", model_file, "--overwrite", "-q", "--device", "cpu")
    assert res.exit_code == 0 and out.read_bytes() != b"precious"


def test_output_equal_to_input_refused(tmp_path, clip, model_file):
    before = clip.read_bytes()
    res = run_cli("run", clip, "-o", clip, "--style", model_file, "--overwrite")
    assert res.exit_code == 2 and "overwrite the input" in res.stderr
    assert clip.read_bytes() == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_device_cuda_without_gpu(tmp_path, clip, model_file):
    out = tmp_path / "o.mp4"
    assert_clean_error(run_cli("run", clip, "-o", out, "--style", model_file, "--device", "cuda"), out, "cuda")


def test_nvenc_without_gpu_is_a_clear_error(tmp_path, clip, model_file):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    out = tmp_path / "o.mp4"
    assert_clean_error(run_cli("run", clip, "-o", out, "--style", model_file, "--codec", "h264_nvenc"), out, "nvenc")


def test_failure_mid_run_leaves_no_file(tmp_path, clip, model_file):
    from vidstyle import stylize_video
    calls = []

    def boom(x, y):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("stage failed")
        return y

    out = tmp_path / "o.mp4"
    with pytest.raises(RuntimeError, match="stage failed"):
        stylize_video(clip, out, style=model_file, device="cpu", batch_size=2, stabilizer=boom)
    assert not out.exists() and not list(tmp_path.glob(".o.partial-*"))


def _as_nobody():
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("running as root without setpriv: cannot drop write permission")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_no_write_permission(tmp_path, model_file):
    base = Path(os.environ.get("TMPDIR", "/tmp")) / f"vidstyle-perm-{os.getpid()}"
    base.mkdir(exist_ok=True)
    try:
        src = make_clip(base / "in.mp4", audio=None)
        model = base / "m.safetensors"
        shutil.copy(model_file, model)
        locked = base / "locked"
        locked.mkdir()
        for p in (base, src, model):
            p.chmod(0o755 if p.is_dir() else 0o644)
        locked.chmod(0o555)
        prefix = _as_nobody()
        code = "from vidstyle.cli import main; main()"
        proc = subprocess.run([*prefix, sys.executable, "-c", code, "run", str(src), "-o", str(locked / "o.mp4"),
                               "--style", str(model), "--device", "cpu"], capture_output=True, text=True,
                              env={**os.environ, "HOME": str(base)}, cwd=str(base))
        if os.geteuid() != 0 and os.access(locked, os.W_OK):
            pytest.skip("this user can write to a 0555 folder")
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and "permission" in lines[0]
        assert not list(locked.iterdir())
    finally:
        locked.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)
