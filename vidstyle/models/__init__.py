"""Networks, model files and the style registry.

The names below are imported on first use, so that listing styles (``registry``) does not wait for PyTorch.
"""
from importlib import import_module

_HOME = {"StyleModel": "files", "load_model": "files", "save_model": "files", "list_styles": "registry",
         "resolve": "registry", "ARCHS": "transformer", "ArchConfig": "transformer",
         "TransformerNet": "transformer", "arch_config": "transformer"}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name in _HOME:
        return getattr(import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
