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
    from vidstyle.models.files import read_any

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
    summary = OwnStyleRun(options(tmp_path, resume=True, picture="", data=())).run()  # the run's own options
    steps = [int(r.split(",")[0]) for r in (tmp_path / "run/distil/log.csv").read_text().splitlines()[1:]]
    assert steps == [1, 2, 3, 4, 5, 6]  # went on from step 3, no step twice
    state = json.loads((tmp_path / "run/own_style.json").read_text())
    assert state["done"] == ["data", "distil", "refine"] and summary["phases"] == {k: round(v, 1) for k, v in state["seconds"].items()}
    assert any(not np.array_equal(first[k], v) for k, v in weights(out).items())


@needs_hed
def test_budget_stops_a_training(tmp_path):
    from test_train import config

    from vidstyle.train.loop import Trainer

    t = Trainer(config(tmp_path, steps=50, minutes=1e-9))
    summary = t.train()
    assert summary["steps"] <= 1 and Path(summary["output"]).is_file()  # out of time at once: the model all the same


def test_cli_refuses_network_options_and_missing_data(tmp_path, base, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where runs/NAME would be made
    res = runner.invoke(app, ["train", str(tmp_path / "mine.png"), "--data", str(tmp_path / "photos"),
                              "--steps", "5"])
    assert res.exit_code == 2 and "--steps is for training a whole network (add --new-network)" in res.output
    res = runner.invoke(app, ["train", str(tmp_path / "mine.png"), "--new-network", "--data", str(tmp_path / "photos"),
                              "--photos", "50"])
    assert res.exit_code == 2 and "--photos is for your own style" in res.output
    empty = tmp_path / "pictures"
    empty.mkdir()
    import platformdirs

    monkeypatch.setattr(platformdirs, "user_pictures_dir", lambda: str(empty))
    res = runner.invoke(app, ["train", str(tmp_path / "mine.png"), "--base", "tiny"])
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert "give --data a folder of at least 20 photos, or videos" in res.output
    res = runner.invoke(app, ["train", str(tmp_path / "nope.png"), "--data", str(tmp_path / "photos"), "--base", "tiny"])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "style picture not found" in res.output
    assert not (tmp_path / "runs").exists()  # refused before any work


def test_video_frames_are_sampled(tmp_path):
    from conftest import make_clip

    from vidstyle.train.own_data import find_data, sample_frames

    clip = make_clip(tmp_path / "c.mp4", w=96, h=64, n=30, audio=None)
    photos, videos = find_data((str(clip),))
    assert photos == [] and videos == [clip]
    frames = sample_frames(clip, 5, 48)
    assert len(frames) == 5 and frames[0].shape == (48, 72, 3)
    assert not np.array_equal(frames[0], frames[-1])  # spread over the clip, not the first five


def made_style_file(tmp_path, base: Path) -> Path:
    """A style file without training: the base with a third row (random), written by write_style_file."""
    from vidstyle.models.files import load_model, save_model
    from vidstyle.models.style_file import write_style_file
    from vidstyle.models.transformer import TransformerNet

    m = load_model(base)
    net = TransformerNet(m.net.config.__class__(**{**m.net.config.__dict__, "n_styles": 3}))
    state = {k: (torch.cat([v, v[:1] + torch.randn_like(v[:1])]) if k.endswith(NORM_KEYS) else v)
             for k, v in m.net.state_dict().items()}
    net.load_state_dict(state)
    save_model(tmp_path / "three.safetensors", net, ["a", "b", "mine"], {"scale": 64})
    return write_style_file(tmp_path / "mine.safetensors", tmp_path / "three.safetensors", "mine", base)


def test_the_base_may_gain_or_retune_styles_and_is_found_by_its_network(tmp_path, base):
    from vidstyle.models.files import load_model, save_model

    path = made_style_file(tmp_path, base)
    mine = load_model(path).net.state_dict()["encoder.0.norm.weight"][2].clone()
    m = load_model(base)
    with torch.no_grad():
        m.net.encoder[0].norm.weight[0].add_(0.5)  # style a retuned in the base: the rows' network is the same
    save_model(base, m.net, ["a", "b"], {"scale": 64})
    assert torch.equal(load_model(path).net.state_dict()["encoder.0.norm.weight"][2], mine)
    renamed = base.with_name("tiny2.safetensors")  # the base under another name: found by its network's sha256
    base.rename(renamed)
    assert load_model(path).styles == ["a", "b", "mine"]


def test_write_style_file_refuses_a_model_that_changed_more_than_the_style(tmp_path, base):
    from vidstyle.models.files import load_model, save_model
    from vidstyle.models.style_file import write_style_file

    m = load_model(base)
    with torch.no_grad():
        m.net.decoder[0].conv.bias.add_(1e-3)  # a shared weight moved: the rows would not paint as trained
    save_model(tmp_path / "moved.safetensors", m.net, ["a", "b"], {"scale": 64})
    with pytest.raises(VidstyleError, match=r"differs from .* in decoder\.0\.conv\.bias beyond the style a"):
        write_style_file(tmp_path / "s.safetensors", tmp_path / "moved.safetensors", "a", base)
    assert not (tmp_path / "s.safetensors").exists()


def test_a_retuned_style_of_the_base_replaces_its_row(tmp_path, base):
    from vidstyle.models.files import load_model, save_model
    from vidstyle.models.files import read_any
    from vidstyle.models.style_file import write_style_file

    m = load_model(base)
    with torch.no_grad():
        m.net.encoder[0].norm.weight[1].add_(0.5)  # style b retuned
    save_model(tmp_path / "b2.safetensors", m.net, ["a", "b"], {"scale": 64})
    f = read_any(write_style_file(tmp_path / "b.safetensors", tmp_path / "b2.safetensors", "b", base))
    assert f.styles == ["a", "b"] and f.config.n_styles == 2
    old = read_any(base).weights["encoder.0.norm.weight"]
    np.testing.assert_array_equal(f.weights["encoder.0.norm.weight"][0], old[0])
    np.testing.assert_allclose(f.weights["encoder.0.norm.weight"][1], old[1] + 0.5, rtol=1e-6)


@pytest.mark.parametrize("damage, message", [
    ("nan", "NaN or infinite"),
    ("shape", "does not fit its base network"),
    ("missing", "does not fit its base network"),
    ("extra", "a tensor a style file does not have"),
    ("picture", "broken picture"),
    ("sha", "broken metadata"),
    ("name", "broken metadata"),
    ("training", "broken metadata"),
    ("strength", "temporal strength of mine must be a number from 0 to 1"),
    ("bytes", "not a readable"),
])
def test_hostile_style_files_are_one_line_errors(tmp_path, base, damage, message):
    from safetensors.numpy import load_file, save_file

    from vidstyle.models.files import load_model
    from vidstyle.models.metadata import read_metadata

    path = made_style_file(tmp_path, base)
    tensors, meta = load_file(str(path)), read_metadata(path)
    key = next(k for k in tensors if k.startswith("rows."))
    if damage == "nan":
        tensors[key][0] = np.nan
    elif damage == "shape":
        tensors[key] = np.zeros(7, np.float32)
    elif damage == "missing":
        del tensors[key]
    elif damage == "extra":
        tensors["encoder.0.conv.weight"] = np.zeros(3, np.float32)
    elif damage == "picture":
        tensors["style_image.0"] = np.zeros((1, 100000, 3), np.uint8)
    elif damage == "sha":
        meta["base_sha256"] = "x" * 64
    elif damage == "name":
        meta["style"] = "a:b"
    elif damage == "training":
        meta["training"] = "[1"
    elif damage == "strength":
        meta["temporal_strength"] = json.dumps({"mine": 7})
    if damage == "bytes":
        path.write_bytes(path.read_bytes()[:200])
    else:
        save_file(tensors, str(path), metadata=meta)
    with pytest.raises(VidstyleError, match=message) as e:
        load_model(path)
    assert "\n" not in str(e.value)
    with pytest.raises(VidstyleError):
        load_model(path, light=True)


def test_a_style_file_of_a_bundled_row_paints_as_that_style(tmp_path, monkeypatch):
    from vidstyle import api
    from vidstyle.models.registry import model_file
    from vidstyle.models.style_file import norm_rows, save_rows
    from vidstyle.models.weights import read_model_file

    bundled = read_model_file(model_file("paintings"))
    monkeypatch.setenv("VIDSTYLE_MODELS", str(tmp_path))
    path = save_rows(tmp_path / "mine.safetensors", norm_rows(bundled.weights, bundled.styles.index("udnie")), "mine",
                     model_file("paintings"))
    assert path.stat().st_size < 40_000  # 3,200 rows of float32 and the metadata: kilobytes
    img = cv2.imread(str(write_images(tmp_path / "p", 1, size=(96, 64)) / "img00.jpg"))[..., ::-1].copy()
    x = torch.from_numpy(img)[None].permute(0, 3, 1, 2).float() / 255  # (1, 3, 64, 96), shapes and colours
    mine, udnie = api.painting_model("mine"), api.painting_model("udnie")
    with torch.no_grad():
        a, b = mine.net(x, mine.net.mix), udnie.net(x, udnie.net.mix)
    assert mine.styles[-1] == "mine" and mine.label == "mine"
    assert mine.training["scale"] == udnie.training["scale"] == 256  # painted at the base's scale, as udnie is
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    other = api.painting_model("starry_night")
    with torch.no_grad():
        assert (other.net(x, other.net.mix) - b).abs().mean() > 0.02  # a network with structure: styles differ


@needs_hed
def test_refine_keeps_the_best_rows_and_a_retune_needs_no_distil(tmp_path, base, monkeypatch):
    from vidstyle.models.files import read_any
    from vidstyle.train.own_style import OwnStyleRun

    monkeypatch.setattr(OwnStyleRun, "CHECK_EVERY", 1)
    seen = []
    from vidstyle.train.loop import Trainer

    monkeypatch.setattr(Trainer, "validation_loss", lambda self, k=0, f=Trainer.validation_loss: (seen.append(self.step), f(self, k))[1])
    # style b of the base, refined from its own row: no distil phase, b's row replaced, a's kept
    summary = OwnStyleRun(options(tmp_path, name="b", distil_steps=0, refine_steps=3)).run()
    assert "distil" not in summary["phases"] and not (tmp_path / "run/distil").exists()
    assert seen == [1, 2, 3]  # every step validated (CHECK_EVERY 1), the last once
    best = json.loads((tmp_path / "run/best.json").read_text())
    assert summary["best"] == best and best["step"] in (1, 2, 3)
    f, old = read_any(summary["output"]), read_any(base)
    assert f.styles == ["a", "b"]
    w = "residuals.0.a.norm.weight"
    np.testing.assert_array_equal(f.weights[w][0], old.weights[w][0])
    assert not np.array_equal(f.weights[w][1], old.weights[w][1])


@needs_hed
def test_ctrl_c_in_refine_writes_the_style_and_resume_finishes(tmp_path, base):
    from vidstyle.train.own_style import OwnStyleRun

    def stop(phase, step, total, losses):
        if phase == "refine" and step == 2:
            raise KeyboardInterrupt

    with pytest.raises(VidstyleError, match="interrupted at step 2 of the refine phase"):
        OwnStyleRun(options(tmp_path, refine_steps=4), progress=stop).run()
    assert (tmp_path / "mine.safetensors").is_file()
    OwnStyleRun(options(tmp_path, resume=True)).run()
    steps = [int(r.split(",")[0]) for r in (tmp_path / "run/refine/log.csv").read_text().splitlines()[1:]]
    assert steps == [1, 2, 3, 4]


def test_names_and_runs_are_checked_before_any_work(tmp_path, base):
    from vidstyle.train.own_style import OwnStyleRun

    for name, message in (("a:b", "a style name is letters"), ("../x", "a style name is letters"),
                          ("tiny", "tiny is the name of a model file")):
        with pytest.raises(VidstyleError, match=message):
            OwnStyleRun(options(tmp_path, name=name))
    with pytest.raises(VidstyleError, match="holds no run of your own style"):
        OwnStyleRun(options(tmp_path, resume=True))
    (tmp_path / "run").mkdir()
    (tmp_path / "run/own_style.json").write_text("{")
    with pytest.raises(VidstyleError, match="holds an earlier run of this style: --resume"):
        OwnStyleRun(options(tmp_path))
    with pytest.raises(VidstyleError, match="own_style.json is broken"):
        OwnStyleRun(options(tmp_path, resume=True))
    with pytest.raises(VidstyleError, match="--minutes must be a number above 0"):
        OwnStyleRun(options(tmp_path, minutes=-1.0, overwrite=True))
    assert not (tmp_path / "mine.safetensors").exists()
