"""The torch-free stabiliser (``vidstyle.light.stabilizer``) against ``vidstyle.temporal``, and the torch-free
``vidstyle.flow``.

No timing assertions: what is checked is what the outputs are, and which modules get imported.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import psnr, shared
from vidstyle.errors import VidstyleError
from vidstyle.light.stabilizer import Stabilizer, _adaptive_means, occlusion, restore_detail, sample_map, warp

ROOT = Path(__file__).resolve().parents[1]


def blackswan(n: int = 8) -> np.ndarray:
    """The first ``n`` frames of davis2016/blackswan: (n, H, W, 3) uint8 RGB (skips when the data is missing)."""
    folder = shared("video/davis2016/blackswan")
    files = sorted(folder.glob("*.jpg"))[:n]
    if len(files) < n:
        pytest.skip(f"{folder} has {len(files)} frames, {n} needed")
    return np.stack([cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files])


def paint(frames: np.ndarray, seed: int = 0) -> np.ndarray:
    """A stand-in painter with structure: a fixed colour transform of each frame, a smooth noise texture
    that slides 3 px a frame whatever the content does, and a little fresh noise per frame (flicker).
    (N, H, W, 3) uint8 -> (N, H, W, 3) uint8."""
    n, h, w, _ = frames.shape
    rng = np.random.default_rng(seed)
    mix = np.array([[0.6, 0.3, 0.1], [0.1, 0.5, 0.4], [0.5, 0.1, 0.4]], np.float32)
    tex = cv2.resize(rng.standard_normal((h // 6, w // 6)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    out = []
    for i, f in enumerate(frames):
        y = f.astype(np.float32) @ mix.T * 0.9 + 20
        y += 25 * np.roll(tex, 3 * i, axis=1)[..., None] + 4 * rng.standard_normal((h, w, 1)).astype(np.float32)
        out.append(np.clip(y, 0, 255).round().astype(np.uint8))
    return np.stack(out)


def run_light(stab: Stabilizer, frames: np.ndarray, painted: np.ndarray, sizes=(1, 3, 4)) -> np.ndarray:
    """Batches of ``sizes`` as the painter runs them: ``begin`` before painting, then the call."""
    out, i = [], 0
    for n in sizes:
        pending = stab.begin(frames[i:i + n])
        out.append(stab(frames[i:i + n], painted[i:i + n], pending))
        i += n
    return np.concatenate(out)


def run_torch(stab, frames: np.ndarray, painted: np.ndarray, sizes=(1, 3, 4)) -> np.ndarray:
    """The same with ``vidstyle.temporal.Stabilizer`` on (N, 3, H, W) [0, 1] float tensors -> (N, H, W, 3) float 0..255."""
    import torch

    t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    out, i = [], 0
    for n in sizes:
        pending = stab.begin(frames[i:i + n])
        out.append(stab(t(frames[i:i + n]), t(painted[i:i + n]), pending))
        i += n
    return torch.cat(out).permute(0, 2, 3, 1).numpy().astype(np.float64) * 255


def flicker(frames: np.ndarray, outputs: np.ndarray) -> float:
    """Mean absolute difference (0..255) between output t and output t-1 warped onto it by the flow of the
    inputs, over the pixels visible in both frames, averaged over t."""
    from vidstyle.flow import DISFlow

    dis = DISFlow("medium", 1.0)
    errs = []
    for t in range(1, len(frames)):
        fw, bw = dis(frames[t], frames[t - 1]), dis(frames[t - 1], frames[t])
        warped, _ = warp(outputs[t - 1].astype(np.float32), fw, "bilinear")
        mask = occlusion(fw, bw) > 0
        errs.append(float(np.abs(outputs[t].astype(np.float32) - warped)[mask].mean()))
    return float(np.mean(errs))


# ---------------------------------------------------------------- against the torch version

@pytest.mark.parametrize("keep_detail", [True, False])
def test_matches_torch_stabilizer_on_real_video(keep_detail):
    pytest.importorskip("torch")
    from vidstyle.temporal import Stabilizer as TorchStabilizer

    frames = blackswan(8)
    painted = paint(frames)
    ref = run_torch(TorchStabilizer(strength=0.7, flow="dis", keep_detail=keep_detail), frames, painted)
    light = Stabilizer(strength=0.7, flow="dis", keep_detail=keep_detail)
    out = run_light(light, frames, painted)
    assert out.shape == frames.shape and out.dtype == np.uint8
    figures = [psnr(out[i], ref[i]) for i in range(len(frames))]
    print(f"keep_detail={keep_detail}: PSNR vs torch per frame (dB):", " ".join(f"{p:.1f}" for p in figures))
    assert light.cuts == 0
    assert min(figures) >= 40, figures
    assert np.array_equal(out[0], painted[0])  # the first frame has no history
    assert not np.array_equal(out[1:], painted[1:])


@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
def test_warp_matches_torch_inside_and_outside_the_frame(mode):
    torch = pytest.importorskip("torch")
    from vidstyle import warp as torch_warp

    rng = np.random.default_rng(1)
    h, w = 41, 57
    src = rng.random((h, w, 3), dtype=np.float32)
    flow = (rng.standard_normal((h, w, 2)) * 4).astype(np.float32)
    flow[:6, :, 0] += 80     # far outside on the right
    flow[-5:, :, 1] -= 3.3   # just outside at the top (bicubic taps clamped, position not)
    t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None]  # noqa: E731
    ref, ref_inside = torch_warp.warp(t(src), t(flow), mode)
    out, inside = warp(src, flow, mode)
    assert np.abs(out - ref[0].permute(1, 2, 0).numpy()).max() < 1e-4
    assert np.array_equal(inside > 0, ref_inside[0, 0].numpy() > 0)
    assert (inside == 0).sum() > 6 * w  # the test does reach outside
    flow_out, _ = warp(-flow, flow, mode)  # a flow (2 channels) warps as exactly
    assert np.abs(flow_out - torch_warp.warp(t(-flow), t(flow), mode)[0][0].permute(1, 2, 0).numpy()).max() < 1e-3


def test_occlusion_matches_torch():
    torch = pytest.importorskip("torch")
    from vidstyle import warp as torch_warp

    rng = np.random.default_rng(2)
    h, w = 90, 160
    fw = cv2.GaussianBlur((rng.standard_normal((h, w, 2)) * 20).astype(np.float32), (0, 0), 3)
    bw = -fw + rng.standard_normal((h, w, 2)).astype(np.float32) * 0.5
    fw[:10] += 40  # leaves the frame
    t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None]  # noqa: E731
    ref = torch_warp.occlusion(t(fw), t(bw))[0, 0].numpy() > 0
    mask = occlusion(fw, bw)
    assert mask.dtype == np.uint8 and mask.shape == (h, w)
    assert 0.2 < ref.mean() < 0.9
    assert ((mask > 0) != ref).mean() < 1e-3  # float rounding at the threshold only
    assert not mask[:10].any()


@pytest.mark.parametrize("hw", [(90, 160), (97, 131), (200, 301)])
def test_restore_detail_and_cut_means_match_torch(hw):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from vidstyle import temporal

    rng = np.random.default_rng(3)
    blend = cv2.GaussianBlur(rng.random(hw + (3,), dtype=np.float32), (0, 0), 1.5)
    frame = rng.random(hw + (3,), dtype=np.float32)
    t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None]  # noqa: E731
    ref = temporal.restore_detail(t(blend).clone(), t(frame))[0].permute(1, 2, 0).numpy()
    out = restore_detail(blend, frame)
    assert out.shape == blend.shape and out.dtype == np.float32
    assert np.abs(out - ref).max() < 1e-4
    assert np.abs(out - blend).max() > 0.05  # it did restore something
    u8 = (frame * 255).astype(np.uint8)
    pooled = F.adaptive_avg_pool2d(t(u8).float(), 16)[0].permute(1, 2, 0).numpy()
    assert np.abs(_adaptive_means(u8) - pooled).max() < 1e-3


# ---------------------------------------------------------------- what it does

def test_it_stabilises():
    frames = blackswan(8)
    painted = paint(frames)
    stab = Stabilizer(strength=0.7, flow="dis")
    out = run_light(stab, frames, painted)
    raw, stabilised = flicker(frames, painted), flicker(frames, out)
    print(f"flicker (mean abs diff to the warped previous frame, 0..255): raw {raw:.2f}, stabilised {stabilised:.2f}")
    assert stabilised < 0.8 * raw
    plain = run_light(Stabilizer(strength=0.7, flow="dis", keep_detail=False), frames, painted)
    plain_flicker = flicker(frames, plain)
    print(f"flicker without keep_detail: {plain_flicker:.2f}")
    assert plain_flicker < stabilised  # averaging without the detail back flickers least


def test_scene_cut_resets():
    frames = blackswan(5)
    other = shared("video/davis2016").joinpath("car-shadow", "00000.jpg")
    if other.is_file():
        new = cv2.resize(cv2.cvtColor(cv2.imread(str(other)), cv2.COLOR_BGR2RGB), frames.shape[2:0:-1])
    else:  # an unrelated picture: the frame upside down with its colours inverted
        new = 255 - frames[0, ::-1]
    seq = np.concatenate([frames[:3], np.stack([new] * 3)])  # 3 frames, the cut, then the new scene goes on (still)
    painted = paint(seq)
    stab = Stabilizer(strength=0.7, flow="dis")
    out = run_light(stab, seq, painted, sizes=(2, 4))
    assert stab.cuts == 1
    assert np.array_equal(out[3], painted[3])           # no blending with the old scene
    assert not np.array_equal(out[4], painted[4])       # history builds again after it
    stab.reset()
    assert stab.cuts == 0 and stab.prev_out is None


def test_off_returns_the_painting_and_computes_no_flow():
    frames = np.random.default_rng(4).integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    painted = paint(frames)
    calls = []

    def counting_flow(target, source):
        calls.append(1)
        return np.zeros(target.shape[:2] + (2,), np.float32)

    for stab in (Stabilizer(strength=0.0, flow=counting_flow), Stabilizer(flow=counting_flow)):
        if stab.strength is None:
            stab.enabled = False
        assert not stab.active
        for i in range(3):
            assert stab.begin(frames[i:i + 1]) is None
            out = stab(frames[i:i + 1], painted[i:i + 1])
            assert np.shares_memory(out, painted) and np.array_equal(out, painted[i:i + 1])
    style = Stabilizer(flow=counting_flow)  # strength None: the style's own, set by the painter
    style.style_strength = 0.0
    assert not style.active and style.weight == 0.0
    assert np.array_equal(style(frames, painted), painted)
    assert calls == []
    style.style_strength = 0.5
    assert style.active and style.weight == 0.5
    style(frames, painted)
    # called without ``begin`` while off, it kept no input for the flows (as the torch version):
    # the first frame of this batch has no flow, the 2 others one pair each, both ways
    assert len(calls) == 2 * 2


def test_bad_arguments():
    with pytest.raises(VidstyleError, match=r"vidstyle\[torch\]"):
        Stabilizer(flow="raft")
    with pytest.raises(VidstyleError):
        Stabilizer(warp_mode="nearest")
    with pytest.raises(VidstyleError):
        Stabilizer(flow="lucas-kanade").begin(np.zeros((1, 32, 32, 3), np.uint8))
    f = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(VidstyleError):
        Stabilizer(strength=0.5)(f, f[:, :16])
    with pytest.raises(VidstyleError):
        Stabilizer(strength=0.5)(f, f.astype(np.float32))
    assert Stabilizer(strength=0.5)(f[:0], f[:0]).shape == (0, 32, 32, 3)
    assert sample_map(np.zeros((4, 5, 2), np.float32))[3, 4].tolist() == [4.0, 3.0]


# ---------------------------------------------------------------- no torch

def _python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_imports_leave_torch_out():
    res = _python("""
        import sys
        import vidstyle.light.stabilizer, vidstyle.flow
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")))
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_works_with_torch_unimportable():
    res = _python("""
        import sys
        sys.modules["torch"] = None  # import torch raises ImportError from here on
        import numpy as np
        from vidstyle.errors import VidstyleError
        from vidstyle.flow import DISFlow, make_flow, raft_available
        try:
            make_flow("raft")
        except VidstyleError as e:
            print("raft:", e)
        print("auto:", type(make_flow("auto")).__name__, type(make_flow("auto", "cuda")).__name__, raft_available())
        from vidstyle.light.stabilizer import Stabilizer
        rng = np.random.default_rng(0)
        base = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
        frames = np.stack([np.roll(base, i, axis=1) for i in range(3)])
        stab = Stabilizer(strength=0.5)
        out = stab(frames, frames[..., ::-1].copy())
        print("stab:", out.shape, out.dtype, type(stab.estimator()).__name__)
    """)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("raft: ") and "vidstyle[torch]" in lines[0] and "PyTorch" in lines[0]
    assert lines[1] == "auto: DISFlow DISFlow False"
    assert lines[2] == "stab: (3, 40, 60, 3) uint8 DISFlow"
