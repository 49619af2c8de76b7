"""INT8 for the OpenVINO engine: NNCF post-training quantization of the converted style network.

``quantize(om, model)`` takes the converted ``openvino.Model`` (inputs ``image`` (N, 3, H, W) in
[0, 1] with any N, H, W, and ``mix`` (n_styles,)) and returns the same graph with 8-bit
FakeQuantize nodes on the convolutions' inputs and weights; OpenVINO then runs those
convolutions with 8-bit dot products (AVX-512 VNNI, AVX-VNNI, AMX; plain AVX2 without them), the rest
in bf16 or f32.
The graph keeps its dynamic sizes: one quantized model serves every frame size.

Calibration needs pictures that look like what the network paints. No photos ship with
vidstyle, so it uses the paintings a model file stores (``StyleModel.style_images``: crops
and mirror images, each painted with every style), or deterministic synthetic pictures
(smooth colour fields with hard-edged shapes) for a file without them. On the bundled
model, painting-calibrated and photo-calibrated INT8 gave the same error against fp32 on
held-out photos (docs/PERFORMANCE.md).
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings

import cv2
import numpy as np
import torch

from .errors import VidstyleError

VERSION = 3  # part of the cache key: change it when the calibration or settings change
SIDE = 256  # calibration pictures are SIDE x SIDE
SAMPLES = 24  # at least this many calibration pictures (rounded up to whole rounds over the styles)


def installed() -> bool:
    """True when NNCF is installed (without importing it: that takes seconds)."""
    import importlib.util

    return importlib.util.find_spec("nncf") is not None


def available() -> bool:
    """True when NNCF imports (``pip install 'vidstyle[openvino]'``)."""
    try:
        _import_nncf()
        return True
    except ImportError:
        return False


def _import_nncf():
    # NNCF looks for its PyTorch backend at import, and torch's cpp_extension then logs a warning about
    # CUDA_HOME on machines without CUDA: nothing the user can act on.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import nncf
    nncf.set_log_level(logging.ERROR)
    return nncf


def calibration_pictures(model, samples: int = SAMPLES, side: int = SIDE, seed: int = 0) -> list[dict]:
    """[{"image": (1, 3, side, side) float32 in [0, 1], "mix": (n_styles,) one-hot}], deterministic; for a
    picture as the style (``PictureStyle``), "mix" is the style vector of one of 16 paintings
    (``arbitrary.calibration_vectors``), whichever pictures the model paints."""
    styles = list(model.styles)
    n = len(styles)
    pictures = [model.style_images[s].numpy() for s in styles if s in model.style_images]
    rng = np.random.default_rng(seed)
    if not pictures:
        pictures = [synthetic_picture(rng, side) for _ in range(4)]
    per_style = max(1, -(-samples // n))
    if getattr(model, "is_picture", False):  # the same vectors for every picture: one int8 network serves all
        from .models.arbitrary import calibration_vectors, with_one

        mixes = [with_one(torch.from_numpy(v)).numpy() for v in calibration_vectors()]
        per_style = max(1, -(-samples // len(mixes)))
    else:
        mixes = [np.eye(n, dtype=np.float32)[i] for i in range(n)]
    out = []
    for i, mix in enumerate(mixes):
        for k in range(per_style):
            p = pictures[(i + k) % len(pictures)]
            h, w = p.shape[:2]
            c = max(8, min(h, w) * 3 // 4)
            y0, x0 = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
            crop = p[y0:y0 + c, x0:x0 + c]
            if k % 2:
                crop = crop[:, ::-1]
            img = cv2.resize(np.ascontiguousarray(crop), (side, side), interpolation=cv2.INTER_AREA)
            out.append({"image": np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0,
                        "mix": mix})
    return out


def synthetic_picture(rng: np.random.Generator, side: int) -> np.ndarray:
    """(side, side, 3) uint8: a smooth colour field with a few hard-edged shapes (photo-like statistics)."""
    field = cv2.resize(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), (side, side), interpolation=cv2.INTER_CUBIC)
    for _ in range(6):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x0, y0 = (int(v) for v in rng.integers(0, side, 2))
        r = int(rng.integers(side // 16, side // 4))
        if rng.random() < 0.5:
            cv2.circle(field, (x0, y0), r, colour, -1)
        else:
            cv2.rectangle(field, (x0, y0), (x0 + r, y0 + r // 2), colour, -1)
    noise = rng.normal(0, 6, field.shape)
    return np.clip(field + noise, 0, 255).astype(np.uint8)


def quantize(om, model):
    """The INT8 version of the converted network ``om`` (an ``openvino.Model``) of ``model`` (a StyleModel)."""
    try:
        nncf = _import_nncf()
    except ImportError:
        raise VidstyleError("--precision int8 needs NNCF: pip install 'vidstyle[openvino]' (or pip install nncf)") from None
    data = calibration_pictures(model)
    # NNCF draws progress bars on stdout, which must stay clean for --json
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # PERFORMANCE (symmetric activations): as close to fp32 as MIXED on the bundled model (37.8 dB
        # both) and about 4% faster here
        return nncf.quantize(om, nncf.Dataset(data), subset_size=len(data),
                             preset=nncf.QuantizationPreset.PERFORMANCE, fast_bias_correction=True)
