"""Inference engines behind the Stylizer: same pictures on torch and OpenVINO, the cache, sizes, mixes, export."""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import psnr
from vidstyle import engines, precision
from vidstyle.errors import VidstyleError
from vidstyle.models import TransformerNet, arch_config, save_model
from vidstyle.models.files import StyleModel, load_model as load_file
from vidstyle.stylizer import Stylizer

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "sample.mp4"
needs_openvino = pytest.mark.skipif(not engines.openvino_available(),
                                    reason="openvino is not installed (pip install openvino)")


@pytest.fixture(scope="module")
def sample_frames() -> np.ndarray:
    """Three frames of samples/sample.mp4 at 320x180 (N, H, W, 3) uint8."""
    import av
    import cv2

    out = []
    with av.open(str(SAMPLE)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % 15 == 0:
                out.append(cv2.resize(f.to_ndarray(format="rgb24"), (320, 180), interpolation=cv2.INTER_AREA))
            if len(out) == 3:
                break
    return np.stack(out)


@pytest.fixture(scope="module")
def bundled():
    from vidstyle.api import load_model

    return load_model()


def two_style_model(path: Path | None = None, seed: int = 1) -> StyleModel:
    """A random lite net with two styles whose norm parameters differ (random init has them all equal)."""
    torch.manual_seed(seed)
    net = TransformerNet(arch_config("lite", n_styles=2)).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.5 * torch.randn_like(p))
            elif name.endswith("norm.bias"):
                p.copy_(0.5 * torch.randn_like(p))
        net.decoder[-1].conv.weight.mul_(100)  # a picture with contrast, not flat grey
    if path is None:
        return StyleModel(net.requires_grad_(False), ["a", "b"])
    save_model(path, net, ["a", "b"])
    return load_file(path)


# ------------------------------------------------------------------ same pictures
def plain_forward(layer, x, mix):
    """ConvNorm as the paper draws it: upsample, reflection pad, conv (the reference for its faster forms)."""
    import torch.nn.functional as F
    if layer.upsample > 1:
        x = F.interpolate(x, scale_factor=layer.upsample, mode="nearest")
    x = layer.conv(layer.pad(x))
    if layer.norm is not None:
        x = layer.norm(x, mix)
    return F.relu(x) if layer.relu else x


@pytest.mark.parametrize("arch,shape", [("lite", (2, 3, 8, 12)), ("lite", (1, 3, 8, 8)), ("transformer", (1, 3, 36, 52))])
def test_fast_layer_forms_compute_the_plain_layers(arch, shape, monkeypatch):
    from vidstyle.models import transformer

    net = two_style_model().net if arch == "lite" else TransformerNet(arch_config(arch, 2)).eval()
    with torch.no_grad():
        for m in net.decoder:                       # non-zero biases and varied weights at the border
            m.conv.bias.normal_(0, 5)
    calls = []
    for name in ("upsampled_conv", "phased_conv"):  # count the fast forms' calls, through the real functions
        real = getattr(transformer, name)
        monkeypatch.setattr(transformer, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    torch.manual_seed(0)
    x = torch.rand(shape)
    for mix in (torch.tensor([1.0, 0.0]), torch.tensor([0.3, 0.7])):
        with torch.no_grad():
            fast = net(x, mix)
            with monkeypatch.context() as m:
                m.setattr(transformer.ConvNorm, "forward", plain_forward)
                ref = net(x, mix)
        assert fast.shape == ref.shape == x.shape
        assert float((fast - ref).abs().max()) < 1e-4 * max(1.0, float(ref.abs().max()))
        assert float((ref - x).abs().mean()) > 0.01  # the network does paint something
    assert calls == ["upsampled_conv", "upsampled_conv", "phased_conv"] * 2
    # and the gradients, which training follows, are the plain layers' too
    y = torch.rand(shape)
    net.requires_grad_(True)
    grads = []
    for forward in (None, plain_forward):
        net.zero_grad()
        with monkeypatch.context() as m:
            if forward:
                m.setattr(transformer.ConvNorm, "forward", forward)
            (net(x, torch.tensor([0.3, 0.7])) - y).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-3, atol=1e-6 * float(grads[1].abs().max()))


