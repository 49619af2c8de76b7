"""vidstyle.light.graph: the torch-free OpenVINO graphs against the torch modules they replace (fp32 on the CPU)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SHARED, psnr

ov = pytest.importorskip("openvino")
G = pytest.importorskip("vidstyle.light.graph")

from vidstyle.errors import VidstyleError  # noqa: E402
from vidstyle.torch_export import StyleGraph  # noqa: E402
from vidstyle.models import arbitrary  # noqa: E402
from vidstyle.models.files import load_model  # noqa: E402
from vidstyle.models.transformer import ArchConfig, TransformerNet  # noqa: E402
from vidstyle.options import PaintOptions  # noqa: E402
from vidstyle.stylizer import Stylizer  # noqa: E402

BUNDLED = sorted((Path(__file__).resolve().parents[1] / "vidstyle" / "models" / "bundled").glob("*.safetensors"))[0]
F32 = {"INFERENCE_PRECISION_HINT": "f32"}


def compiled(model, shapes: dict | None = None):
    if shapes:
        model.reshape(shapes)
    return ov.Core().compile_model(model, "CPU", F32)


def photo(h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint8: a BSDS500 photo resized, else a synthetic gradient with edges and colour."""
    import cv2

    files = sorted((SHARED / "content" / "bsds500").glob("*.jpg"))
    if files:
        rgb = cv2.cvtColor(cv2.imread(str(files[0])), cv2.COLOR_BGR2RGB)
        return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    ys, xs = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([xs, ys, ((xs * 7).astype(int) + (ys * 5).astype(int)) % 2 * 0.8 + 0.1], -1)
    return (img * 255).round().astype(np.uint8)


def nchw(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], np.float32) / 255.0


def state(net: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().float().numpy().copy() for k, v in net.state_dict().items()}


@pytest.fixture(scope="module")
def random_net() -> TransformerNet:
    torch.manual_seed(0)
    net = TransformerNet(ArchConfig("transformer", (8, 16, 32), 2, 3)).eval().requires_grad_(False)
    for name, p in net.named_parameters():  # styles that differ, and an output far from flat grey
        if name.endswith("norm.weight"):
            p.copy_(1 + 0.5 * torch.randn_like(p))
        elif name.endswith("norm.bias"):
            p.copy_(0.5 * torch.randn_like(p))
    net.decoder[-1].conv.weight.mul_(60.0)
    return net


@pytest.fixture(scope="module")
def bundled():
    return load_model(BUNDLED)


# --------------------------------------------------------------------------- net_graph
def test_random_net_odd_size_and_blend(random_net):
    x = np.concatenate([nchw(photo(37, 53)), nchw(photo(37, 53))[:, ::-1].copy()])  # N = 2, colour order matters
    mix = np.array([0.2, 0.5, 0.3], np.float32)
    with torch.no_grad():
        want = StyleGraph(random_net)(torch.from_numpy(x), torch.from_numpy(mix)).numpy()
    got = compiled(G.net_graph(random_net.config.to_dict(), state(random_net)))({"image": x, "mix": mix})["stylized"]
    assert got.shape == want.shape == (2, 3, 37, 53)
    span = float(np.ptp(want))
    assert span > 0.3  # a picture, not a flat grey
    assert np.abs(got - want).max() < 1e-3 * span


def test_random_net_unpadded(random_net):
    x, mix = nchw(photo(40, 56)), np.array([0.0, 0.0, 1.0], np.float32)
    with torch.no_grad():
        want = random_net(torch.from_numpy(x), torch.from_numpy(mix)).numpy()
    model = G.net_graph(random_net.config.to_dict(), state(random_net), pad=False)
    got = compiled(model, {"image": [1, 3, 40, 56]})({"image": x, "mix": mix})["stylized"]
    assert np.abs(got - want).max() < 1e-3 * float(np.ptp(want))


def test_bundled_net(bundled):
    x = nchw(photo(96, 128))
    mix = np.zeros(bundled.net.config.n_styles, np.float32)
    mix[[0, 3]] = 0.5
    with torch.no_grad():
        want = bundled.net(torch.from_numpy(x), torch.from_numpy(mix)).numpy()
    got = compiled(G.net_graph(bundled.net.config.to_dict(), state(bundled.net)))({"image": x, "mix": mix})
    assert psnr(np.clip(got["stylized"], 0, 1), np.clip(want, 0, 1), 1.0) >= 60


