"""A picture as a style: the picture's style vector (computed once, cached on disk) and the model that paints it.

    model = picture_model({"my_painting.jpg": 1.0})            # a StyleModel: every engine and path takes it
    model = picture_model({"a.jpg": 0.5, "b.png": 0.5})       # two pictures blended by their vectors

A ``PictureStyle`` is a ``StyleModel`` whose network is ``arbitrary.PictureNet`` (or its weights, ``WeightsNet``, in
the light install) and whose "mix" is the style
vector (with a 1 appended): the Stylizer, the engines (OpenVINO takes the vector as a graph input, so another
picture needs no recompile), the stabiliser, live mode and export carry it as they carry a bundled style.
Its vectors travel to workers as numbers (``vectors``), never the pictures.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import VidstyleError
from .config import PICTURE_CONFIG, PICTURE_WEIGHTS, PREDICTOR_PREFIX, VECTOR
from .files import StyleModel

log = logging.getLogger("vidstyle")

STYLE_SIZE = 256  # default --style-size: the picture's short side when its vector is computed (docs/MODELS.md)
MIN_STYLE_SIZE, MAX_STYLE_SIZE = 64, 2048
PAINT_SCALE = 256  # the short side a frame is painted at with --brush 1: the content size Magenta trained at
TEMPORAL_STRENGTH = 0.5  # --temporal's default for a picture: at 0.7 the cottages' style loss rose 14% (docs/MODELS.md)
VECTOR_VERSION = "1"  # bump when the way a vector is computed changes: the cache is keyed on it


def is_picture(spec) -> bool:
    """Whether a ``--style`` value names a picture (by its suffix: .jpg, .png, ...; a file or a URL)."""
    from ..io.pictures import is_picture as named_picture

    return spec is not None and not isinstance(spec, StyleModel) and named_picture(str(spec))


def check_style_size(size) -> int:
    """``--style-size`` -> int, or a VidstyleError."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_STYLE_SIZE <= size <= MAX_STYLE_SIZE:
        raise VidstyleError(f"--style-size must be a whole number of pixels from {MIN_STYLE_SIZE} to "
                            f"{MAX_STYLE_SIZE}, not {size!r}")
    return int(size)


# --------------------------------------------------------------------------- vectors
_PREDICTOR: list = []  # the predictor, loaded on first use and kept (about 9 MB)


def predictor():
    """The style predictor (``arbitrary.StylePredictor``, PyTorch), loaded once."""
    from . import arbitrary

    if not _PREDICTOR:
        _PREDICTOR.append(arbitrary.load_predictor())
    return _PREDICTOR[0]