@needs_openvino
def test_openvino_bf16_matches_torch_fp32_on_the_sample(bundled, sample_frames):
    ref = Stylizer(bundled, "cpu", engine="torch", precision="fp32")(sample_frames)
    bf16 = Stylizer(bundled, "cpu", engine="openvino", precision="bf16")
    fp32 = Stylizer(bundled, "cpu", engine="openvino", precision="fp32")
    assert (bf16.engine.name, bf16.precision, fp32.precision) == ("openvino", "bf16", "fp32")
    p_bf16, p_fp32 = psnr(bf16(sample_frames), ref), psnr(fp32(sample_frames), ref)
    assert p_bf16 >= 40, p_bf16
    assert p_fp32 >= 60, p_fp32
    if precision.cpu_has_bf16():  # without bf16 maths OpenVINO runs the bf16 hint in fp32: the same picture
        assert p_fp32 >= p_bf16 + 10, (p_fp32, p_bf16)


def _needs_nncf():
    from vidstyle import quantize
    if not quantize.available():
        pytest.skip("nncf is not installed (pip install 'vidstyle[openvino]')")


@needs_openvino
def test_int8_is_quantized_close_to_fp32_and_cached(bundled, sample_frames, tmp_path, monkeypatch):
    """--precision int8: the convolutions really run quantized (FakeQuantize in the graph), every style's
    picture stays close to fp32's, and the quantized graph is made once and then read from the cache."""
    _needs_nncf()
    monkeypatch.setenv("VIDSTYLE_CACHE", str(tmp_path / "cache"))
    before = dict(engines.STATS)
    ref = Stylizer(bundled, "cpu", engine="torch", precision="fp32")
    int8 = Stylizer(bundled, "cpu", engine="auto", precision="int8")
    assert (int8.engine.name, int8.precision) == ("openvino", "int8")
    ops = [op.get_type_name() for op in int8.engine.model.get_ops()]
    assert ops.count("FakeQuantize") >= 10, ops.count("FakeQuantize")
    for style in bundled.styles:
        bundled.select(style)
        p = psnr(int8(sample_frames[:2]), ref(sample_frames[:2]))
        assert p >= 30, (style, p)
    bundled.select(bundled.styles[0])
    assert engines.STATS["quantized"] == before["quantized"] + 1
    again = Stylizer(bundled, "cpu", precision="int8")
    assert engines.STATS["quantized"] == before["quantized"] + 1 and engines.STATS["loaded"] > before["loaded"]
    assert np.array_equal(again(sample_frames[:1]), int8(sample_frames[:1]))


def test_int8_calibration_covers_every_style_without_photos():
    from vidstyle.quantize import calibration_pictures
    m = two_style_model()  # no stored paintings: synthetic pictures
    data = calibration_pictures(m, samples=6)
    assert len(data) == 6
    assert [int(d["mix"].argmax()) for d in data] == [0, 0, 0, 1, 1, 1]
    imgs = np.stack([d["image"][0] for d in data])
    assert imgs.shape == (6, 3, 256, 256) and imgs.dtype == np.float32
    assert 0 <= imgs.min() and imgs.max() <= 1 and imgs.std() > 0.1  # pictures, not flat fields
    again = calibration_pictures(m, samples=6)
    assert all(np.array_equal(a["image"], b["image"]) for a, b in zip(data, again))  # deterministic
    m.style_images = {"a": torch.full((40, 60, 3), 200, dtype=torch.uint8)}
    from_painting = calibration_pictures(m, samples=2)
    assert np.allclose(from_painting[0]["image"], 200 / 255)


def test_int8_errors_are_one_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner
    from vidstyle import quantize
    from vidstyle.cli import app
    import cv2
    img = tmp_path / "in.png"
    cv2.imwrite(str(img), np.full((32, 48, 3), 90, np.uint8))
    r = CliRunner().invoke(app, ["image", str(img), "-o", str(tmp_path / "o.png"), "--precision", "int8",
                                 "--engine", "torch"])
    assert r.exit_code == 2 and "--precision int8 runs on the OpenVINO engine" in r.output
    assert not (tmp_path / "o.png").exists()
    if engines.openvino_available():
        def missing():
            raise ImportError("no nncf")
        monkeypatch.setattr(quantize, "_import_nncf", missing)
        monkeypatch.setenv("VIDSTYLE_CACHE", str(tmp_path / "cache"))
        r = CliRunner().invoke(app, ["image", str(img), "-o", str(tmp_path / "o.png"), "--precision", "int8"])
        assert r.exit_code == 2 and "pip install 'vidstyle[openvino]'" in r.output, r.output
        assert "Traceback" not in r.output and not (tmp_path / "o.png").exists()


