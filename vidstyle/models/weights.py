"""A model file read with NumPy alone, and ``WeightsNet``: its network as weights, for the light install.

``read_model_file`` checks a ``.safetensors`` model file the way ``files.load_model`` always did (metadata,
architecture bounds, every tensor's shape, no NaN) and returns its parts as NumPy arrays; both paths load through
it. ``WeightsNet`` stands where a ``TransformerNet`` stands in a ``StyleModel`` when PyTorch is absent: it holds the
weights and the style mix (``set_mix``) or a picture's vector (``set_vector``); ``vidstyle.light.graph`` builds the
OpenVINO graph from it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import VidstyleError, one_line
from .config import VECTOR, ArchConfig, state_shapes
from .metadata import read_metadata

FORMAT = "vidstyle-model"
STYLE_IMAGE = "style_image."
# What a model file may ask for: the bundled network has (32, 64, 128) channels and 5 blocks; these bounds leave
# room for larger ones while refusing metadata that would build a network of gigabytes before a weight is read.
MAX_CHANNELS = 1024
MAX_RES_BLOCKS = 64
MAX_STYLES = 4096


@dataclass
class ModelFile:
    """What a model file holds: ``weights`` {name: float32 array} of a ``TransformerNet(config)``, ``styles`` (one name
    per norm row), ``training`` (its settings), ``pictures`` {style: (H, W, 3) uint8} stored with it, and
    ``strengths`` {style: --temporal strength} recorded in it."""

    path: Path
    config: ArchConfig
    weights: dict
    styles: list
    training: dict = field(default_factory=dict)
    pictures: dict = field(default_factory=dict)
    strengths: dict = field(default_factory=dict)


def check_temporal_strengths(values: dict, styles: list[str], where: str) -> dict[str, float]:
    """{style: strength} from a file or the command line -> the same, checked (VidstyleError otherwise)."""
    if not isinstance(values, dict):
        raise VidstyleError(f"{where}: temporal_strength must map style names to numbers")
    out = {}
    for name, v in values.items():
        if name not in styles:
            raise VidstyleError(f"{where}: temporal strength for {name!r}, which is not one of its styles "
                                f"({', '.join(styles)})")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
            raise VidstyleError(f"{where}: the temporal strength of {name} must be a number from 0 to 1, not {v!r}")
        out[str(name)] = float(v)
    return out


def read_model_file(path: str | Path) -> ModelFile:
    """Read and check a model file; every problem is a one-line VidstyleError. No pickle, no PyTorch."""
    path = Path(path)
    if not path.is_file():
        raise VidstyleError(f"model file not found: {path}")
    meta = read_metadata(path)
    if meta.get("format") != FORMAT:
        raise VidstyleError(f"{path} is a .safetensors file but not a vidstyle model (no vidstyle metadata)")
    try:
        arch, training = json.loads(meta["arch"]), json.loads(meta.get("training", "{}"))
        strengths = json.loads(meta.get("temporal_strength", "{}"))
        for key, value in (("arch", arch), ("training", training), ("temporal_strength", strengths)):
            if not isinstance(value, dict):
                raise ValueError(f"{key} is not a JSON object")
        config = ArchConfig.from_dict(arch)
        styles = [str(s) for s in json.loads(meta.get("styles", "[]"))] or [path.stem]
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise VidstyleError(f"{path} has broken metadata ({one_line(e, 160)})") from None
    _check_arch(config, styles, path)
    expected = state_shapes(config)
    shapes = _stored_shapes(path)
    weights = {k: v for k, v in shapes.items() if not k.startswith(STYLE_IMAGE)}
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    bad = [k for k in expected if k in weights and weights[k] != expected[k]]
    if missing or extra or bad:
        what = (f"{bad[0]} has shape {weights[bad[0]]}, expected {expected[bad[0]]}"
                if bad else f"missing {missing[:2]}" if missing else f"unexpected {extra[:2]}")
        raise VidstyleError(f"{path} does not match its architecture ({config.arch}): {what}")
    from safetensors.numpy import load_file

    try:
        state = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError, a dtype NumPy lacks ...: one line
        raise VidstyleError(f"{path} is not a readable .safetensors model file ({one_line(e, 160)})") from None
    pictures = {k: state.pop(k) for k in [k for k in state if k.startswith(STYLE_IMAGE)]}
    weights = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}
    # NaN or infinity anywhere makes the sum so (a few ms)
    broken = next((k for k, v in weights.items() if not np.isfinite(v.sum())), None)
    if broken is not None:  # it would paint black, or noise, without a word
        raise VidstyleError(f"{path} is broken: its weights hold NaN or infinite numbers ({broken})")
    images = {styles[int(k[len(STYLE_IMAGE):])]: v for k, v in pictures.items()
              if k[len(STYLE_IMAGE):].isdigit() and int(k[len(STYLE_IMAGE):]) < len(styles)}
    strengths = check_temporal_strengths(strengths, styles, str(path))
    return ModelFile(path, config, weights, styles, training, images, strengths)


def _check_arch(config: ArchConfig, styles: list[str], path: Path) -> None:
    """The architecture named in a file's metadata, within sane bounds, one style name per norm row."""
    if len(config.channels) != 3 or not all(1 <= c <= MAX_CHANNELS for c in config.channels):
        raise VidstyleError(f"{path} has broken metadata: channels {list(config.channels)} (three numbers from 1 to "
                            f"{MAX_CHANNELS})")
    if not 0 <= config.res_blocks <= MAX_RES_BLOCKS:
        raise VidstyleError(f"{path} has broken metadata: res_blocks {config.res_blocks} (0 to {MAX_RES_BLOCKS})")
    if not 1 <= config.n_styles <= MAX_STYLES:
        raise VidstyleError(f"{path} has broken metadata: n_styles {config.n_styles} (1 to {MAX_STYLES})")
    if len(styles) != config.n_styles:
        raise VidstyleError(f"{path} has broken metadata: {len(styles)} style names for the {config.n_styles} "
                            "styles of its network")


