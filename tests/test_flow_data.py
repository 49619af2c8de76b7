"""Flow for training and stabilisation: .flo files, flow direction on real motion, the flow cache of
VideoPairs, frame folders, RAFT (random weights, CPU) in the stabiliser, weights without pickle,
and the pipeline's one-output-per-input rule."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from vidstyle.errors import VidstyleError
from vidstyle.flow import DISFlow, RAFTFlow, raft_weights_path, raft_work_size, read_flo, to_tensor, write_flo
from vidstyle.frames import frame_files
from vidstyle.warp import warp


# ---------------------------------------------------------------- helpers

def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(h, w, 3) uint8 smooth random texture: DIS tracks it well."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


SHIFTS = [2, 6, 10]  # an accelerating pan: the content moves left by 2, then 6, then 10 px


def pan_frames(h: int = 96, w: int = 128, shifts=SHIFTS) -> list[np.ndarray]:
    """Frames (h, w, 3) uint8 of a camera panning right: frame t pixel x = frame t-1 pixel x + shifts[t-1],
    so the flow warping frame t-1 onto frame t is (+shifts[t-1], 0) everywhere."""
    offsets = np.concatenate([[0], np.cumsum(shifts)])
    big = texture(h, w + int(offsets[-1]))
    return [np.ascontiguousarray(big[:, o:o + w]) for o in offsets]


def save_frames(folder: Path, frames: list[np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:05d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))


def save_video(path: Path, frames: list[np.ndarray]) -> None:
    """A lossless-luma H.264 clip of ``frames``."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.time_base = Fraction(1, 25)
        v.options = {"preset": "ultrafast", "crf": "0"}
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            out.mux(v.encode(vf))
        out.mux(v.encode(None))


def interior_dx(flow: np.ndarray, margin: int = 16) -> tuple[float, float]:
    """Median (dx, dy) of an (H, W, 2) flow away from the borders (the right edge is disoccluded)."""
    core = flow[margin:-margin, margin:-margin]
    return float(np.median(core[..., 0])), float(np.median(core[..., 1]))


def tiny_raft(calls: list | None = None) -> torch.nn.Module:
    """torchvision's RAFT-small with random weights (nothing downloaded); records input shapes in ``calls``."""
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    model = raft_small(weights=None)
    if calls is not None:
        model.register_forward_pre_hook(lambda m, args: calls.append(tuple(args[0].shape)))
    return model