def test_torch_bf16_close_to_fp32(bundled, sample_frames):
    ref = Stylizer(bundled, "cpu", engine="torch", precision="fp32")
    bf16 = Stylizer(bundled, "cpu", engine="torch", precision="bf16")
    assert bf16.half and bf16.precision == "bf16" and not ref.half
    p = psnr(bf16(sample_frames[:2]), ref(sample_frames[:2]))
    assert p >= 40, p


@needs_openvino
def test_sizes_change_between_calls(bundled):
    ov = Stylizer(bundled, "cpu", engine="openvino", precision="fp32")
    ref = Stylizer(bundled, "cpu", engine="torch", precision="fp32")
    rng = np.random.default_rng(0)
    for h, w in [(48, 64), (30, 42), (64, 48), (48, 64), (20, 20), (36, 52), (12, 90)]:
        x = rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8)
        y = ov(x)
        assert y.shape == (1, h, w, 3)
        assert psnr(y, ref(x)) >= 50
    assert len(ov.engine._shapes) <= engines.SHAPES_KEPT
    x = rng.integers(0, 256, (3, 40, 56, 3), dtype=np.uint8)
    assert psnr(ov(x), ref(x)) >= 50
    # max_side changes on a live Stylizer too
    ov.max_side = 24
    assert ov(x).shape == x.shape


@needs_openvino
def test_mix_is_a_graph_input(tmp_path):
    model = two_style_model(tmp_path / "two.safetensors")
    ov = Stylizer(model, "cpu", engine="openvino", precision="fp32")
    ref = Stylizer(model, "cpu", engine="torch", precision="fp32")
    converted = engines.STATS["converted"]
    x = np.random.default_rng(1).integers(0, 256, (2, 40, 48, 3), dtype=np.uint8)
    model.select(mix={"a": 0.3, "b": 0.7})
    blend = ov(x)
    assert psnr(blend, ref(x)) >= 50
    model.select("a")
    only_a = ov(x)
    assert psnr(only_a, ref(x)) >= 50
    assert np.abs(only_a.astype(int) - blend.astype(int)).mean() > 2  # the mix really changes the picture
    assert engines.STATS["converted"] == converted  # without converting again


@needs_openvino
def test_batch_size_does_not_change_openvino_pictures(bundled, sample_frames):
    st = Stylizer(bundled, "cpu", engine="openvino", precision="bf16")
    x = sample_frames[:, :96, :128]
    one_by_one = np.concatenate([st(x[i:i + 1]) for i in range(len(x))])
    assert np.array_equal(st(x), one_by_one)


