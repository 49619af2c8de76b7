"""Inference engines: what runs the style network's maths for the Stylizer.

An engine takes a float batch (N, 3, H, W) in [0, 1], with H and W multiples of 4 and at
least ``MIN_SIDE`` (the Stylizer pads to that), plus the style mix (n_styles,), and returns
the network's raw output (N, 3, H, W) float32 on the Stylizer's device. Everything else
(resize, strength, colour, stabilisation) stays in the Stylizer, the same for every engine.

* ``torch``: the PyTorch module; fp16/bf16 autocast on CUDA (channels_last), bf16 autocast
  on CPUs with native bf16 maths, else fp32.
* ``openvino`` (CPU): the network converted once with ``openvino.convert_model`` (mix is a
  graph input, so styles and blends change without reconverting), saved as IR in the user
  cache, compiled per frame size (static shapes run about 25% faster than a dynamic graph
  here) with ``INFERENCE_PRECISION_HINT`` bf16 or f32 and the LATENCY hint (all cores on
  one frame). A batch runs frame by frame on that same compiled model, so the pictures do
  not depend on the batch size: THROUGHPUT streams with asynchronous requests
  (``batch_mode="throughput"``) were at most ~25% faster on batches here, within the noise of
  a loaded 2-core machine, and their bf16 rounding differs from the one-frame model by one
  bf16 step (a 5-level difference after a YUV round trip on a flat random-net picture).

  With ``int8`` (``--precision int8``, and live mode's ``auto`` on x86 CPUs with AVX2 when NNCF is installed) the
  graph is first quantized by NNCF (``vidstyle.quantize``) and cached beside the plain IR: about
  1.6x bf16's speed with AVX-512 VNNI and 1.65x fp32 on a plain AVX2 CPU, at 31 to 41 dB PSNR against
  fp32 on the bundled styles (docs/PERFORMANCE.md).

``engine="auto"``: OpenVINO on the CPU when the package imports, torch otherwise (and on CUDA).

Cache (``cache_root()``: ``$VIDSTYLE_CACHE``, else ``$XDG_CACHE_HOME/vidstyle``, else
``~/.cache/vidstyle``)::

    openvino/<sha256 of the weights>-g<graph version>/model.xml, model.bin   converted IR
    openvino/<sha256 ...>-g<graph version>-int8q<quantize.VERSION>/...        the same, quantized
    openvino/blobs/*.blob                                                   compiled (OpenVINO CACHE_DIR)

The IR does not depend on the precision (weights stay fp32; precision is a compile setting);
OpenVINO keys each blob by the model, its shape and the compile settings, precision included.
Every write is atomic: the IR is written in a hidden folder that is renamed into place, and
compiled blobs are made in a private staging CACHE_DIR and renamed into the shared one, so two
processes never see each other's half-written files.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from . import precision as prec
from .errors import VidstyleError, one_line
from .models.config import MIN_SIDE  # noqa: F401 - this module's API (the Stylizer pads to it)
from .ovcache import STATS, cache_root, clean_stale, compile_cached, core, require_openvino  # noqa: F401 - cache_root: this module's API too

log = logging.getLogger("vidstyle")

ENGINES = ("auto", "torch", "openvino")
SHAPES_KEPT = 4  # compiled sizes an OpenVINO engine keeps (live resolution changes, max_side)


def model_digest(model) -> str:
    """sha256 of the architecture and the weights in memory (what an engine converts, so a cache entry can
    never hold other weights than the model's: a file rewritten after loading, a net changed in place),
    and of the stored paintings (what int8 calibrates on). About 5 ms for the bundled network."""
    net = model.net if hasattr(model, "net") else model
    h = hashlib.sha256(json.dumps(net.config.to_dict(), sort_keys=True).encode())
    for name, t in sorted(net.state_dict().items()):
        t = t.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    for name, img in sorted(getattr(model, "style_images", {}).items()):
        h.update(f"picture {name}:{tuple(img.shape)}".encode())
        h.update(img.cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- choice
def openvino_available() -> bool:
    try:
        require_openvino()
    except VidstyleError:
        return False
    return True


def check_engine(name: str | None) -> str:
    e = (name or "auto").lower()
    if e not in ENGINES:
        raise VidstyleError(f"--engine must be one of {', '.join(ENGINES)}, not {name!r}")
    return e


def make_engine(model, device: torch.device, engine: str = "auto", precision: str = "auto", realtime: bool = False):
    """The engine that runs ``model`` on ``device`` at ``precision`` (auto|fp32|bf16|fp16|int8).

    ``auto`` engine: OpenVINO on the CPU when it is installed, else torch. An explicit ``openvino``
    that cannot be had is a VidstyleError; with ``auto`` a failed conversion falls back to torch
    with a logged note. ``auto`` precision: bf16 on CPUs with native bf16, else fp32 (fp16 on CUDA);
    with ``realtime`` (live painting, where the frame rate comes first), int8 on OpenVINO where it pays
    (``int8_pays``), falling back to bf16 with a logged note if the quantization fails.
    """
    engine = check_engine(engine)
    p = (precision or "auto").lower()
    if p == "int8":
        return _int8_engine(model, device, engine)
    dtype = prec.resolve(precision, device)
    if engine == "openvino" and device.type != "cpu":
        raise VidstyleError(f"--engine openvino runs on the CPU, not {device.type}: use --device cpu, "
                            "or --engine torch on the GPU")
    auto = engine == "auto"
    if auto:
        engine = "openvino" if device.type == "cpu" and openvino_available() else "torch"
    if realtime and engine == "openvino" and p == "auto" and int8_pays():
        try:
            return OpenVINOEngine(model, dtype, int8=True)
        except Exception as e:  # noqa: BLE001 - auto means: the fastest that works
            log.warning("could not quantize %s to int8 (%s); using %s", getattr(model, "name", "the model"),
                        one_line(e, 200), prec.name(dtype))
    if engine == "openvino" and auto:
        try:
            return OpenVINOEngine(model, dtype)
        except Exception as e:  # noqa: BLE001 - auto means: the fast one if it works
            log.warning("OpenVINO could not take %s (%s); using PyTorch", getattr(model, "name", "the model"),
                        one_line(e, 200))
            return TorchEngine(model, device, dtype)
    if engine == "openvino":
        return _asked_openvino(model, dtype)
    return TorchEngine(model, device, dtype)


def _asked_openvino(model, dtype: torch.dtype | None, int8: bool = False) -> "OpenVINOEngine":
    """OpenVINO asked for by name (``--engine openvino`` or ``--precision int8``): not installed, or a
    conversion or quantization that fails, is one VidstyleError line."""
    require_openvino()
    try:
        return OpenVINOEngine(model, dtype, int8=int8)
    except VidstyleError:
        raise
    except Exception as e:  # noqa: BLE001 - one line for the user
        name = getattr(model, "name", "the model")
        if int8:
            raise VidstyleError(f"could not quantize {name} to int8: {one_line(e, 200)} (use --precision bf16)") from None
        raise VidstyleError(f"OpenVINO could not convert {name}: {one_line(e, 200)} (use --engine torch)") from None


def int8_pays() -> bool:
    """Live painting's ``--precision auto`` on the CPU is int8 on x86 CPUs with AVX2 or more
    (``precision.cpu_runs_int8``) when NNCF is installed; ``VIDSTYLE_INT8=0`` in the environment turns that off (``--precision bf16`` does
    it per run). Files are painted in bf16 unless ``--precision int8`` asks: int8 softens the finest strokes
    a little (docs/PERFORMANCE.md)."""
    from . import quantize

    if os.environ.get("VIDSTYLE_INT8", "").strip().lower() in ("0", "no", "off", "false"):
        return False
    return prec.cpu_runs_int8() and quantize.installed()


def _int8_engine(model, device: torch.device, engine: str):
    """``--precision int8``: OpenVINO on the CPU with the network quantized by NNCF (``quantize``)."""
    if device.type != "cpu":
        raise VidstyleError(f"--precision int8 runs on the CPU (OpenVINO), not {device.type}: on a GPU use fp16")
    if engine == "torch":
        raise VidstyleError("--precision int8 runs on the OpenVINO engine, not torch: --engine openvino or auto")
    return _asked_openvino(model, torch.bfloat16 if prec.cpu_has_bf16() else None, int8=True)


# --------------------------------------------------------------------------- torch
class TorchEngine:
    """The PyTorch module, with autocast at the chosen precision."""

    name = "torch"

    def __init__(self, model, device: torch.device, dtype: torch.dtype | None):
        self.device = device
        self.dtype = dtype
        self.precision = prec.name(dtype)
        net = model.net.to(device).eval()
        if device.type == "cuda":
            net = net.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True
        self.net = net

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            y = self.net(x, mix.to(x.device))
        return y.float()


# --------------------------------------------------------------------------- OpenVINO
def _ir_dir(digest: str, int8: bool = False) -> Path:
    from .graphio import GRAPH_VERSION
    from .quantize import VERSION

    return cache_root() / "openvino" / (f"{digest[:32]}-g{GRAPH_VERSION}" + (f"-int8q{VERSION}" if int8 else ""))


def load_or_convert(model, digest: str | None = None, int8: bool = False):
    """The converted ``openvino.Model`` (no padding step), from the cache or converted and cached.

    ``int8``: the network quantized by NNCF (``quantize.quantize``), cached beside the plain one.
    """
    from .torch_export import to_openvino

    ov = require_openvino()  # imported without its telemetry

    digest = digest or model_digest(model)
    folder = _ir_dir(digest, int8)
    xml = folder / "model.xml"
    ov_core = core()
    try:
        if xml.is_file():
            om = ov_core.read_model(str(xml))
            STATS["loaded"] += 1
            return om
    except Exception as e:  # noqa: BLE001 - unreadable or damaged: convert again (and replace it if we may)
        log.info("vidstyle cache: cannot read %s (%s); converting again", xml, one_line(e, 120))
    t0 = time.perf_counter()
    if int8:
        from .quantize import quantize

        om = quantize(load_or_convert(model, digest), model)
        STATS["quantized"] += 1
        log.info("quantized %s to int8 in %.1fs (once: it is cached)", getattr(model, "name", "model"),
                 time.perf_counter() - t0)
    else:
        om = to_openvino(model.net, pad=False)
        STATS["converted"] += 1
        log.info("converted %s for OpenVINO in %.1fs", getattr(model, "name", "model"), time.perf_counter() - t0)
    try:
        _store_ir(ov, om, folder, {"sha256": digest, "name": getattr(model, "name", None),
                                   "path": str(getattr(model, "path", None)), "openvino": ov.get_version()})
    except Exception as e:  # noqa: BLE001 - a cache we cannot write only costs time next run
        log.info("vidstyle cache: cannot write %s (%s)", folder, one_line(e, 120))
        return om
    try:  # the model as later runs will read it: OpenVINO keys its compiled blobs by the graph, so
        return ov_core.read_model(str(xml))  # compiling this one lets the next run reuse the blob
    except Exception:  # noqa: BLE001 - e.g. removed meanwhile: the converted one paints the same
        return om


def _store_ir(ov, om, folder: Path, source: dict) -> None:
    """Write the IR in a hidden folder beside ``folder`` and rename it into place (atomic)."""
    from .export import save_ir_atomic

    folder.parent.mkdir(parents=True, exist_ok=True)
    for pattern in (".*.partial-*", ".*.old-*"):  # what a run killed while converting left (an hour old)
        clean_stale(folder.parent, pattern)
    stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
    try:
        save_ir_atomic(ov, om, stage / "model.xml")
        (stage / "source.json").write_text(json.dumps(source))
        os.chmod(stage, 0o755)  # mkdtemp makes it private; the entry is as readable as the files in it
        if folder.exists():  # a damaged entry: set it aside, then put ours in its place
            trash = folder.with_name(f".{folder.name}.old-{os.getpid()}-{time.time_ns()}")
            try:
                os.rename(folder, trash)
                shutil.rmtree(trash, ignore_errors=True)
            except OSError:
                pass
        try:
            os.rename(stage, folder)  # the whole entry appears at once
        except OSError:
            pass  # another process put the same entry there first
    finally:
        shutil.rmtree(stage, ignore_errors=True)


class _Shape:
    """One compiled size: the compiled model and its request(s)."""

    def __init__(self, compiled, throughput: bool):
        import openvino as ov

        self.compiled = compiled
        self.throughput = throughput
        if throughput:
            n = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            self.queue = ov.AsyncInferQueue(compiled, n)
            self.queue.set_callback(self._done)
            self.results: dict[int, np.ndarray] = {}
        else:
            self.request = compiled.create_infer_request()

    def _done(self, request, i) -> None:
        self.results[i] = request.get_output_tensor(0).data.copy()

    def run(self, x: np.ndarray, mix: np.ndarray) -> np.ndarray:
        if not self.throughput:
            self.request.infer([x, mix], share_inputs=True)
            return self.request.get_output_tensor(0).data.copy()
        self.results = {}
        for i in range(len(x)):
            self.queue.start_async([x[i:i + 1], mix], userdata=i, share_inputs=True)
        self.queue.wait_all()
        return np.concatenate([self.results[i] for i in range(len(x))])


class OpenVINOEngine:
    """The network compiled by OpenVINO for the CPU; one compiled model per frame size (kept: 4).

    ``batch_mode``: ``"auto"`` / ``"frames"`` (a batch runs frame by frame on the one-frame LATENCY
    model: the same pictures for any batch size), ``"latency"`` (the whole batch as one request) or
    ``"throughput"`` (THROUGHPUT streams, one asynchronous request per frame).
    """

    name = "openvino"

    def __init__(self, model, dtype: torch.dtype | None, batch_mode: str = "auto", int8: bool = False):
        if dtype not in (None, torch.bfloat16):
            raise VidstyleError(f"the OpenVINO engine runs fp32 or bf16, not {prec.name(dtype)}")
        self.device = torch.device("cpu")
        self.dtype = dtype  # of the layers left unquantized with int8
        self.precision = "int8" if int8 else prec.name(dtype)
        self.batch_mode = batch_mode
        self.n_styles = model.net.config.n_styles
        self.digest = model_digest(model)
        self.model = load_or_convert(model, self.digest, int8)
        self._shapes: OrderedDict[tuple, _Shape] = OrderedDict()
        self._lock = threading.Lock()

    def config(self, hint: str) -> dict:
        return {"INFERENCE_PRECISION_HINT": "bf16" if self.dtype is torch.bfloat16 else "f32",
                "PERFORMANCE_HINT": hint}

    def _get(self, n: int, h: int, w: int) -> _Shape:
        throughput = n > 1 and self.batch_mode == "throughput"
        key = (n if self.batch_mode == "latency" else 1, h, w, throughput)
        entry = self._shapes.get(key)
        if entry is not None:
            self._shapes.move_to_end(key)
            return entry
        om = self.model.clone()
        om.reshape({"image": [key[0], 3, h, w], "mix": [self.n_styles]})
        t0 = time.perf_counter()
        compiled = compile_cached(om, self.config("THROUGHPUT" if throughput else "LATENCY"))
        log.debug("OpenVINO compiled %s in %.2fs", key, time.perf_counter() - t0)
        entry = self._shapes[key] = _Shape(compiled, throughput)
        while len(self._shapes) > SHAPES_KEPT:
            self._shapes.popitem(last=False)
        return entry

    def runs_at(self) -> str | None:
        """The precision OpenVINO infers the float layers at, as its last compiled size says ("f32" where the
        CPU has no bf16 although bf16 was asked for); None before a frame was painted."""
        if not self._shapes:
            return None
        hint = next(reversed(self._shapes.values())).compiled.get_property("INFERENCE_PRECISION_HINT")
        return hint.to_string() if hasattr(hint, "to_string") else str(hint)

    def __call__(self, x: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        xs = x.detach().to("cpu", torch.float32).contiguous().numpy()
        ms = mix.detach().to("cpu", torch.float32).reshape(-1).contiguous().numpy()
        if ms.shape[0] != self.n_styles:
            raise VidstyleError(f"style mix has {ms.shape[0]} weights; the model has {self.n_styles} styles")
        with self._lock:
            if self.batch_mode in ("auto", "frames") and n > 1:
                shape = self._get(1, h, w)
                y = np.concatenate([shape.run(xs[i:i + 1], ms) for i in range(n)])
            else:
                y = self._get(n, h, w).run(xs, ms)
        return torch.from_numpy(y)
