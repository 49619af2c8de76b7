"""What a model file says about itself, read without PyTorch (``vidstyle styles`` lists models in a blink).

``read_metadata`` returns the JSON-string metadata of a ``.safetensors`` file (the keys are described in
:mod:`vidstyle.models.files`); ``DEFAULT_STRENGTH`` is the ``--temporal`` strength of a style whose file
records none.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import VidstyleError, one_line

DEFAULT_STRENGTH = 0.7  # for a style whose model file records no strength of its own


def read_metadata(path: str | Path) -> dict:
    """A model file's metadata as a dict of strings; a one-line VidstyleError when it cannot be read."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError, ValueError ...: all one line
        raise VidstyleError(f"{path} is not a readable .safetensors model file ({one_line(e, 160)})") from None