# ------------------------------------------------------------------ cache
@needs_openvino
def test_cache_is_reused_and_a_broken_entry_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDSTYLE_CACHE", str(tmp_path / "cache"))
    model = two_style_model(tmp_path / "m.safetensors", seed=3)
    before = dict(engines.STATS)
    x = np.zeros((1, 24, 32, 3), np.uint8)
    Stylizer(model, "cpu", engine="openvino", precision="bf16")(x)
    assert engines.STATS["converted"] == before["converted"] + 1
    [xml] = (tmp_path / "cache" / "openvino").glob(f"{engines.model_digest(model)[:32]}-g*/model.xml")
    mtime = xml.stat().st_mtime_ns
    blobs = list((tmp_path / "cache" / "openvino" / "blobs").glob("*.blob"))
    assert len(blobs) == 1  # compiled blob kept too
    again = Stylizer(load_file(tmp_path / "m.safetensors"), "cpu", engine="openvino", precision="bf16")
    again(x)
    assert engines.STATS["converted"] == before["converted"] + 1  # loaded, not converted
    assert engines.STATS["loaded"] == before["loaded"] + 1
    assert xml.stat().st_mtime_ns == mtime
    # the converting run compiled the graph as later runs read it: its blob is the one they reuse
    assert next(iter(again.engine._shapes.values())).compiled.get_property("LOADED_FROM_CACHE")
    assert list((tmp_path / "cache" / "openvino" / "blobs").glob("*.blob")) == blobs
    third = Stylizer(load_file(tmp_path / "m.safetensors"), "cpu", engine="openvino", precision="bf16")
    third(x)
    shape = next(iter(third.engine._shapes.values()))
    assert shape.compiled.get_property("LOADED_FROM_CACHE")
    assert not list(xml.parent.parent.glob(".*partial*")) and not list(xml.parent.parent.glob("blobs/.stage-*"))
    xml.write_text("<broken")  # a damaged entry is converted again and replaced
    Stylizer(load_file(tmp_path / "m.safetensors"), "cpu", engine="openvino", precision="fp32")(x)
    assert engines.STATS["converted"] == before["converted"] + 2
    assert xml.read_text().startswith("<?xml")


