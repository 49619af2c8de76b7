"""Which optional parts this install has, and the one line that says how to get a missing one.

``pip install vidstyle`` paints on the CPU without PyTorch (``vidstyle.light``); ``vidstyle[torch]`` adds PyTorch
for CUDA, RAFT flow, ``--engine torch``, evaluation and ONNX export; ``vidstyle[train]`` adds what training needs.
``VIDSTYLE_TORCH=0`` in the environment makes an install that has PyTorch paint as the light one does (tests,
benchmarks, and a user who wants the light path's speed).
"""
from __future__ import annotations

import importlib.util
import os

from .errors import VidstyleError


def has_torch() -> bool:
    """True when PyTorch can be imported here and ``VIDSTYLE_TORCH`` does not turn it off (never imports it)."""
    if os.environ.get("VIDSTYLE_TORCH", "").strip().lower() in ("0", "no", "off", "false"):
        return False
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # sys.modules["torch"] = None, or a broken install
        return False


def torch_missing(what: str, extra: str = "torch") -> str:
    """The one line saying that ``what`` needs PyTorch, and which extra brings it."""
    return f"{what} needs PyTorch, which this install does not have: pip install 'vidstyle[{extra}]'"


def need_torch(what: str, extra: str = "torch") -> None:
    """A one-line VidstyleError (``torch_missing``) unless PyTorch is here."""
    if not has_torch():
        raise VidstyleError(torch_missing(what, extra))
