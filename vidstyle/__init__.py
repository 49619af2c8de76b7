"""vidstyle: turn videos and webcam feeds into moving paintings.

The API (``load_model``, ``make_stylizer``, ``Stylizer``, ``stylize_image``, ``stylize_video``, ``RunResult``) is
imported on first use, so that ``vidstyle --help`` and the error classes do not wait for PyTorch.
"""
from .errors import IncompleteInput, VidstyleError

__version__ = "0.1.0"
__all__ = ["IncompleteInput", "RunResult", "Stylizer", "VidstyleError", "load_model", "make_stylizer", "stylize_image",
           "stylize_video"]
_API = {"RunResult", "Stylizer", "load_model", "make_stylizer", "stylize_image", "stylize_video"}


def __getattr__(name: str):
    if name == "Stylizer":  # the PyTorch painter (``vidstyle[torch]``); make_stylizer picks the one this install has
        from .stylizer import Stylizer
        return Stylizer
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'vidstyle' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