@needs_openvino
def test_cache_holds_the_weights_loaded_not_the_file_now(tmp_path, monkeypatch):
    # A model loaded, its file then rewritten with other weights: the engine built from the loaded model
    # must paint the loaded weights, and a fresh load of the file the new ones (not a stale cache entry).
    monkeypatch.setenv("VIDSTYLE_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "m.safetensors"
    old = two_style_model(path, seed=3)
    two_style_model(path, seed=4)  # same file name, same size, other weights
    new = load_file(path)
    x = np.random.default_rng(0).integers(0, 256, (1, 32, 48, 3), np.uint8)
    for model in (old, new, old):
        ov = Stylizer(model, "cpu", engine="openvino", precision="fp32")(x)
        ref = Stylizer(model, "cpu", engine="torch", precision="fp32")(x)
        assert np.abs(ov.astype(int) - ref).max() <= 2
    assert np.abs(Stylizer(old, "cpu", engine="torch", precision="fp32")(x).astype(int)
                  - Stylizer(new, "cpu", engine="torch", precision="fp32")(x)).mean() > 5


def test_digest_of_a_model_without_a_file():
    a, b = two_style_model(seed=5), two_style_model(seed=5)
    assert engines.model_digest(a) == engines.model_digest(b)
    assert engines.model_digest(a) != engines.model_digest(two_style_model(seed=6))
    b.style_images = {"a": torch.zeros(8, 8, 3, dtype=torch.uint8)}  # int8 calibrates on the stored paintings
    assert engines.model_digest(a) != engines.model_digest(b)


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VIDSTYLE_CACHE", str(tmp_path / "v"))
    assert engines.cache_root() == tmp_path / "v"
    monkeypatch.delenv("VIDSTYLE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert engines.cache_root() == tmp_path / "x" / "vidstyle"


# ------------------------------------------------------------------ choice and errors
def test_openvino_missing_is_one_clear_error(bundled, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(VidstyleError, match="pip install openvino"):
        Stylizer(bundled, "cpu", engine="openvino")
    assert Stylizer(bundled, "cpu").engine.name == "torch"  # auto falls back


def test_bad_engine_and_precision(bundled):
    with pytest.raises(VidstyleError, match="--engine"):
        Stylizer(bundled, "cpu", engine="tensorrt")
    with pytest.raises(VidstyleError, match="fp16"):
        Stylizer(bundled, "cpu", precision="fp16")
    with pytest.raises(VidstyleError, match="CPU"):
        engines.make_engine(bundled, torch.device("cuda"), "openvino")


def test_int8_probe_agrees_with_the_cpu_flags():
    """Live mode's int8 goes with AVX2 (torch's probe); on Linux the kernel's flags say the same."""
    from vidstyle.precision import cpu_runs_int8

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file() or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the flags are read from /proc/cpuinfo on x86 Linux")
    assert cpu_runs_int8() == (" avx2 " in cpuinfo.read_text().replace("\n", " "))


@pytest.mark.parametrize("bf16", [False, True])
def test_auto_choice_and_half(bundled, monkeypatch, bf16):
    """What auto picks, for a CPU with and without bf16 maths and with int8 paying or not: set here, not read
    from the machine, so every branch is checked on any CPU."""
    from vidstyle import precision

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: bf16)
    half = "bf16" if bf16 else "fp32"
    st = Stylizer(bundled, "cpu")
    assert st.engine.name == ("openvino" if engines.openvino_available() else "torch")
    assert st.precision == half  # files: full quality, int8 or not
    from vidstyle import quantize

    for avx2 in (False, True):  # int8 pays on x86 CPUs with AVX2, when NNCF is installed
        monkeypatch.setattr(precision, "cpu_runs_int8", lambda avx2=avx2: avx2)
        int8 = avx2 and engines.openvino_available() and quantize.installed()
        live = Stylizer(bundled, "cpu", realtime=True)  # live: the frame rate first
        assert live.precision == ("int8" if int8 else half), avx2
        assert Stylizer(bundled, "cpu", engine="torch", realtime=True).precision == half  # int8 is OpenVINO's
    assert Stylizer(bundled, "cpu", engine="torch", half=False).precision == "fp32"
    assert Stylizer(bundled, "cpu", engine="torch", half=True).precision == "bf16"
    monkeypatch.setenv("VIDSTYLE_INT8", "0")  # the switch for int8 under live's --precision auto (AVX2 here)
    assert Stylizer(bundled, "cpu", realtime=True).precision == half


# ------------------------------------------------------------------ smallest sizes (issue 13)
@pytest.mark.parametrize("engine", ["torch", pytest.param("openvino", marks=needs_openvino)])
@pytest.mark.parametrize("size", [(1, 1), (2, 2), (2, 5), (4, 4), (7, 3)])
def test_tiny_frames(bundled, engine, size):
    h, w = size
    x = np.random.default_rng(h * 10 + w).integers(0, 256, (2, h, w, 3), dtype=np.uint8)
    st = Stylizer(bundled, "cpu", engine=engine, precision="fp32")
    y = st(x)
    assert y.shape == x.shape and y.dtype == np.uint8
    if engine == "openvino" and h * w > 1:
        # (a 1x1 frame reaches the network as one flat colour, which instance norm cannot tell from each
        # engine's rounding noise: there the engines' pictures differ, as they may for any flat frame)
        ref = Stylizer(bundled, "cpu", engine="torch", precision="fp32")(x)
        assert np.abs(y.astype(int) - ref.astype(int)).max() <= 1


def test_tiny_frames_with_max_side_and_out_size(bundled):
    st = Stylizer(bundled, "cpu", engine="torch", max_side=3, out_size=(5, 2))
    assert st(np.full((1, 40, 30, 3), 128, np.uint8)).shape == (1, 2, 5, 3)


# ------------------------------------------------------------------ export
def test_export_onnx_runs_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    onnx = pytest.importorskip("onnx", reason="onnx is not installed")
    from vidstyle.export import export_model

    model = two_style_model(tmp_path / "two.safetensors", seed=7)
    path = export_model(model, tmp_path / "two.onnx")
    assert path == tmp_path / "two.onnx" and not list(tmp_path.glob(".*partial*"))
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["vidstyle.styles"] == '["a", "b"]' and '"lite"' in meta["vidstyle.arch"]
    assert meta["vidstyle.mix"] == "[1.0, 0.0]"  # the style exported (the first by default)
    assert "mix" in proto.doc_string and "image" in proto.doc_string
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image", "mix"]
    mix = torch.tensor([0.3, 0.7])
    for shape in [(1, 3, 32, 48), (2, 3, 30, 43)]:  # dynamic batch and sizes, not multiples of 4 too
        x = torch.rand(shape, generator=torch.Generator().manual_seed(shape[2]))
        y = sess.run(None, {"image": x.numpy(), "mix": mix.numpy()})[0]
        with torch.no_grad():
            ref = model.net(x, mix).numpy()
        assert y.shape == ref.shape
        assert np.abs(y - ref).max() < 1e-3
        assert psnr(np.clip(y, 0, 1), np.clip(ref, 0, 1), peak=1.0) >= 40


@needs_openvino
def test_export_openvino_ir(tmp_path):
    import openvino as ov

    from vidstyle.export import export_model

    model = two_style_model(tmp_path / "two.safetensors", seed=8)
    xml = export_model(model, tmp_path / "two.xml", "openvino")
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    om = ov.Core().read_model(str(xml))
    assert om.get_rt_info(["vidstyle", "styles"]).astype(str) == '["a", "b"]'
    compiled = ov.Core().compile_model(om, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    x, mix = torch.rand(1, 3, 30, 41), torch.tensor([0.5, 0.5])
    y = compiled([x.numpy(), mix.numpy()])[0]
    with torch.no_grad():
        assert np.abs(y - model.net(x, mix).numpy()).max() < 1e-3


def test_export_bad_path_or_format(tmp_path, bundled):
    from vidstyle.export import export_model

    with pytest.raises(VidstyleError, match="onnx or openvino"):
        export_model(bundled, tmp_path / "m.onnx", "tflite")
    with pytest.raises(VidstyleError, match="cannot tell"):
        export_model(bundled, tmp_path / "m.pt")
    with pytest.raises(VidstyleError, match=r"\*\.xml"):
        export_model(bundled, tmp_path / "m.onnx", "openvino")
    with pytest.raises(VidstyleError, match="does not exist"):
        export_model(bundled, tmp_path / "missing" / "m.onnx")
    (tmp_path / "d.onnx").mkdir()
    with pytest.raises(VidstyleError, match="directory"):
        export_model(bundled, tmp_path / "d.onnx")
    with pytest.raises(VidstyleError, match="loaded vidstyle model"):
        export_model("starry_night", tmp_path / "m.onnx")


@needs_openvino
def test_direct_conversion_route_when_onnx_export_fails(monkeypatch):
    """Without the in-memory ONNX route, openvino.convert_model on the module gives the same graph."""
    import openvino as ov

    from vidstyle import torch_export as export

    def no_onnx(*a, **k):
        raise RuntimeError("no ONNX exporter here")

    monkeypatch.setattr(export, "to_onnx_bytes", no_onnx)
    model = two_style_model(seed=9)
    om = export.to_openvino(model.net, pad=False)
    assert [p.get_any_name() for p in om.inputs] == ["image", "mix"]
    compiled = ov.Core().compile_model(om, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    x, mix = torch.rand(2, 3, 24, 32), torch.tensor([0.2, 0.8])
    with torch.no_grad():
        assert np.abs(compiled([x.numpy(), mix.numpy()])[0] - model.net(x, mix).numpy()).max() < 1e-3


@needs_openvino
def test_two_processes_filling_the_cache_at_once(tmp_path):
    """Both runs work and leave one complete entry: every cache write is a rename of a finished file."""
    import subprocess

    two_style_model(tmp_path / "m.safetensors", seed=11)
    code = ("import sys, numpy as np; from vidstyle.models.files import load_model; "
            "from vidstyle.stylizer import Stylizer; "
            "st = Stylizer(load_model(sys.argv[1]), 'cpu', engine='openvino'); "
            "print(st(np.zeros((1, 20, 28, 3), np.uint8)).shape)")
    env = {**os.environ, "VIDSTYLE_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "m.safetensors")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and "(1, 20, 28, 3)" in out, err
    root = tmp_path / "cache" / "openvino"
    entries = [p for p in root.iterdir() if p.name != "blobs"]
    assert len(entries) == 1 and not entries[0].name.startswith(".")
    assert {p.name for p in entries[0].iterdir()} == {"model.xml", "model.bin", "source.json"}
    assert not list((root / "blobs").glob(".stage-*"))
    # and a third process reads it
    p = subprocess.run([sys.executable, "-c", code + "; from vidstyle import engines; print(engines.STATS)",
                        str(tmp_path / "m.safetensors")], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "'converted': 0" in p.stdout and "'quantized': 0" in p.stdout, p.stderr


# -- brush scale: strokes as large as in training, whatever the resolution ------------------------------
def test_working_size_follows_the_model_scale():
    from vidstyle.models.files import model_scale
    from vidstyle.stylizer import working_size
    assert working_size(1080, 1920, scale=256) == (256, 455)
    assert working_size(360, 640, scale=256) == (256, 455)
    assert working_size(2160, 3840, scale=256) == (256, 455)  # 4K: the same strokes relative to the frame
    assert working_size(200, 300, scale=256) == (200, 300)  # never enlarged
    assert working_size(1080, 1920, scale=256, brush=0.5) == (512, 910)  # half-size strokes
    assert working_size(1080, 1920, scale=256, brush=2) == (128, 228)
    assert working_size(1080, 1920, scale=256, max_side=960) == (540, 960)  # --max-side wins
    assert working_size(1080, 1920, scale=None) == (1080, 1920)  # an unknown scale: full size
    assert model_scale({"scale": 256, "size": 128}) == 256
    assert model_scale({"size": 128}) == 147  # older files: 1.15 x the training crop
    assert model_scale({}) is None


def test_stylizer_paints_at_the_working_size(monkeypatch):
    from vidstyle.api import load_model
    from vidstyle.errors import VidstyleError
    from vidstyle.stylizer import Stylizer
    model = load_model("starry_night")
    model.training = {**model.training, "scale": 64}
    seen = []
    st = Stylizer(model, "cpu", engine="torch")
    real = st.engine
    monkeypatch.setattr(st, "engine", lambda x, mix: seen.append(tuple(x.shape[-2:])) or real(x, mix))
    out = st(np.zeros((1, 180, 320, 3), np.uint8))
    assert out.shape == (1, 180, 320, 3) and seen == [(64, 116)]  # painted at the model's scale, sent back full size
    with pytest.raises(VidstyleError, match="--brush"):
        Stylizer(model, "cpu", engine="torch", brush=0)


def test_export_records_the_style_chosen_and_takes_any_case_of_suffix(tmp_path):
    """`vidstyle export the_scream -o scream.onnx` gives a graph that says which mix paints the_scream; an
    upper-case .XML is an OpenVINO IR like .xml (OpenVINO itself insists on the lower case)."""
    from typer.testing import CliRunner
    from vidstyle.cli import app
    from vidstyle.export import export_model
    model = two_style_model(tmp_path / "two.safetensors", seed=7)
    model.select("b")
    onnx = pytest.importorskip("onnx", reason="onnx is not installed")
    meta = {p.key: p.value for p in onnx.load(str(export_model(model, tmp_path / "b.onnx"))).metadata_props}
    assert json.loads(meta["vidstyle.mix"]) == [0.0, 1.0]
    if importlib.util.find_spec("openvino") is not None:
        r = CliRunner().invoke(app, ["export", str(tmp_path / "two.safetensors"), "-o", str(tmp_path / "OUT.XML")])
        assert r.exit_code == 0, r.output
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("OUT")) == ["OUT.XML", "OUT.bin"]
        assert not list(tmp_path.glob(".*partial*"))


def test_resize_antialiases_when_only_the_width_shrinks():
    """Thin bright lines, narrowed 6 times while the height stays: the mean brightness must stay (bilinear
    sampling without antialias picks whichever columns it lands on)."""
    from vidstyle.stylizer import resize
    x = torch.zeros(1, 3, 60, 960)
    x[..., ::6] = 1.0
    x[..., 1::6] = 1.0  # 2-px lines every 6 px: mean 1/3
    for hw in [(60, 160), (61, 160), (30, 160)]:
        assert abs(float(resize(x, hw).mean()) - 1 / 3) < 0.02, hw


@needs_openvino
def test_a_killed_conversion_leaves_nothing_for_long(tmp_path, monkeypatch):
    """Staging folders of a run killed while converting are removed by a later conversion once an hour old."""
    monkeypatch.setenv("VIDSTYLE_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "cache" / "openvino"
    root.mkdir(parents=True)
    old, fresh = root / ".abc-g1.partial-xyz", root / ".def-g1.old-1-2"
    for d in (old, fresh):
        d.mkdir()
        (d / "model.bin").write_bytes(b"0" * 100)
    os.utime(old, (1, 1))
    Stylizer(two_style_model(tmp_path / "m.safetensors", seed=5), "cpu", engine="openvino", precision="bf16")
    assert not old.exists() and fresh.exists()  # a fresh one may be another process's, at work now
