"""Model-only speed of the inference engines on this machine: frames per second, network alone.

    python benchmarks/engines.py                       # lite and transformer, 640x360 and 320x240, batch 1
    python benchmarks/engines.py --quick               # fewer repeats
    python benchmarks/engines.py --batch 4             # batches: OpenVINO throughput streams vs one request

Variants: torch fp32, torch bf16 (autocast; only where the CPU has native bf16), OpenVINO fp32 and
bf16 (``INFERENCE_PRECISION_HINT``), ONNX Runtime fp32 (when installed). Networks have random
weights (speed does not depend on them). The variants are interleaved: each repeat times every
variant once, in turn, and the table gives the median, so a load that comes and goes (another
job on the machine) hits all of them alike; compare ratios within one run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vidstyle import engines  # noqa: E402
from vidstyle.models import TransformerNet, arch_config  # noqa: E402
from vidstyle.models.files import StyleModel  # noqa: E402
from vidstyle.precision import cpu_has_bf16  # noqa: E402


def variants(model: StyleModel, batch: int) -> dict:
    """name -> callable(x (N,3,H,W) float tensor, mix) for every engine usable here."""
    cpu = torch.device("cpu")
    out = {"torch fp32": engines.TorchEngine(model, cpu, None)}
    if cpu_has_bf16():
        out["torch bf16"] = engines.TorchEngine(model, cpu, torch.bfloat16)
    if engines.openvino_available():
        out["openvino fp32"] = engines.OpenVINOEngine(model, None)
        out["openvino bf16"] = engines.OpenVINOEngine(model, torch.bfloat16)
        if batch > 1:
            for mode in ("frames", "latency", "throughput"):
                out[f"openvino bf16 {mode}"] = engines.OpenVINOEngine(model, torch.bfloat16, batch_mode=mode)
    try:
        import onnxruntime as ort

        from vidstyle.torch_export import to_onnx_bytes

        sess = ort.InferenceSession(to_onnx_bytes(model.net, pad=False), providers=["CPUExecutionProvider"])

        def run_ort(x, mix):
            return torch.from_numpy(sess.run(None, {"image": x.numpy(), "mix": mix.numpy()})[0])

        out["onnxruntime fp32"] = run_ort
    except ImportError:
        pass
    return out


def bench(archs, sizes, batch: int, repeats: int, calls: int) -> list[dict]:
    rows = []
    for arch in archs:
        torch.manual_seed(0)
        model = StyleModel(TransformerNet(arch_config(arch)).eval().requires_grad_(False), [arch])
        fns = variants(model, batch)
        for w, h in sizes:
            x = torch.rand(batch, 3, h, w)
            mix = torch.ones(1)
            for fn in fns.values():  # warm-up: compiles the size, first-call allocations
                fn(x, mix)
            fps = {k: [] for k in fns}
            for _ in range(repeats):
                for name, fn in fns.items():
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        fn(x, mix)
                    fps[name].append(calls * batch / (time.perf_counter() - t0))
            rows.append({"arch": arch, "size": f"{w}x{h}", "batch": batch,
                         **{k: statistics.median(v) for k, v in fps.items()}})
            print(f"  {arch} {w}x{h}: " + ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in fps.items()),
                  file=sys.stderr)
    return rows


def table(rows: list[dict]) -> str:
    names = [k for k in rows[0] if k not in ("arch", "size", "batch")]
    head = "| net | size | batch | " + " | ".join(names) + " |"
    lines = [head, "|" + "---|" * (3 + len(names))]
    for r in rows:
        base = r.get("torch fp32")
        cells = [f"{r[n]:.2f}" + (f" ({r[n] / base:.1f}x)" if base and n != "torch fp32" else "") for n in names]
        lines.append(f"| {r['arch']} | {r['size']} | {r['batch']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="lite,transformer")
    ap.add_argument("--sizes", default="640x360,320x240", help="WxH list")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--calls", type=int, default=3, help="calls timed together per repeat")
    ap.add_argument("--quick", action="store_true", help="3 repeats of 2 calls")
    ap.add_argument("--cache", default=None, help="conversion cache (default: a temporary folder)")
    a = ap.parse_args()
    if a.quick:
        a.repeats, a.calls = 3, 2
    os.environ["VIDSTYLE_CACHE"] = a.cache or tempfile.mkdtemp(prefix="vidstyle-bench-")
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in a.sizes.split(",")]
    for w, h in sizes:
        if w % 4 or h % 4:
            sys.exit(f"sizes must be multiples of 4 (the Stylizer pads to that): {w}x{h}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CPU: {os.cpu_count()} logical cores, native bf16: {cpu_has_bf16()}, torch threads "
          f"{torch.get_num_threads()}, load average at start {load:.1f}", file=sys.stderr)
    rows = bench(a.arch.split(","), sizes, a.batch, a.repeats, a.calls)
    print(table(rows))
    print(f"\nmodel only, frames per second, median of {a.repeats} interleaved repeats of {a.calls} calls; "
          f"(Nx) = ratio to torch fp32 in the same run; load average at end "
          f"{os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan'):.1f}")


if __name__ == "__main__":
    main()