def _stored_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape, from the file's header (no tensor is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError ...: one line
        raise VidstyleError(f"{path} is not a readable .safetensors model file ({one_line(e, 160)})") from None


class WeightsNet:
    """A style network as weights, without PyTorch: what ``StyleModel.net`` is in the light install.

    ``weights``: {name: float32 array} of a ``TransformerNet(config)`` (``picture``: of the picture network,
    ``models.arbitrary.PictureNet``). ``mix``: (n_styles,) float32, the style weights painted now (one-hot on
    style 0 at first); for the picture network, the style vector with a 1 appended (101,).
    """

    def __init__(self, config: ArchConfig, weights: dict, *, picture: bool = False):
        self.config = config
        self.weights = weights
        self.picture = picture
        self.mix = np.zeros(config.n_styles, np.float32)
        self.mix[-1 if picture else 0] = 1.0

    def set_mix(self, weights) -> None:
        """Choose the style(s): n_styles non-negative weights (normalised here)."""
        if self.picture:
            raise TypeError("the picture network paints a style vector: set_vector(vector), not set_mix")
        w = np.asarray(weights, np.float64).reshape(-1)
        if w.size != self.config.n_styles or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"style mix needs {self.config.n_styles} non-negative weights, got {weights}")
        self.mix = (w / w.sum()).astype(np.float32)

    def set_vector(self, vector) -> None:
        """Paint with the style vector ``vector`` ((100,) numbers) from now on (the picture network)."""
        v = np.asarray(vector, np.float32).reshape(-1)
        if v.size != VECTOR or not np.isfinite(v).all():
            raise ValueError(f"a style vector has {VECTOR} finite numbers, not {v.shape}")
        self.mix = np.append(v, np.float32(1.0)).astype(np.float32)

    def state_dict(self) -> dict:
        return self.weights
