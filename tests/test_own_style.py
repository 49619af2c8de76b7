"""Your own style (``vidstyle train --style PICTURE``): a new norm row of a base network, written as a style file.

A tiny base network (lite, two styles with different rows, scale 64) stands for the bundled one, so a few steps
take seconds; the picture network paints the targets as it does for a user.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from test_train import needs_hed, style_picture, write_images
from vidstyle.cli import app
from vidstyle.errors import VidstyleError
from vidstyle.models.config import NORM_KEYS

runner = CliRunner()


@pytest.fixture
def base(tmp_path, monkeypatch) -> Path:
    """A user models folder holding ``tiny.safetensors``: a lite network of two styles, trained at 64 px."""
    from vidstyle.models.files import save_model
    from vidstyle.models.transformer import TransformerNet, arch_config

    torch.manual_seed(0)
    net = TransformerNet(arch_config("lite", 2))
    with torch.no_grad():  # two styles that differ, as a trained model's do
        for k, p in net.named_parameters():
            if k.endswith(NORM_KEYS):
                p.add_(torch.randn_like(p) * 0.3)
        # a fresh network paints flat grey (std 0.002): its last layer scaled, it paints the photo's structure
        # (std 0.1, each style its own), so rows that learn have something to move
        net.decoder[2].conv.weight.mul_(60)
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("VIDSTYLE_MODELS", str(models))
    save_model(models / "tiny.safetensors", net, ["a", "b"], {"scale": 64})
    write_images(tmp_path / "photos", 24)
    style_picture(tmp_path / "mine.png")
    return models / "tiny.safetensors"


def options(tmp_path, **kw):
    from vidstyle.train.own_style import OwnStyleOptions

    o = dict(picture=str(tmp_path / "mine.png"), data=(str(tmp_path / "photos"),), base="tiny", minutes=30.0,
             output=str(tmp_path / "mine.safetensors"), run_dir=str(tmp_path / "run"), device="cpu", photos=20,
             distil_steps=12, refine_steps=2, preview_minutes=0)
    o.update(kw)
    return OwnStyleOptions(**o)


def weights(path) -> dict:
    from vidstyle.models.style_file import read_any

    return read_any(path).weights


@needs_hed
def test_only_the_new_rows_change_and_the_file_is_small(tmp_path, base):
    from vidstyle.models.files import load_model
    from vidstyle.train.own_style import OwnStyleRun

    summary = OwnStyleRun(options(tmp_path)).run()
    out = Path(summary["output"])
    assert summary["style"] == "mine" and summary["phases"].keys() == {"data", "distil", "refine"}
    # the targets: every training picture painted by the picture network, at the base's scale
    photos = sorted((tmp_path / "run/data/photos").glob("*.png"))
    targets = sorted((tmp_path / "run/data/targets/mine").glob("*.png"))
    assert len(photos) == len(targets) == 20
    assert out.stat().st_size < base.stat().st_size / 2  # rows and the picture, not a network
    model = load_model(out)
    assert model.styles == ["a", "b", "mine"] and model.own_style() == "mine"
    old, new = weights(base), {k: v.numpy() for k, v in model.net.state_dict().items()}
    for k, v in old.items():
        if k.endswith(NORM_KEYS):
            assert np.array_equal(new[k][:2], v), k  # the base's styles, bit for bit
            assert not np.allclose(new[k][2], v.mean(0)), k  # the new row moved from where it started
        else:
            assert np.array_equal(new[k], v), k  # every shared weight, bit for bit
    # distil learnt the paintings: on all 20 pictures, its row paints nearer the targets than the row it
    # started from (the mean of the base's rows, which the mix (0.5, 0.5, 0) paints)
    distilled = load_model(tmp_path / "run/distil.safetensors")
    x = torch.stack([torch.from_numpy(cv2.imread(str(p))[..., ::-1].copy()) for p in photos]).permute(0, 3, 1, 2) / 255
    y = torch.stack([torch.from_numpy(cv2.imread(str(p))[..., ::-1].copy()) for p in targets]).permute(0, 3, 1, 2) / 255
    with torch.no_grad():
        learnt = (distilled.net(x, torch.tensor([0.0, 0, 1])).clamp(0, 1) - y).abs().mean()
        start = (distilled.net(x, torch.tensor([0.5, 0.5, 0])).clamp(0, 1) - y).abs().mean()
    assert learnt < 0.97 * start, (learnt, start)  # 12 steps of a random base: 0.295 against 0.308
    assert len((tmp_path / "run/refine/log.csv").read_text().splitlines()) == 3
    meta = json.loads(__import__("vidstyle.models.metadata", fromlist=["x"]).read_metadata(out)["training"])
    assert meta["base"] == "tiny" and meta["picture"] == "mine.png" and meta["seconds"] > 0


@needs_hed
def test_it_paints_mixes_and_is_listed(tmp_path, base):
    from vidstyle import api
    from vidstyle.models import registry
    from vidstyle.train.own_style import OwnStyleRun

    OwnStyleRun(options(tmp_path, output=str(base.parent / "mine.safetensors"), refine_steps=1)).run()
    listed = {e.name: e for e in registry.list_styles()}
    assert listed["mine"].base == "tiny" and listed["mine"].source == "user"
    x = torch.rand(1, 3, 64, 64)
    paint = {}
    for spec in ("mine", "a"):
        m = api.load_model(spec)
        paint[spec] = m.net(x, m.net.mix)
    m = api.load_model(None, mix={"mine": 0.5, "a": 0.5})  # the style file found from the mix alone
    assert m.styles == ["a", "b", "mine"]
    np.testing.assert_allclose(m.net.mix.numpy(), [0.5, 0, 0.5])
    assert not torch.allclose(paint["mine"], paint["a"], atol=1e-3)
    # the light install paints it too (NumPy weights, no PyTorch network)
    from vidstyle.models.files import load_model

    light = load_model(base.parent / "mine.safetensors", light=True)
    assert light.styles == ["a", "b", "mine"]
    np.testing.assert_array_equal(light.net.weights["encoder.0.norm.weight"][2],
                                  load_model(base.parent / "mine.safetensors").net.state_dict()["encoder.0.norm.weight"][2].numpy())


@needs_hed
def test_another_base_is_refused_in_one_line(tmp_path, base):
    from vidstyle.models.files import load_model, save_model
    from vidstyle.models.transformer import TransformerNet, arch_config
    from vidstyle.train.own_style import OwnStyleRun

    out = OwnStyleRun(options(tmp_path, refine_steps=1)).run()["output"]
    torch.manual_seed(1)
    save_model(base, TransformerNet(arch_config("lite", 2)), ["a", "b"], {"scale": 64})  # the base retrained
    with pytest.raises(VidstyleError, match=r"a style for the tiny network \(sha256 [0-9a-f]{12}\), and the "
                                            r"installed tiny is another network") as e:
        load_model(out)
    assert "\n" not in str(e.value)
    res = runner.invoke(app, ["image", str(tmp_path / "photos/img00.jpg"), "--style", out,
                              "-o", str(tmp_path / "o.png")])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "train the style again" in res.output
    base.unlink()
    with pytest.raises(VidstyleError, match="no model tiny is installed"):
        load_model(out)


@needs_hed
def test_ctrl_c_keeps_what_was_learnt_and_resume_goes_on(tmp_path, base):
    from vidstyle.train.own_style import OwnStyleRun

    def stop_at_3(phase, step, total, losses):
        if phase == "distil" and step == 3:
            raise KeyboardInterrupt

    with pytest.raises(VidstyleError, match=r"interrupted at step 3 of the distil phase; what it learnt is in .*"
                                            r"go on with --resume"):
        OwnStyleRun(options(tmp_path, distil_steps=6), progress=stop_at_3).run()
    out = tmp_path / "mine.safetensors"
    first = weights(out)  # written at the interruption, from the checkpoint
    summary = OwnStyleRun(options(tmp_path, distil_steps=6, resume=True, overwrite=True)).run()
    steps = [int(r.split(",")[0]) for r in (tmp_path / "run/distil/log.csv").read_text().splitlines()[1:]]
    assert steps == [1, 2, 3, 4, 5, 6]  # went on from step 3, no step twice
    assert summary["phases"]["distil"] > 0
    assert any(not np.array_equal(first[k], v) for k, v in weights(out).items())


@needs_hed
def test_budget_stops_a_training(tmp_path):
    from test_train import config

    from vidstyle.train.loop import Trainer

    t = Trainer(config(tmp_path, steps=50, minutes=1e-9))
    summary = t.train()
    assert summary["steps"] <= 1 and Path(summary["output"]).is_file()  # out of time at once: the model all the same


def test_cli_refuses_network_options_and_missing_data(tmp_path, base, monkeypatch):
    res = runner.invoke(app, ["train", str(tmp_path / "mine.png"), "--data", str(tmp_path / "photos"),
                              "--steps", "5"])
    assert res.exit_code == 2 and "--steps is for training a whole network (add --new-network)" in res.output
    empty = tmp_path / "pictures"
    empty.mkdir()
    import platformdirs

    monkeypatch.setattr(platformdirs, "user_pictures_dir", lambda: str(empty))
    res = runner.invoke(app, ["train", str(tmp_path / "mine.png"), "--base", "tiny"])
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert "give --data a folder of at least 20 photos, or videos" in res.output
    res = runner.invoke(app, ["train", str(tmp_path / "nope.png"), "--data", str(tmp_path / "photos"), "--base", "tiny"])
    assert res.exit_code == 2 and res.output.count("\n") == 1


def test_video_frames_are_sampled(tmp_path):
    from conftest import make_clip

    from vidstyle.train.own_style import find_data, sample_frames

    clip = make_clip(tmp_path / "c.mp4", w=96, h=64, n=30, audio=None)
    photos, videos = find_data((str(clip),))
    assert photos == [] and videos == [clip]
    frames = sample_frames(clip, 5, 48)
    assert len(frames) == 5 and frames[0].shape == (48, 72, 3)
    assert not np.array_equal(frames[0], frames[-1])  # spread over the clip, not the first five
