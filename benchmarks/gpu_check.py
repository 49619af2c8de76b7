"""CUDA checks of the painter on a lent GPU machine, with no PyAV there (docs/PERFORMANCE.md, "On a GPU").

On frames made from the payload's photos (benchmarks/gpu_payload.py), for the bundled model:
- the CUDA fp32 painting against the CPU fp32 one, and CUDA fp16 + channels_last against CUDA fp32
  (mean absolute difference in 0..255 and PSNR): the fast path paints the same picture;
- frames per second of ``Stylizer.__call__`` (upload, paint, download) at 1920x1080 (PyTorch engine), at the model's own
  working size (the default brush) and at full size (``max_side=1920``), batch 1 and ``auto_batch``.

Usage: python3 benchmarks/gpu_check.py PHOTOS_FOLDER OUT.json
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_quality import psnr  # noqa: E402
from vidstyle import api  # noqa: E402


def frames(folder: Path, n: int, w: int = 1920, h: int = 1080) -> np.ndarray:
    files = sorted(folder.iterdir())
    files = files[:: max(1, len(files) // n)][:n]
    out = [cv2.resize(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB), (w, h), interpolation=cv2.INTER_CUBIC)
           for f in files]
    return np.stack(out)


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    return {"mean_abs": round(float(np.abs(a.astype(np.float64) - b).mean()), 3), "psnr_db": round(psnr(a, b), 2)}


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def fps(stylizer, x: np.ndarray, batch: int, reps: int = 6) -> float:
    b = np.concatenate([x] * -(-batch // len(x)))[:batch]  # the frames repeated when the batch is larger
    for _ in range(2):
        stylizer(b)
    sync()
    t = time.perf_counter()
    for _ in range(reps):
        stylizer(b)
    sync()
    return round(reps * batch / (time.perf_counter() - t), 1)


def main() -> None:
    photos, out = Path(sys.argv[1]), Path(sys.argv[2])
    dev = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: a quick run of the script itself
    x = frames(photos, 16) if dev == "cuda" else frames(photos, 2, 320, 180)
    report = {"device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu", "torch": torch.__version__,
              "frames": list(x.shape)}
    small = np.stack([cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA) for f in x[:4]])
    cpu = api.make_stylizer(device="cpu", precision="fp32", engine="torch")(small)
    f32 = api.make_stylizer(device=dev, precision="fp32", engine="torch")(small)
    gpu = api.make_stylizer(device=dev, engine="torch")  # auto: fp16 + channels_last on CUDA
    f16 = gpu(small)
    report["precision"] = gpu.precision
    report["cuda_fp32_vs_cpu_fp32"] = compare(f32, cpu)
    report["cuda_fp16_vs_cuda_fp32"] = compare(f16, f32)
    h, w = x.shape[1:3]
    for label, kw in (("default_brush", {}), ("full_size", {"max_side": w})):
        s = api.make_stylizer(device=dev, engine="torch", **kw)
        ab = s.auto_batch(h, w)
        report[label] = {"work_size": list(s.work_size(h, w)), "fps_batch1": fps(s, x, 1),
                         f"fps_batch{ab}": fps(s, x, ab)}
    if dev == "cuda":
        report["max_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
