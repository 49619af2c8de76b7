"""A picture's style vector without PyTorch: the style predictor as an OpenVINO graph (``graph.predictor_graph``).

    v = predict(pixels)     # (h, w, 3) uint8, short side --style-size (picture_style.picture_pixels) -> (100,)

The same vector as ``arbitrary.StylePredictor`` in PyTorch, to float rounding (``tests/test_light_graph.py``), so
the style-vector cache (``picture_style.style_vector``) serves both installs.
"""
from __future__ import annotations

import functools
import threading

import numpy as np

from ..errors import VidstyleError
from ..models.config import PICTURE_WEIGHTS, PREDICTOR_PREFIX

_lock = threading.Lock()
_compiled: dict[tuple[int, int], object] = {}  # (h, w) -> compiled predictor; a few sizes at most


@functools.lru_cache(maxsize=1)
def network_weights() -> dict[str, np.ndarray]:
    """Every tensor of ``arbitrary.safetensors`` (the picture network's and the predictor's) as float32 arrays."""
    from .graph import load_weights

    try:
        return load_weights(PICTURE_WEIGHTS)
    except VidstyleError as e:  # a missing or broken package file
        raise VidstyleError(f"{e}; reinstall vidstyle") from None


def _predictor(h: int, w: int):
    from ..ovcache import compile_cached
    from .graph import predictor_graph

    key = (h, w)
    if key not in _compiled:
        weights = {k[len(PREDICTOR_PREFIX):]: v for k, v in network_weights().items() if k.startswith(PREDICTOR_PREFIX)}
        om = predictor_graph(weights)
        om.reshape({om.inputs[0].get_any_name(): [1, 3, h, w]})
        if len(_compiled) >= 4:
            _compiled.pop(next(iter(_compiled)))
        _compiled[key] = compile_cached(om, {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})
    return _compiled[key]


def predict(pixels: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 picture, already at the size to read it (``picture_style.picture_pixels``) -> (100,) float32."""
    h, w = pixels.shape[:2]
    x = np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], np.float32) / np.float32(255.0)  # (1, 3, h, w)
    with _lock:
        compiled = _predictor(h, w)
        out = compiled.create_infer_request().infer([x])
    return np.asarray(next(iter(out.values())), np.float32).reshape(-1)
