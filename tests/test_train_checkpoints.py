"""Training runs a user can trust: resume refuses other data, loss or process options; Ctrl-C during a step
is handled after it; a checkpoint is always on disk; frame pairs come at the photos' scale."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from test_train import config, needs_hed, write_images
from vidstyle.errors import VidstyleError


def _step_of(path: Path) -> str:
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()["step"]


# ---------------------------------------------------------------- resume checks
@needs_hed
def test_resume_refuses_other_data_loss_and_process_options(tmp_path):
    from safetensors.torch import save_file

    from vidstyle.train.checkpoint import read_checkpoint
    from vidstyle.train.loop import Trainer
    t = Trainer(config(tmp_path, run_dir=str(tmp_path / "a")))
    t.train_step()
    ck = t.save_checkpoint()
    other = write_images(tmp_path / "other", 3, seed=5)
    for change, word in [({"data": str(other)}, "--data"), ({"loss_padding": "zeros"}, "--loss-padding"),
                         ({"clip_grad": 1.0}, "--clip-grad"), ({"precision": "fp32"}, "--precision"),
                         ({"data_limit": 4}, "--data-limit")]:
        with pytest.raises(VidstyleError, match=word):
            Trainer(config(tmp_path, run_dir=str(tmp_path / "b"), resume=str(ck), **change))
    # the same folder under another name is the same data
    same = str(tmp_path / "other" / ".." / "photos")
    assert Trainer(config(tmp_path, run_dir=str(tmp_path / "b"), resume=str(ck), data=same)).step == 1
    meta, cfg, tensors = read_checkpoint(ck)
    assert meta["world_size"] == "1"
    two = tmp_path / "two.safetensors"
    save_file(tensors, str(two), metadata={**meta, "world_size": "2"})
    with pytest.raises(VidstyleError, match="2 training processes"):
        Trainer(config(tmp_path, run_dir=str(tmp_path / "b"), resume=str(two)))
    # a checkpoint from before these were recorded resumes (a missing value is no mismatch)
    for key in ("data", "data_limit", "video_data", "flow", "loss_net", "loss_padding", "clip_grad", "precision"):
        cfg.pop(key)
    old_meta = {k: v for k, v in meta.items() if k != "world_size"}
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata={**old_meta, "config": json.dumps(cfg)})
    # ... except where what training did then is known: zero padding and no gradient clipping
    with pytest.raises(VidstyleError, match="--clip-grad 0.0"):
        Trainer(config(tmp_path, run_dir=str(tmp_path / "b"), resume=str(old), loss_padding="zeros"))
    assert Trainer(config(tmp_path, run_dir=str(tmp_path / "b"), resume=str(old), loss_padding="zeros",
                          clip_grad=0.0)).step == 1


# ---------------------------------------------------------------- Ctrl-C during a step
@needs_hed
def test_ctrl_c_during_a_step_is_handled_after_the_step(tmp_path):
    from vidstyle.train.loop import Trainer
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default handler here")
    t = Trainer(config(tmp_path, steps=3))
    real_step = t.opt.step

    def step_then_ctrl_c(*a, **kw):  # the signal arrives while the step is still running
        out = real_step(*a, **kw)
        os.kill(os.getpid(), signal.SIGINT)
        return out

    t.opt.step = step_then_ctrl_c
    with pytest.raises(VidstyleError, match="interrupted at step 1"):
        t.train()
    ck = t.checkpoint_path()
    assert _step_of(ck) == "1"
    from safetensors.torch import load_file
    saved = load_file(str(ck))
    for k, v in t.net.state_dict().items():
        assert torch.equal(saved[f"net.{k}"], v)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with open(t.run_dir / "log.csv") as fh:  # the step it saved is in the log too (its row used to be lost)
        assert [r.split(",")[0] for r in fh.read().splitlines()[1:]] == ["1"]


@needs_hed
def test_sigterm_during_a_step_saves_a_checkpoint_like_ctrl_c(tmp_path):
    """kill, a scheduler, a closed terminal: SIGTERM and SIGHUP lost every step since the last checkpoint."""
    from vidstyle.train.loop import Trainer
    before = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as in a shell (an earlier test's Ray sets its own)
    try:
        _sigterm_during_a_step(tmp_path, Trainer)
    finally:
        signal.signal(signal.SIGTERM, before)


def _sigterm_during_a_step(tmp_path, Trainer):
    t = Trainer(config(tmp_path, steps=3))
    real_step = t.opt.step

    def step_then_term(*a, **kw):
        out = real_step(*a, **kw)
        if t.step == 1:  # train_step counts the step after the update
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    t.opt.step = step_then_term
    with pytest.raises(VidstyleError, match="stopped by SIGTERM at step 2"):
        t.train()
    assert _step_of(t.checkpoint_path()) == "2"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


# ---------------------------------------------------------------- what a run must not lose or mix
@needs_hed
def test_a_style_file_moved_during_the_run_and_a_full_disk(tmp_path, monkeypatch):
    from vidstyle.train import checkpoint, loop
    t = loop.Trainer(config(tmp_path))
    t.train_step()
    Path(t.cfg.styles[0]).unlink()  # hashed when the run started: the checkpoint does not need it now
    ck = t.save_checkpoint()
    assert _step_of(ck) == "1"
    t.train_step()

    def full(*a, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full)
    with pytest.raises(VidstyleError, match=f"step 2 .*No space left.*the last one is kept: {ck}"):
        t.save_checkpoint()
    assert _step_of(ck) == "1" and not [p for p in ck.parent.iterdir() if ".partial" in p.name]


@needs_hed
def test_resume_refuses_another_loss_network_or_ema_and_says_when_the_file_is_missing(tmp_path):
    from safetensors.torch import save_file
    from vidstyle.train.checkpoint import read_checkpoint
    from vidstyle.train.loop import Trainer
    t = Trainer(config(tmp_path, ema=0.9))
    t.train_step()
    ck = t.save_checkpoint()
    meta, cfg, tensors = read_checkpoint(ck)
    assert meta["loss_net_source"] == t.vgg.source
    with pytest.raises(VidstyleError, match="--ema 0.9, not 0.5"):
        Trainer(config(tmp_path, ema=0.5, resume=str(ck)))
    other = tmp_path / "other.safetensors"
    save_file(tensors, str(other), metadata={**meta, "loss_net_source": "torchvision"})
    with pytest.raises(VidstyleError, match="torchvision loss network"):
        Trainer(config(tmp_path, ema=0.9, resume=str(other), run_dir=str(tmp_path / "r2")))
    with pytest.raises(VidstyleError, match="resume file not found"):
        Trainer(config(tmp_path, ema=0.9, resume=str(tmp_path / "typo.safetensors")))


@needs_hed
def test_start_over_clears_the_old_run_and_the_run_dir_is_not_data(tmp_path):
    from vidstyle.train.loop import Trainer
    t = Trainer(config(tmp_path))
    t.train_step()
    t.save_checkpoint()
    t.save_checkpoint()
    t.preview()
    run = t.run_dir
    assert (run / "checkpoint-prev.safetensors").exists() and list(run.glob("preview*.png"))
    Trainer(config(tmp_path, overwrite=True))
    assert not (run / "checkpoint-prev.safetensors").exists() and not list(run.glob("preview*.png"))
    assert not (run / "checkpoint.safetensors").exists()
    # --data . with the default runs/<style> inside it: the previews there are not photos
    photos = tmp_path / "photos"
    n = len(Trainer(config(tmp_path, run_dir=str(photos / "runs" / "x"))).photos)
    cv2.imwrite(str(photos / "runs" / "x" / "preview.png"), np.zeros((80, 80, 3), np.uint8))
    assert len(Trainer(config(tmp_path, run_dir=str(photos / "runs" / "x"), overwrite=True)).photos) == n


@needs_hed
def test_fp16_training_is_refused_not_bf16_in_disguise(tmp_path):
    from vidstyle.train.loop import Trainer
    with pytest.raises(VidstyleError, match="bf16 or fp32"):
        Trainer(config(tmp_path, precision="fp16"))


@needs_hed
def test_two_style_images_of_one_name_are_refused(tmp_path):
    from test_train import style_picture
    from vidstyle.train.loop import Trainer
    (tmp_path / "b").mkdir()
    twin = style_picture(tmp_path / "b" / "style.png")
    with pytest.raises(VidstyleError, match="two style images are named style"):
        Trainer(config(tmp_path, styles=[str(style_picture(tmp_path / "style.png")), str(twin)]))


# ---------------------------------------------------------------- a checkpoint at all times
@needs_hed
def test_a_crash_while_saving_leaves_a_checkpoint_and_prev_counts_as_an_earlier_run(tmp_path, monkeypatch):
    from vidstyle.io.atomic import AtomicPath
    from vidstyle.train.loop import Trainer
    t = Trainer(config(tmp_path))
    t.train_step()
    ck = t.save_checkpoint()
    t.train_step()

    def crash(self):
        raise OSError("killed")

    with monkeypatch.context() as m:
        m.setattr(AtomicPath, "commit", crash)
        with pytest.raises(OSError):
            t.save_checkpoint()
    assert _step_of(ck) == "1" and _step_of(ck.with_name("checkpoint-prev.safetensors")) == "1"
    t.save_checkpoint()
    assert _step_of(ck) == "2" and _step_of(ck.with_name("checkpoint-prev.safetensors")) == "1"
    ck.unlink()  # what a crash between the two renames used to leave
    with pytest.raises(VidstyleError, match="earlier run"):
        Trainer(config(tmp_path, output=str(tmp_path / "n.safetensors")))


# ---------------------------------------------------------------- frame pairs and data order
@needs_hed
def test_data_order_without_video_data_is_unchanged(tmp_path):
    from vidstyle.train.data import synthetic_pair
    from vidstyle.train.loop import Trainer
    for kw in ({}, {"temporal": "none"}):
        t = Trainer(config(tmp_path, run_dir=str(tmp_path / f"r{len(kw)}"), **kw))
        for step in range(4):
            gen = torch.Generator().manual_seed(t.cfg.seed * 1_000_003 + step)
            x = t.photos.batch(t.cfg.batch_size, gen)  # the order before the change
            flow = mask = None
            if t.temporal:
                xt, flow, mask = synthetic_pair(x, gen)
                x = torch.cat([x, xt])
            got = t.batch(step)
            assert torch.equal(got[0], x)
            assert (got[1] is None and flow is None) or torch.equal(got[1], flow)


@needs_hed
def test_frame_pairs_are_scaled_like_photos_and_draw_no_photos(tmp_path):
    from vidstyle.train.loop import Trainer
    seq = tmp_path / "video" / "seq"
    seq.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (12, 14, 3), dtype=np.uint8), (140, 120), interpolation=cv2.INTER_CUBIC)
    for i in range(3):
        cv2.imwrite(str(seq / f"{i:05d}.png"), np.roll(base, i, axis=1))
    t = Trainer(config(tmp_path, video_data=str(tmp_path / "video"), photo_size=80))
    assert t.photos.short_side == 80
    assert min(t.video.sequences[0][0].shape[:2]) == 80  # was --size (64)
    calls = []
    real = t.photos.batch
    t.photos.batch = lambda *a: calls.append(1) or real(*a)
    x, flow, mask = t.batch(1)  # odd step: a real frame pair
    assert calls == [] and x.shape == (4, 3, 64, 64) and flow.shape == (2, 2, 64, 64)
    t.batch(2)
    assert calls == [1]


@needs_hed
def test_every_style_gets_both_photos_and_frame_pairs(tmp_path):
    """Steps go round the styles; real frame pairs on odd steps gave style 0 of two none, style 1 no photos."""
    from test_train import style_picture
    from vidstyle.train.loop import Trainer
    seq = tmp_path / "video" / "seq"
    seq.mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(seq / f"{i:05d}.png"), np.full((80, 96, 3), 40 * i, np.uint8))
    (tmp_path / "b").mkdir()
    styles = [str(style_picture(tmp_path / "one.png")), str(style_picture(tmp_path / "b" / "two.png"))]
    t = Trainer(config(tmp_path, styles=styles, video_data=str(tmp_path / "video")))
    used = set()
    real = t.photos.batch
    for step in range(8):
        drawn = []
        t.photos.batch = lambda *a: drawn.append(1) or real(*a)
        t.batch(step)
        used.add((step % 2, "photos" if drawn else "frames"))
    assert used == {(0, "photos"), (0, "frames"), (1, "photos"), (1, "frames")}


# ---------------------------------------------------------------- --ema
@needs_hed
def test_ema_is_the_moving_average_kept_across_resume_and_written_as_the_model(tmp_path):
    from vidstyle.models.files import load_model
    from vidstyle.train.checkpoint import model_from_checkpoint, read_checkpoint
    from vidstyle.train.loop import Trainer

    def weights(net):
        return {k: v.detach().clone().float() for k, v in net.state_dict().items()}

    t = Trainer(config(tmp_path, ema=0.75, steps=3))
    expected = weights(t.net)  # the average starts at the starting weights
    for n in range(3):
        t.train_step()
        now = weights(t.net)
        decay = min(0.75, (1 + n) / (10 + n))  # warming up: 0.1, 0.18, 0.25, then 0.75
        expected = {k: expected[k] + (1 - decay) * (now[k] - expected[k]) for k in expected}
    got = weights(t.ema_net)
    assert all(torch.allclose(got[k], expected[k], atol=1e-6) for k in got)
    assert any((got[k] - now[k]).abs().max() > 1e-4 for k in got)  # the average is not the last weights
    ck = t.save_checkpoint()
    _, _, tensors = read_checkpoint(ck)
    assert {k[4:] for k in tensors if k.startswith("ema.")} == set(got)
    # a resume continues the same average, and its warm-up count; one without --ema is refused
    with pytest.raises(VidstyleError, match="--ema"):
        Trainer(config(tmp_path, steps=4, resume=str(ck), run_dir=str(tmp_path / "run")))
    r = Trainer(config(tmp_path, ema=0.75, steps=4, resume=str(ck), run_dir=str(tmp_path / "run")))
    assert all(torch.equal(weights(r.ema_net)[k], got[k]) for k in got) and r.ema_updates == 3
    # the model file of the run and of `vidstyle export CHECKPOINT` hold the average
    out = model_from_checkpoint(ck, tmp_path / "e.safetensors")
    exported = weights(load_model(out).net)
    assert all(torch.allclose(exported[k], got[k]) for k in got)
    warm = Trainer(config(tmp_path, run_dir=str(tmp_path / "w"), init=str(ck), output=str(tmp_path / "w.safetensors")))
    assert all(torch.equal(weights(warm.net)[k], got[k]) for k in got)  # --init CHECKPOINT takes the average too
    r.train()
    final = weights(load_model(tmp_path / "m.safetensors").net)
    assert all(torch.allclose(final[k], weights(r.ema_net)[k]) for k in final)
    # turned on at a resume of a run without it: the average starts at the resumed weights
    plain = Trainer(config(tmp_path, run_dir=str(tmp_path / "p"), steps=2, output=str(tmp_path / "p.safetensors")))
    plain.train_step()
    ck2 = plain.save_checkpoint()
    on = Trainer(config(tmp_path, run_dir=str(tmp_path / "p"), steps=2, ema=0.9, resume=str(ck2),
                        output=str(tmp_path / "p.safetensors")))
    assert all(torch.equal(weights(on.ema_net)[k], weights(plain.net)[k]) for k in got)
    with pytest.raises(VidstyleError, match="--ema"):
        Trainer(config(tmp_path, run_dir=str(tmp_path / "q"), ema=1.0, output=str(tmp_path / "q.safetensors")))
