"""Model files and batch folders made to hurt: each is one line and a refusal, never a black video or 6 GB."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
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


@pytest.mark.parametrize("arch", [{"channels": [6144, 6144, 6144]}, {"res_blocks": 5000}, {"n_styles": 10 ** 6},
                                  {"channels": [16, 32]}])
def test_metadata_that_asks_for_a_huge_network_is_refused_before_it_is_built(tmp_path, model_file, arch):
    meta = read_metadata(model_file)
    p = _copy_with(model_file, tmp_path / "huge.safetensors", arch=json.dumps({**json.loads(meta["arch"]), **arch}))
    code = (f"import resource, sys\nfrom vidstyle.models.files import load_model\nfrom vidstyle.errors import "
            f"VidstyleError\ntry:\n    load_model({str(p)!r})\nexcept VidstyleError as e:\n    print(e)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
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