def picture_pixels(rgb: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (h, w, 3) uint8 with its short side ``size`` (area-averaged when shrunk, bicubic when
    enlarged): what the predictor reads."""
    import cv2

    h, w = rgb.shape[:2]
    s = size / min(h, w)
    hw = (max(1, round(h * s)), max(1, round(w * s)))
    if hw != (h, w):
        rgb = cv2.resize(rgb, hw[::-1], interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    return np.ascontiguousarray(rgb)


def picture_tensor(rgb: np.ndarray, size: int):
    """(H, W, 3) uint8 -> (1, 3, h, w) torch float in [0, 1] with its short side ``size`` (``picture_pixels``)."""
    import torch

    return torch.from_numpy(picture_pixels(rgb, size)).permute(2, 0, 1)[None].float().div(255.0)


def compute_vector(rgb: np.ndarray, size: int = STYLE_SIZE) -> np.ndarray:
    """(H, W, 3) uint8 picture -> its (100,) float32 style vector, from the whole picture at short side ``size``:
    on PyTorch where it is installed, else on OpenVINO (``vidstyle.light``; the same vector to about 1e-5)."""
    from ..extras import has_torch

    if not has_torch():
        from ..light.vectors import predict

        return predict(picture_pixels(rgb, size))
    import torch

    with torch.inference_mode():
        return predictor()(picture_tensor(rgb, size))[0].numpy().astype(np.float32)


def cache_dir() -> Path:
    from ..ovcache import cache_root

    return cache_root() / "styles"


def _weights_tag() -> str:
    """What the vectors depend on besides the picture: the shipped weights (their header names the sources and
    every tensor's offsets) and ``VECTOR_VERSION``."""
    with open(PICTURE_WEIGHTS, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return hashlib.sha256(f.read(min(n, 1 << 20)) + VECTOR_VERSION.encode()).hexdigest()[:12]


def style_vector(picture, size: int = STYLE_SIZE) -> np.ndarray:
    """A ``Picture`` (``io.pictures``) -> its style vector, from the disk cache when it was computed before (keyed by
    the file's content hash, ``size`` and the weights), else computed and stored (atomically; a cache that cannot
    be written is skipped with a debug note)."""
    from ..io.atomic import atomic_write_bytes

    path = cache_dir() / f"{picture.digest[:32]}-{size}-{_weights_tag()}.npy"
    try:
        v = np.load(path, allow_pickle=False)
        if v.shape == (VECTOR,) and v.dtype == np.float32 and np.isfinite(v).all():
            return v
    except (OSError, ValueError):
        pass
    v = compute_vector(picture.rgb, size)
    try:
        import io

        buf = io.BytesIO()
        np.save(buf, v, allow_pickle=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())
    except (OSError, VidstyleError) as e:
        log.debug("could not cache the style vector in %s: %s", path, e)
    return v


# --------------------------------------------------------------------------- the model
@dataclass
class PictureStyle(StyleModel):
    """A StyleModel painting with pictures' style vectors (see the module's doc).

    ``vectors``: {label: (100,) vector}, one per picture; ``styles`` lists the labels. ``select`` blends them
    by weight (a mix of vectors: the norms' parameters are linear in it). ``toward_content`` gives the mix that
    ``--strength`` paints with: Ghiasi's interpolation from the content's own vector to the style's.
    """

    vectors: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)  # label -> the picture's path or URL, as given
    weights: dict = field(default_factory=dict)  # label -> its weight in the blend now
    content_vector: np.ndarray | None = None  # the painted content's own vector, once --strength needed it

    is_picture = True

    @property
    def name(self) -> str:
        return "+".join(self.styles)

    def select(self, style: str | None = None, mix: dict[str, float] | None = None) -> str:
        """Paint one picture (``style``, a label) or a blend of them (``mix``: {label: weight}); returns a label."""
        if mix:
            unknown = [s for s in mix if s not in self.vectors]
            if unknown:
                raise VidstyleError(f"--mix names {', '.join(unknown)}, not among the pictures ({', '.join(self.styles)})")
            weights = {s: float(w) for s, w in mix.items()}
        elif style is not None:
            if style not in self.vectors:
                raise VidstyleError(f"no picture {style!r} here (there are: {', '.join(self.styles)})")
            weights = {style: 1.0}
        else:
            weights = self.weights or {s: 1.0 / len(self.styles) for s in self.styles}
        total = sum(weights.values())
        self.weights = {s: w / total for s, w in weights.items() if w > 0}
        self.net.set_vector(self.vector())
        return "+".join(self.weights) if len(self.weights) == 1 else "+".join(f"{s}:{w:g}" for s, w in weights.items())

    def vector(self) -> np.ndarray:
        """The (100,) style vector painted now: the weighted mean of the selected pictures' vectors."""
        return sum(w * self.vectors[s] for s, w in self.weights.items()).astype(np.float32)

    def own_style(self) -> str | None:
        return None

    def temporal_strength(self) -> float | None:
        return TEMPORAL_STRENGTH

    def content_mix(self, rgb: np.ndarray, strength: float, size: int = STYLE_SIZE) -> np.ndarray:
        """The mix for ``--strength`` below 1: ``strength`` of the way from the content's own style vector (of
        ``rgb``, (H, W, 3) uint8: the first frame painted, kept for the rest of the stream) to the picture's.
        (101,) float32: the vector with a 1 appended."""
        if self.content_vector is None:
            self.content_vector = compute_vector(rgb, size)
        v = strength * self.vector() + (1.0 - strength) * self.content_vector
        return np.append(v, 1.0).astype(np.float32)

    def toward_content(self, frame, strength: float, size: int = STYLE_SIZE):
        """``content_mix`` for ``frame``, (3, H, W) torch float in [0, 1]; (101,) on the network's device."""
        import torch

        rgb = frame.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        return torch.from_numpy(self.content_mix(rgb, strength, size)).to(self.net.mix.device)

    def to_dict(self) -> dict:
        """What a worker needs to rebuild this model: the vectors and weights, as plain numbers."""
        return {"vectors": {s: v.tolist() for s, v in self.vectors.items()}, "weights": dict(self.weights),
                "sources": dict(self.sources)}

    @classmethod
    def from_dict(cls, d: dict, device: str | torch.device = "cpu", light: bool | None = None) -> "PictureStyle":
        vectors = {s: np.asarray(v, np.float32) for s, v in d["vectors"].items()}
        model = new_model(vectors, d.get("sources", {}), device, light=light)
        model.label = model.select(mix=d["weights"])
        return model

    def digest(self) -> str:
        """sha256 of the vectors and weights painted: what a manifest records in place of a model file's hash."""
        h = hashlib.sha256()
        for s in sorted(self.weights):
            h.update(f"{s}:{self.weights[s]!r}".encode())
            h.update(self.vectors[s].tobytes())
        return h.hexdigest()


def new_model(vectors: dict[str, np.ndarray], sources: dict[str, str] | None = None,
              device: str | torch.device = "cpu", *, light: bool | None = None) -> PictureStyle:
    """A PictureStyle over ``vectors`` ({label: (100,)}), painting their plain mean until ``select``. ``light``:
    its network as a ``WeightsNet`` (no PyTorch); None: so where PyTorch is not installed."""
    if light is None:
        from ..extras import has_torch

        light = not has_torch()
    if light:
        from .weights import WeightsNet

        net = WeightsNet(PICTURE_CONFIG, picture_weights(), picture=True)
    else:
        from . import arbitrary

        net = arbitrary.load_picture_net().to(device)
    styles = list(vectors)
    model = PictureStyle(net, styles, training={"scale": PAINT_SCALE, "picture_style": True}, path=None,
                         vectors=dict(vectors), sources=dict(sources or {}))
    model.label = model.select()
    return model


def label_of(spec: str) -> str:
    """A short name for a picture: its file name without the suffix (``my_painting``)."""
    from ..naming import safe_label

    name = os.path.basename(str(spec).rstrip("/").split("?", 1)[0])
    return safe_label(os.path.splitext(name)[0] or "picture")


def picture_weights() -> dict[str, np.ndarray]:
    """The picture network's weights as float32 arrays (no PyTorch), read once."""
    from ..light.vectors import network_weights

    return {k: v for k, v in network_weights().items() if not k.startswith(PREDICTOR_PREFIX)}


def picture_model(pictures: dict[str, float], *, style_size: int = STYLE_SIZE, device: str | torch.device = "cpu",
                  allow_protocols=(), max_pixels: int | None = None, light: bool | None = None) -> PictureStyle:
    """{picture path or URL: weight} -> a PictureStyle painting their blend. Each picture is read (``io.pictures``:
    one-line errors for anything unreadable), its vector taken from the cache or computed; notes (an animated
    GIF's first frame, ...) are logged."""
    from ..io.pictures import read_picture

    size = check_style_size(style_size)
    vectors, sources, weights = {}, {}, {}
    for spec, w in pictures.items():
        pic = read_picture(spec, max_pixels=max_pixels, allow_protocols=allow_protocols)
        for note in pic.notes:
            log.warning("%s", note)
        label = label_of(spec)
        while label in vectors:  # two pictures of one name from different folders
            label += "_"
        vectors[label], sources[label], weights[label] = style_vector(pic, size), str(spec), w
    model = new_model(vectors, sources, device, light=light)
    model.label = model.select(mix=weights)
    return model
