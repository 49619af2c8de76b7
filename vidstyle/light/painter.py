"""The light install's painter: uint8 frames in, uint8 paintings out, without PyTorch.

``FramePainter`` does what ``stylizer.Stylizer`` does on the CPU (the same sizes, colour, strength, stabiliser and
output size) with one compiled OpenVINO model per frame size that takes the uint8 frame and gives the uint8 painting
(``graph.frame_graph``: resize, padding, the network, resize back, colour and strength inside the graph), so a frame
is never copied into float arrays in Python. It offers the Stylizer's interface that the pipeline, ``image``,
``live`` and ``bench`` use; ``painters.new_painter`` picks it for a model whose network is a ``WeightsNet``.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from ..errors import VidstyleError
from ..options import PaintOptions
from ..painting import PainterBase

SHAPES_KEPT = 4  # compiled sizes kept (live resolution changes, a video that changes size)


class HostDevice:
    """Where the light painter paints: the CPU (``str`` is "cpu", ``type`` "cpu", as a torch.device would say)."""

    type = "cpu"

    def __str__(self) -> str:
        return "cpu"

    __repr__ = __str__


class LightEngine:
    """What a report says about the engine: OpenVINO, at ``precision`` (fp32 or bf16)."""

    name = "openvino"
    dtype = None

    def __init__(self, precision: str):
        self.precision = precision


def light_precision(precision: str | None) -> str:
    """``--precision`` for the light painter: auto -> bf16 on a CPU with native bf16, else fp32; one line for the
    rest (fp16 is for CUDA; int8 needs NNCF, which comes with ``vidstyle[torch]``)."""
    from .. import precision as prec

    if (precision or "").lower() == "int8":
        raise VidstyleError("--precision int8 needs NNCF, which this install does not have: pip install 'vidstyle[torch]'")
    return prec.choose(precision, "cpu")


class FramePainter(PainterBase):
    """Paint (N, H, W, 3) uint8 RGB frames with ``model`` (a ``StyleModel`` whose ``net`` is a ``WeightsNet``).

    ``options``: a PaintOptions (or its fields as keyword arguments): ``max_side``/``brush`` (the painting size,
    ``sizing.working_size``), ``out_size``, ``strength`` (for a picture: along its style vector, as the Stylizer
    does), ``preserve_color``, ``precision`` (auto|fp32|bf16). ``engine`` torch or ``device`` cuda need PyTorch:
    one line. ``strength`` and ``preserve_color`` may be changed between calls (live mode's keys).
    """

    def __init__(self, model, *, options: PaintOptions | None = None, realtime: bool = False, **kwargs):
        options = options.replace(**kwargs) if options is not None and kwargs else options or PaintOptions(**kwargs)
        from ..extras import need_torch

        if (options.engine or "auto").lower() == "torch":
            need_torch("--engine torch")
        if (options.device or "auto").lower().startswith("cuda"):
            need_torch("--device cuda")
        self._take(model, options)
        self.device = HostDevice()
        self.precision = light_precision(options.precision)
        self.engine = LightEngine(self.precision)
        self.half = self.precision != "fp32"
        self.realtime = realtime
        self._shapes: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()

    def _request(self, h: int, w: int):
        """The infer request of the compiled frame graph for (h, w) frames, made on first use."""
        from ..ovcache import compile_cached
        from .graph import frame_graph

        key = (h, w, self.work_size(h, w), bool(self.preserve_color), self.precision)
        entry = self._shapes.get(key)
        if entry is not None:
            self._shapes.move_to_end(key)
            return entry
        om = frame_graph(self.net.config.to_dict(), self.net.weights, (h, w), key[2],
                         preserve_color=bool(self.preserve_color))
        compiled = compile_cached(om, {"INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
                                       "PERFORMANCE_HINT": "LATENCY"})
        entry = self._shapes[key] = compiled.create_infer_request()
        while len(self._shapes) > SHAPES_KEPT:
            self._shapes.popitem(last=False)
        return entry

    def runs_at(self) -> str | None:
        """The precision OpenVINO infers at, as its last compiled size says; None before a frame was painted."""
        if not self._shapes:
            return None
        hint = next(reversed(self._shapes.values())).get_compiled_model().get_property("INFERENCE_PRECISION_HINT")
        return hint.to_string() if hasattr(hint, "to_string") else str(hint)

    def _mix_and_strength(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        """The mix to paint ``frame`` with, and the blend toward the frame the graph does: a picture's strength moves
        its style vector toward the content's own (Ghiasi et al.), truer than a blend."""
        if self.strength < 1.0 and getattr(self.model, "is_picture", False):
            import cv2

            hh, ww = self.work_size(*frame.shape[:2])
            small = cv2.resize(frame, (ww, hh), interpolation=cv2.INTER_AREA) if (hh, ww) != frame.shape[:2] else frame
            return self.model.content_mix(small, self.strength), 1.0
        return np.asarray(self.net.mix, np.float32), float(self.strength)

    def paint_frames(self, frames: np.ndarray, stabilizer=None) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, H, W, 3) uint8 paintings, stabilised by ``stabilizer`` (a
        ``light.stabilizer.Stabilizer``; its flows start before the network paints, on its own thread)."""
        begin = getattr(stabilizer, "begin", None)
        if hasattr(stabilizer, "style_strength"):
            stabilizer.style_strength = self.temporal_strength  # the style painted now (live can switch)
        self.check_fits(*frames.shape[:3])
        pending = begin(frames) if begin is not None else None
        n, h, w = frames.shape[:3]
        out = np.empty_like(frames)
        with self._lock:
            request = self._request(h, w)
            mix, strength = self._mix_and_strength(frames[0])
            s = np.array([strength], np.float32)
            for i in range(n):
                request.infer({"frames": frames[i:i + 1], "mix": mix, "strength": s}, share_inputs=True)
                out[i] = request.get_output_tensor(0).data[0]
        if stabilizer is None:
            return out
        return stabilizer(frames, out, pending) if begin is not None else stabilizer(frames, out)

    @staticmethod
    def download(y: np.ndarray) -> np.ndarray:
        """The paintings as they are (already uint8 on the host): the Stylizer's interface."""
        return y

    def finish(self, y: np.ndarray, out_size: tuple[int, int] | None = None) -> np.ndarray:
        """(N, H, W, 3) uint8 scaled to the output size (w, h): ``out_size``, else the painter's (none: as painted)."""
        import cv2

        out_size = out_size or self.out_size
        if out_size is None or tuple(out_size) == (y.shape[2], y.shape[1]):
            return y
        down = out_size[0] < y.shape[2] or out_size[1] < y.shape[1]
        how = cv2.INTER_AREA if down else cv2.INTER_LINEAR
        return np.stack([cv2.resize(f, tuple(out_size), interpolation=how) for f in y])