class CountingFlow:
    """A flow estimator that counts its calls and returns zero flow."""

    tag = "counting"

    def __init__(self):
        self.calls = 0

    def __call__(self, target: np.ndarray, source: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.zeros(target.shape[:2] + (2,), np.float32)


# ---------------------------------------------------------------- .flo files (OpenCV's reader and writer)

def test_flo_files_match_the_middlebury_layout_of_ruder_deepflow(tmp_path):
    from conftest import shared
    p = shared("video/artistic_videos_example/marple8/backward_2_1.flo")
    raw = p.read_bytes()
    w, h = np.frombuffer(raw[4:12], "<i4")
    expected = np.frombuffer(raw[12:], "<f4").reshape(h, w, 2)
    flow = read_flo(p)
    assert flow.dtype == np.float32 and np.array_equal(flow, expected)
    write_flo(tmp_path / "back.flo", flow)
    assert (tmp_path / "back.flo").read_bytes() == raw  # byte for byte


def test_bad_flo_files_are_clear_errors(tmp_path):
    (tmp_path / "bad.flo").write_bytes(b"not a flow file at all")
    with pytest.raises(VidstyleError, match="not a .flo"):
        read_flo(tmp_path / "bad.flo")
    write_flo(tmp_path / "ok.flo", np.zeros((4, 5, 2), np.float32))
    (tmp_path / "cut.flo").write_bytes((tmp_path / "ok.flo").read_bytes()[:40])
    with pytest.raises(VidstyleError):
        read_flo(tmp_path / "cut.flo")
    with pytest.raises(VidstyleError, match="not found"):
        read_flo(tmp_path / "missing.flo")


# ---------------------------------------------------------------- flow direction on real motion

def test_flow_direction_on_a_real_pan():
    """estimate(target=cur, source=prev) warps prev onto cur; the swapped call must not."""
    from conftest import shared
    photo = cv2.cvtColor(cv2.imread(str(shared("content/bsds500/100007.jpg"))), cv2.COLOR_BGR2RGB)
    h, w, dx, dy = 160, 200, 7, 3
    prev = np.ascontiguousarray(photo[40:40 + h, 40:40 + w])
    cur = np.ascontiguousarray(photo[40 + dy:40 + dy + h, 40 + dx:40 + dx + w])  # camera moved right and down
    est = DISFlow("medium")
    img = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255  # noqa: E731

    def error(flow: np.ndarray) -> float:
        warped, inside = warp(img(prev), to_tensor(flow))
        core = (slice(None), slice(None), slice(16, -16), slice(16, -16))
        return float(((warped - img(cur)).abs() * inside)[core].mean())

    right, swapped = est(cur, prev), est(prev, cur)
    assert interior_dx(right) == pytest.approx((dx, dy), abs=0.5)
    assert error(right) < 0.02, error(right)
    assert error(swapped) > 3 * error(right), (error(swapped), error(right))


# ---------------------------------------------------------------- frame folders

def test_frame_files_skip_ruder_side_files(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"clip_{i + 1:02d}.jpg"), np.full((8, 10, 3), 40 * i, np.uint8))
    for name in ("reliable_1_2.png", "reliable_2_1.png", "reliable_2_3.png", "reliable_3_2.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 10), np.uint8))
    for name in ("backward_2_1.flo", "forward_1_2.flo"):
        write_flo(tmp_path / name, np.zeros((8, 10, 2), np.float32))
    (tmp_path / "sub").mkdir()
    cv2.imwrite(str(tmp_path / "sub" / "clip_00.jpg"), np.zeros((8, 10, 3), np.uint8))  # another folder's frame
    assert [p.name for p in frame_files(tmp_path)] == ["clip_01.jpg", "clip_02.jpg", "clip_03.jpg"]


def test_frame_files_in_frame_order_and_one_type_under_two_spellings(tmp_path):
    """ffmpeg's %d.png names (1, 2, .. 10) in number order, not text order; .jpg and .jpeg are one type;
    macOS ._ side files are not frames."""
    numbered = tmp_path / "numbered"
    numbered.mkdir()
    for i in (1, 2, 10, 11, 3):
        cv2.imwrite(str(numbered / f"{i}.png"), np.full((8, 10, 3), i, np.uint8))
    (numbered / "._1.png").write_bytes(b"\0" * 40)
    assert [p.name for p in frame_files(numbered)] == ["1.png", "2.png", "3.png", "10.png", "11.png"]
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i, suffix in enumerate((".jpg", ".jpg", ".jpeg", ".JPEG", ".jpg", ".png")):
        cv2.imwrite(str(mixed / f"f{i:03d}{suffix}"), np.full((8, 10, 3), i, np.uint8))
    assert [p.name for p in frame_files(mixed)] == ["f000.jpg", "f001.jpg", "f002.jpeg", "f003.JPEG", "f004.jpg"]


def test_a_damaged_flo_header_is_one_line_not_a_huge_allocation(tmp_path):
    import struct
    write_flo(tmp_path / "good.flo", np.ones((5, 7, 2), np.float32))
    good = (tmp_path / "good.flo").read_bytes()
    bad = {"huge": b"PIEH" + struct.pack("<ii", 100000, 100000), "negative": b"PIEH" + struct.pack("<ii", -5, 3),
           "truncated": good[:40], "header": good[:12], "magic": b"XXXX" + good[4:]}
    for name, data in bad.items():
        (tmp_path / f"{name}.flo").write_bytes(data)
        with pytest.raises(VidstyleError, match="not a .flo file"):
            read_flo(tmp_path / f"{name}.flo")
    assert read_flo(tmp_path / "good.flo").shape == (5, 7, 2)


def test_marple8_has_five_frames():
    from conftest import shared
    folder = shared("video/artistic_videos_example/marple8")
    assert [p.name for p in frame_files(folder)] == [f"marple8_{i:02d}.jpg" for i in range(1, 6)]


def test_video_pairs_train_only_on_frames(tmp_path):
    from vidstyle.train.data import VideoPairs
    seq = tmp_path / "seq"
    save_frames(seq, pan_frames(64, 80, [2, 2]))
    for name in ("reliable_1_2.png", "reliable_2_1.png", "reliable_2_3.png"):
        cv2.imwrite(str(seq / name), np.zeros((64, 80), np.uint8))
    write_flo(seq / "backward_2_1.flo", np.zeros((64, 80, 2), np.float32))
    vp = VideoPairs(tmp_path, 64)
    assert len(vp.sequences) == 1 and len(vp.sequences[0]) == 3 and len(vp.pairs) == 2


# ---------------------------------------------------------------- VideoPairs' flow cache

def check_pan_flows(vp, shifts, tol, reopen=None):
    """Every pair's cached flow is the true motion of that pair; a second reader of the cache
    (VideoPairs on ``reopen``, default the same folder) gets the same flows without computing any."""
    from vidstyle.train.data import VideoPairs
    assert len(vp.pairs) == len(shifts)
    got = {}
    for (s, t), shift in zip(vp.pairs, shifts):
        flow, mask = vp.flows(s, t)
        assert flow.shape == vp.sequences[s][t].shape[:2] + (2,) and mask.shape == flow.shape[:2]
        assert interior_dx(flow) == pytest.approx((shift, 0), abs=tol), (t, interior_dx(flow))
        got[s, t] = flow
    files = sorted(vp.cache_root.glob("*.flo"))
    assert len(files) == 2 * len(shifts)  # one file per direction and pair, none shared

    class Refuses:
        tag = vp.flow.tag

        def __call__(self, *a):
            raise AssertionError("the cache should have been read")

    again = VideoPairs(reopen or vp.cache_root.parent, vp.size, flow=Refuses())
    for key, flow in got.items():
        assert np.array_equal(again.flows(*key)[0], flow)


def test_video_pairs_cache_a_dotted_frame_folder(tmp_path):
    from vidstyle.train.data import VideoPairs
    save_frames(tmp_path / "seq.v1", pan_frames())
    vp = VideoPairs(tmp_path, 96)
    assert vp.names == ["seq.v1"]
    check_pan_flows(vp, SHIFTS, tol=0.5)


def test_video_pairs_cache_a_video_file(tmp_path):
    from vidstyle.train.data import VideoPairs
    save_video(tmp_path / "clip.mp4", pan_frames())
    vp = VideoPairs(tmp_path, 96)
    assert vp.names == ["clip.mp4"]
    check_pan_flows(vp, SHIFTS, tol=0.75, reopen=tmp_path / "clip.mp4")  # the folder, then the file itself


def test_video_pairs_cache_key_has_size_and_flow_settings(tmp_path):
    from vidstyle.train.data import VideoPairs
    save_frames(tmp_path / "seq", pan_frames(64, 80, [2, 2]))
    a = VideoPairs(tmp_path, 64)
    b = VideoPairs(tmp_path, 64, flow=DISFlow("fast"))
    c = VideoPairs(tmp_path, 48)
    names = {vp.cache_paths(0, 1)[0] for vp in (a, b, c)} | {a.cache_paths(0, 2)[0]}
    assert len(names) == 4


def test_video_pairs_flow_choice(tmp_path, monkeypatch):
    from vidstyle.train.data import VideoPairs
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    save_frames(tmp_path / "data" / "seq", pan_frames(64, 80, [2]))
    with pytest.raises(VidstyleError, match="RAFT weights are not cached"):
        VideoPairs(tmp_path / "data", 64, flow="raft")
    with pytest.raises(VidstyleError, match="--flow"):
        VideoPairs(tmp_path / "data", 64, flow="farneback")
    calls = []
    vp = VideoPairs(tmp_path / "data", 64, flow=RAFTFlow("cpu", model=tiny_raft(calls), num_flow_updates=1))
    flow, mask = vp.flows(0, 1)
    assert flow.shape == (64, 80, 2) and len(calls) == 2 and "raft" in vp.cache_paths(0, 1)[0].name


# ---------------------------------------------------------------- RAFT in the stabiliser

def test_raft_work_size():
    assert raft_work_size(1080, 1920) == (720, 1280)       # at most about 720p
    assert raft_work_size(2160, 3840) == (720, 1280)
    assert raft_work_size(1080, 1920, max_side=960) == (544, 960)  # the painting size
    assert raft_work_size(40, 56) == (128, 176)            # never under 128 px, multiples of 8
    assert raft_work_size(480, 640) == (480, 640)


def test_raft_flow_is_scaled_back_to_the_frame():
    class Constant(torch.nn.Module):
        """A 'RAFT' that answers a flow of (1, 2) px at the size it is given."""

        def forward(self, a, b, num_flow_updates=12):
            f = torch.ones(a.shape[0], 2, *a.shape[-2:])
            f[:, 1] = 2
            return [f]

    est = RAFTFlow("cpu", model=Constant())
    out = est.batch(torch.rand(2, 3, 40, 56), torch.rand(2, 3, 40, 56))  # RAFT runs at 128 x 176
    assert out.shape == (2, 2, 40, 56)
    assert torch.allclose(out[:, 0], torch.tensor(56 / 176)) and torch.allclose(out[:, 1], torch.tensor(2 * 40 / 128))
    assert est.batch(torch.rand(0, 3, 40, 56), torch.rand(0, 3, 40, 56)).shape == (0, 2, 40, 56)


@pytest.mark.parametrize("h, w", [(40, 56), (120, 144)])
def test_stabilizer_with_raft_from_a_single_frame_batch(h, w):
    """A first batch of one frame, small frames, one pair per RAFT call (run as Stylizer.paint_frames does)."""
    from vidstyle.temporal import Stabilizer
    calls = []
    stab = Stabilizer(strength=0.8, flow=RAFTFlow("cpu", model=tiny_raft(calls), num_flow_updates=1))
    frames = pan_frames(h, w, [2] * 4)
    pairs = 0
    for batch in ([0], [1, 2, 3], [4]):
        rgb = np.stack([frames[i] for i in batch])
        pending = stab.begin(rgb)
        x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255
        y = (x + 0.05 * torch.rand(x.shape, generator=torch.Generator().manual_seed(batch[0]))).clamp(0, 1)
        out = stab(x, y, pending)
        assert out.shape == x.shape and torch.isfinite(out).all()
        pairs += len(batch) - (batch[0] == 0)
    assert len(calls) == 2 * pairs == 8  # forward and backward flow of each pair, one pair per call
    for n, c, rh, rw in calls:
        assert n == 1 and rh >= 128 and rw >= 128 and rh % 8 == 0 and rw % 8 == 0


def test_stabilizer_computes_raft_at_the_painting_size():
    from vidstyle.temporal import Stabilizer
    calls = []
    stab = Stabilizer(strength=0.8, flow=RAFTFlow("cpu", model=tiny_raft(calls), num_flow_updates=1), max_side=176)
    x = torch.rand(2, 3, 200, 300)
    out = stab(x, x.clone())
    assert out.shape == x.shape
    assert calls == [(1, 3, 128, 192)] * 2  # 300 -> 176 wide would be under 128 high: 128 x 192


# ---------------------------------------------------------------- strength 0: no flows

def test_no_flow_is_started_while_the_stabilizer_is_off():
    from vidstyle.temporal import Stabilizer
    flow = CountingFlow()
    frames = pan_frames(32, 40, [1] * 5)
    for stab in (Stabilizer(strength=0, flow=flow), Stabilizer(strength=0.7, flow=flow)):
        stab.enabled = stab.strength == 0  # off by strength 0, or switched off
        for i in range(0, 6, 2):
            rgb = np.stack(frames[i:i + 2])
            pending = stab.begin(rgb)
            x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255
            assert pending is None and stab(x, x, pending) is x
        stab._pool.shutdown(wait=True)  # anything submitted would have run by now
    assert flow.calls == 0


def test_flows_begun_before_turning_off_are_awaited():
    from vidstyle.temporal import Stabilizer
    flow = CountingFlow()
    stab = Stabilizer(strength=0.7, flow=flow)
    rgb = np.stack(pan_frames(32, 40, [1])[:2])
    pending = stab.begin(rgb)
    stab.strength = 0
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255
    stab(x, x, pending)
    assert pending.done()


# ---------------------------------------------------------------- weights without pickle

CALLED = []


def _record():
    CALLED.append(1)
    return "ran"


class Trap:
    """Unpickling this runs ``_record``: a stand-in for code hidden in a weights file."""

    def __reduce__(self):
        return (_record, ())


def test_raft_weights_load_from_the_cache_without_pickle(tmp_path, monkeypatch):
    from torchvision.models.optical_flow import raft_small
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = raft_weights_path("small")
    with pytest.raises(VidstyleError, match="not cached"):
        RAFTFlow("cpu", model="small")
    path.parent.mkdir(parents=True)
    torch.manual_seed(1)
    state = raft_small(weights=None).state_dict()
    torch.save(state, path)
    est = RAFTFlow("cpu", model="small")
    assert all(torch.equal(v, state[k]) for k, v in est.model.state_dict().items())
    torch.save({"weights": Trap()}, path)
    with pytest.raises(VidstyleError, match="is not torchvision's RAFT"):
        RAFTFlow("cpu", model="small")
    assert CALLED == []


def test_vgg_weights_load_from_the_cache_without_pickle(tmp_path, monkeypatch):
    from torchvision.models import VGG16_Weights

    from vidstyle.train.lossnet import CHANNELS, _TV_INDEX, load_loss_net
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*a, **k):
        raise OSError("no network here")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(VidstyleError, match="cannot get torchvision's VGG16 weights"):
        load_loss_net("torchvision")
    path = tmp_path / "hub" / "checkpoints" / VGG16_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    assert not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    state = {}
    for i, (cin, cout) in zip(_TV_INDEX, CHANNELS):  # torchvision's vgg16().features.N keys, half size
        state[f"features.{i}.weight"] = (torch.randn(cout, cin, 3, 3, generator=g) * 0.01).half()
        state[f"features.{i}.bias"] = torch.randn(cout, generator=g).half()
    torch.save(state, path)
    net = load_loss_net("torchvision")
    assert torch.equal(net.convs["conv4_3"].weight, state["features.21.weight"].float())
    torch.save({"features.0.weight": Trap()}, path)
    with pytest.raises(VidstyleError, match="is not torchvision's VGG16 weights"):
        load_loss_net("torchvision")
    assert CALLED == []


# ---------------------------------------------------------------- pipeline: one output per input

@pytest.mark.parametrize("process", [lambda b: b[:-1], lambda b: b + b[:1]])
def test_pipeline_refuses_a_stage_that_drops_or_adds_frames(process):
    from vidstyle.pipeline import run_stages
    with pytest.raises(RuntimeError, match="outputs for a batch of 2 inputs"):
        list(run_stages(range(5), process, batch_size=2))


def test_pipeline_keeps_every_frame():
    from vidstyle.pipeline import run_stages
    assert list(run_stages(range(5), lambda b: [v * 10 for v in b], batch_size=2)) == [(i, i * 10) for i in range(5)]
