"""What a training run shows of itself in its RUN_DIR: preview pictures, the CSV log kept in step with checkpoints,
and the durations of its status lines."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import torch


def hms(seconds: float) -> str:
    """Seconds -> "1h05m" or "4m30s"."""
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def grid(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [0, 1] -> (H, N*W, 3) uint8: the pictures side by side."""
    return (images.clamp(0, 1) * 255).round().byte().permute(2, 0, 3, 1).reshape(images.shape[2], -1, 3).cpu().numpy()


def write_preview(run_dir: Path, step: int, rows: list[torch.Tensor]) -> Path:
    """``rows`` ((N, 3, H, W) each: the photos, then each style's paintings of them) as one picture, written to
    RUN_DIR/preview.png and RUN_DIR/preview_STEP.png; returns the first."""
    bgr = cv2.cvtColor(np.concatenate([grid(r) for r in rows], 0), cv2.COLOR_RGB2BGR)
    path = run_dir / "preview.png"
    cv2.imwrite(str(path), bgr)
    cv2.imwrite(str(run_dir / f"preview_{step:06d}.png"), bgr)
    return path


def trim_log(log_path: Path, step: int) -> None:
    """On resume, drop the log's rows after ``step`` (the checkpoint's: they are about to be trained again)."""
    with open(log_path, newline="") as fh:
        rows = list(csv.reader(fh))
    keep = rows[:1] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= step]
    with open(log_path, "w", newline="") as fh:
        csv.writer(fh).writerows(keep)
