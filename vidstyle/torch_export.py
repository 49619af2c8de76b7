"""The PyTorch network traced into the graphs of ``vidstyle.export``: ONNX bytes and the OpenVINO model the engine
converts (``vidstyle[torch]``; the light install builds the same graphs from the weights, ``light.graph``).
"""
from __future__ import annotations

import io
import logging
import warnings
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .graphio import INPUTS, ONNX_OPSET, OUTPUT
from .ovcache import require_openvino

log = logging.getLogger("vidstyle")


class StyleGraph(nn.Module):
    """``TransformerNet`` with the style mix as a second input, for tracing.

    ``pad``: pad H and W (reflect) to multiples of 4 inside the graph and crop back; without it
    the caller must give multiples of 4 (at least 8).
    """

    def __init__(self, net: nn.Module, pad: bool = True):
        super().__init__()
        self.net = net
        self.pad = pad

    def forward(self, image: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        if not self.pad:
            return self.net.decode(self.net.encode(image, mix), mix)
        h, w = image.shape[-2], image.shape[-1]
        # written without Python branches so that tracing keeps H and W dynamic
        ph, pw = (4 - h % 4) % 4, (4 - w % 4) % 4
        x = F.pad(image, (0, pw, 0, ph), mode="reflect")
        y = self.net.decode(self.net.encode(x, mix), mix)
        return y[:, :, :h, :w]


class BakedGraph(nn.Module):
    """``StyleGraph`` with its mix fixed (a picture's style vector, baked in): one input, ``image``."""

    def __init__(self, net: nn.Module, mix: torch.Tensor, pad: bool = True):
        super().__init__()
        self.graph = StyleGraph(net, pad)
        self.register_buffer("baked", mix.detach().float().cpu().clone())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.graph(image, self.baked)


def example_inputs(net: nn.Module, h: int = 64, w: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    n = net.config.n_styles
    return torch.rand(1, 3, h, w), torch.full((n,), 1.0 / n)


@contextmanager
def _quiet():
    """Tracing warns about every shape expression and about deprecations; none of it is the user's concern."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _cpu_fp32_copy(net: nn.Module) -> nn.Module:
    """The network on the CPU in fp32, eval mode, without touching the caller's module."""
    import copy

    p = next(net.parameters(), None)
    if p is not None and p.device.type == "cpu" and p.dtype == torch.float32 and not net.training:
        return net
    return copy.deepcopy(net).float().cpu().eval()


def to_onnx_bytes(net: nn.Module, pad: bool = True, baked: torch.Tensor | None = None) -> bytes:
    """The ONNX model (opset 17) of ``net``: inputs ``image`` (dynamic N, H, W) and ``mix``, output ``stylized``;
    with ``baked`` (a mix), that mix is a constant of the graph and ``image`` its only input."""
    net = _cpu_fp32_copy(net)
    dyn = {0: "batch", 2: "height", 3: "width"}
    buf = io.BytesIO()
    graph = StyleGraph(net, pad=pad) if baked is None else BakedGraph(net, baked, pad=pad)
    inputs = example_inputs(net) if baked is None else example_inputs(net)[:1]
    with _quiet(), torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(graph.eval(), inputs, buf, dynamo=False,
                          opset_version=ONNX_OPSET, input_names=list(INPUTS[:len(inputs)]), output_names=[OUTPUT],
                          dynamic_axes={"image": dyn, OUTPUT: dyn})
    return buf.getvalue()


def to_openvino(net: nn.Module, pad: bool = True):
    """``openvino.Model`` of ``net`` with inputs ``image`` (dynamic N, H, W) and ``mix``; fp32 weights.

    Through an in-memory ONNX export (about 2 s for the full network here), or, where that
    fails, ``openvino.convert_model`` on the module itself (tracing, about 7 s); both give the
    same graph speed.
    """
    ov = require_openvino()
    net = _cpu_fp32_copy(net)
    n = net.config.n_styles
    try:
        model = ov.convert_model(io.BytesIO(to_onnx_bytes(net, pad)))
    except Exception as e:  # noqa: BLE001 - the slower route below
        log.debug("ONNX route to OpenVINO failed (%s); converting the module directly", e)
        with _quiet(), torch.inference_mode(False), torch.no_grad():
            model = ov.convert_model(
                StyleGraph(net, pad=pad).eval(), example_input=example_inputs(net),
                input=[("image", ov.PartialShape([-1, 3, -1, -1]), ov.Type.f32),
                       ("mix", ov.PartialShape([n]), ov.Type.f32)])
    for port, name in zip(model.inputs, INPUTS):
        port.get_tensor().set_names({name})
    model.outputs[0].get_tensor().set_names({OUTPUT})
    return model