def test_picture_net():
    weights = {k: v for k, v in G.load_weights(arbitrary.WEIGHTS).items() if not k.startswith(arbitrary.PREDICTOR)}
    net = arbitrary.load_picture_net()
    mix = arbitrary.with_one(torch.from_numpy(arbitrary.calibration_vectors()[0]))
    x = nchw(photo(75, 101))
    with torch.no_grad():
        want = net(torch.from_numpy(x), mix).numpy()
    got = compiled(G.net_graph(arbitrary.CONFIG.to_dict(), weights))({"image": x, "mix": mix.numpy()})["stylized"]
    assert got.shape == (1, 3, 75, 101)
    assert psnr(got, want, 1.0) >= 60


def test_wrong_weights_are_one_line(random_net):
    weights = state(random_net)
    del weights["residuals.1.b.norm.bias"]
    with pytest.raises(VidstyleError, match="residuals.1.b.norm.bias"):
        G.net_graph(random_net.config.to_dict(), weights)
    with pytest.raises(VidstyleError, match="do not match"):  # 4 styles asked of a 3-style network
        G.net_graph({**random_net.config.to_dict(), "n_styles": 4}, state(random_net))


# --------------------------------------------------------------------------- predictor_graph
@pytest.mark.parametrize("hw", [(256, 256), (256, 341)])
def test_predictor(hw):
    weights = {k[len(arbitrary.PREDICTOR):]: v for k, v in G.load_weights(arbitrary.WEIGHTS).items()
               if k.startswith(arbitrary.PREDICTOR)}
    x = nchw(photo(*hw))
    with torch.no_grad():
        want = arbitrary.load_predictor()(torch.from_numpy(x)).numpy()
    got = compiled(G.predictor_graph(weights), {"picture": [1, 3, *hw]})({"picture": x})["vector"]
    assert got.shape == want.shape == (1, 100)
    assert np.abs(got - want).max() < 1e-3 * np.abs(want).max()


# --------------------------------------------------------------------------- frame_graph
def painted(model, frame: np.ndarray, work_hw, preserve_color=False, strength=1.0) -> np.ndarray:
    om = G.frame_graph(model.net.config.to_dict(), state(model.net), frame.shape[:2], work_hw,
                       preserve_color=preserve_color)
    mix = model.net.mix.numpy().astype(np.float32)
    return compiled(om)({"frames": frame[None], "mix": mix, "strength": np.array([strength], np.float32)})["painted"]


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    import cv2

    path = SHARED / "video" / "davis2016" / "blackswan" / "00000.jpg"
    if not path.is_file():
        pytest.skip(f"shared data missing: {path}")
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    return cv2.resize(rgb, (640, 360), interpolation=cv2.INTER_AREA) if rgb.shape[:2] != (360, 640) else rgb


@pytest.mark.parametrize("case", [
    {},                                                        # shrunk to the model's scale (256x455) and back
    {"max_side": 640},                                         # painted at the frame's size: no resize
    {"preserve_color": True},
    {"strength": 0.5},
])
def test_frame_graph_matches_stylizer(bundled, frame, case):
    bundled.select("udnie" if case.get("preserve_color") else bundled.styles[0])
    st = Stylizer(bundled, options=PaintOptions(engine="torch", precision="fp32", device="cpu", **case))
    work = st.work_size(*frame.shape[:2])
    assert (work == (360, 640)) == ("max_side" in case)
    want = st(frame[None])
    got = painted(bundled, frame, work, case.get("preserve_color", False), case.get("strength", 1.0))
    assert got.dtype == np.uint8 and got.shape == want.shape == (1, 360, 640, 3)
    score = psnr(got, want)
    off = np.abs(got.astype(int) - want)
    print(f"{case}: {score:.1f} dB, {np.mean(off > 0):.2%} of values differ, by at most {off.max()}")
    assert score >= 40


@pytest.mark.parametrize("hw", [(5, 7), (2, 3)])  # reflect, then edge padding up to 8x8
def test_tiny_frames(bundled, hw):
    bundled.select(bundled.styles[0])
    tiny = photo(*hw)
    st = Stylizer(bundled, options=PaintOptions(engine="torch", precision="fp32", device="cpu"))
    want = st(tiny[None])
    got = painted(bundled, tiny, hw)
    assert got.shape == (1, *hw, 3)
    assert np.abs(got.astype(int) - want).max() <= 1


def test_no_torch_import():
    code = "import sys, vidstyle.light.graph; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
