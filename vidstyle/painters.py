"""Which painter paints: ``stylizer.Stylizer`` (PyTorch: CUDA, or the CPU through OpenVINO or PyTorch) or
``light.painter.FramePainter`` (no PyTorch: the light install, or ``VIDSTYLE_TORCH=0``).

The choice follows the model: ``light()`` says whether models are loaded as weights (``WeightsNet``), and a model so
loaded is painted by the light painter. Both take and give uint8 frames and offer the same interface.
"""
from __future__ import annotations

from .extras import has_torch


def light() -> bool:
    """True when this process paints without PyTorch (it is not installed, or ``VIDSTYLE_TORCH=0``)."""
    return not has_torch()


def is_light(model) -> bool:
    """Whether ``model``'s network is plain weights (``models.weights.WeightsNet``): painted by the light painter."""
    from .models.weights import WeightsNet

    return isinstance(getattr(model, "net", None), WeightsNet)


def pick_device(name: str = "auto"):
    """``--device`` -> a torch.device (``stylizer.pick_device``), or the host CPU of the light painter (``cuda`` there
    is one line saying PyTorch is needed)."""
    if not light():
        from .stylizer import pick_device as torch_device

        return torch_device(name)
    from .errors import VidstyleError
    from .extras import need_torch
    from .light.painter import HostDevice

    name = (name or "auto").lower()
    if name.startswith("cuda"):
        need_torch("--device cuda")
    if name not in ("auto", "cpu"):
        raise VidstyleError(f"--device must be auto, cpu or cuda, not {name!r}")
    return HostDevice()


def new_painter(model, device=None, *, options=None, realtime: bool = False, **kwargs):
    """The painter for ``model``: a ``FramePainter`` for a model of weights (``is_light``), else a ``Stylizer`` on
    ``device``. ``options`` (a PaintOptions) or its fields as keyword arguments; ``realtime``: live mode."""
    if is_light(model):
        from .light.painter import FramePainter

        return FramePainter(model, options=options, realtime=realtime, **kwargs)
    from .stylizer import Stylizer

    return Stylizer(model, device, options=options, realtime=realtime, **kwargs)
