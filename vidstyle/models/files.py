"""Model files: ``.safetensors`` weights plus JSON metadata. No pickle is ever loaded.

Metadata keys (all strings, as safetensors requires):
  format    "vidstyle-model"
  arch      JSON of ArchConfig (arch name, channels, res_blocks, n_styles)
  styles    JSON list of style names, one per conditional-norm slot
  training  JSON of the training settings (style image hashes, loss weights, loss network, steps, data)
  temporal_strength  (optional) JSON {style name: strength in [0, 1]}: how strongly ``--temporal``
            stabilises that style when no ``--temporal-strength`` is given. Strong, fine brushwork wants
            a weaker blend: averaging with the warped previous frame softens strokes that move.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import VidstyleError, one_line
from .metadata import read_metadata  # noqa: F401 - part of this module's API
from .transformer import ArchConfig, TransformerNet

FORMAT = "vidstyle-model"
STYLE_IMAGE = "style_image."


@dataclass
class StyleModel:
    """A loaded network and what its file says about it."""

    net: TransformerNet
    styles: list[str]
    training: dict = field(default_factory=dict)
    path: Path | None = None
    style_images: dict = field(default_factory=dict)  # style name -> (H, W, 3) uint8 tensor, when stored
    temporal_strengths: dict = field(default_factory=dict)  # style name -> stabiliser strength, when recorded

    @property
    def name(self) -> str:
        if len(self.styles) == 1:
            return self.styles[0]
        return self.path.stem if self.path else "+".join(self.styles)

    def select(self, style: str | None = None, mix: dict[str, float] | None = None) -> str:
        """Pick one style of a multi-style model, or blend several; returns a label."""
        if mix:
            unknown = [s for s in mix if s not in self.styles]
            if unknown:
                raise VidstyleError(f"--mix names {', '.join(unknown)}, not in {self.name} "
                                    f"(it has: {', '.join(self.styles)})")
            total = math.fsum(mix.values())  # normalised in float64: 1e-50 or 1e300 would not survive float32
            self.net.set_mix([mix.get(s, 0.0) / total for s in self.styles])
            return "+".join(f"{s}:{w:g}" for s, w in mix.items())
        if style is not None:
            if style not in self.styles:
                raise VidstyleError(f"{self.name} has no style {style!r} (it has: {', '.join(self.styles)})")
            self.net.set_mix([1.0 if s == style else 0.0 for s in self.styles])
            return style
        return self.name

    def own_style(self) -> str | None:
        """The style a multi-style file stands for when none is named: the one it is named after (``udnie.safetensors``
        holding udnie), else the only style its training added (``vidstyle train --init ... --norm-only``);
        None when neither tells."""
        if self.path is not None and self.path.stem in self.styles:
            return self.path.stem
        trained = [s for s in (self.training.get("trained_styles") or []) if s in self.styles]
        return trained[0] if len(trained) == 1 else None

    def temporal_strength(self) -> float | None:
        """The stabiliser strength recorded for the style(s) selected now; None when the file has none.

        For a blend, the mix-weighted mean; a style with no recorded value counts as None (then None).
        """
        if not self.temporal_strengths:
            return None
        mix = self.net.mix.detach().float().cpu().tolist()
        used = [(w, self.temporal_strengths.get(s)) for s, w in zip(self.styles, mix) if w > 0]
        if not used or any(v is None for _, v in used):
            return None
        return sum(w * v for w, v in used) / sum(w for w, _ in used)


def model_scale(training: dict) -> int | None:
    """The short side a model was trained at (its file's ``training.scale``; older files: 1.15 x the crop)."""
    for key, factor in (("scale", 1.0), ("size", 1.15)):
        try:
            value = round(float(training.get(key) or 0) * factor)
        except (TypeError, ValueError):  # a hand-edited file: no scale rather than a traceback
            continue
        if value > 0:
            return int(value)
    return None


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


def save_model(path: str | Path, net: TransformerNet, styles: list[str], training: dict | None = None,
               half: bool = False, style_images: list | None = None,
               temporal_strengths: dict[str, float] | None = None) -> Path:
    """Write ``net`` to ``path`` (.safetensors) with its metadata, atomically.

    ``style_images`` ((H, W, 3) uint8 tensors, one per style, or None for one without) are stored too, so that
    ``vidstyle eval`` can measure the style loss without the original pictures.
    ``temporal_strengths`` ({style: strength}) become the ``--temporal`` default of those styles.
    """
    path = Path(path)
    if len(styles) != net.config.n_styles:
        raise ValueError("one style name per conditional-norm slot")
    tensors = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in net.state_dict().items()}
    for i, img in enumerate(style_images or []):  # None: no picture for that style
        if img is not None:
            tensors[f"{STYLE_IMAGE}{i}"] = img.to(torch.uint8).cpu().contiguous()
    meta = {
        "format": FORMAT,
        "arch": json.dumps(net.config.to_dict()),
        "styles": json.dumps(list(styles)),
        "training": json.dumps(training or {}, default=str),
    }
    if temporal_strengths:
        meta["temporal_strength"] = json.dumps(check_temporal_strengths(temporal_strengths, list(styles), str(path)))
    return write_safetensors(path, tensors, meta)


def write_safetensors(path: Path, tensors: dict, meta: dict) -> Path:
    """``save_file`` to a temporary file beside ``path`` that then replaces it: never half a model file."""
    from ..io.atomic import AtomicPath

    atomic = AtomicPath(path)
    try:
        save_file(tensors, str(atomic.tmp), metadata=meta)
        atomic.commit()
    except BaseException:
        atomic.discard()
        raise
    return path


def with_temporal_strengths(src: str | Path, dst: str | Path, strengths: dict[str, float], *,
                            overwrite: bool = False) -> Path:
    """Copy the model file ``src`` to ``dst`` with ``strengths`` ({style: strength}) recorded in it.

    The weights and the other metadata are copied untouched; styles not named keep the strength they
    had. ``dst`` may be ``src`` (with ``overwrite``): it is replaced atomically.
    """
    from ..io.atomic import check_target

    src, dst = Path(src), Path(dst)
    model = load_model(src)  # checks the file as a whole, one-line errors
    check_target(dst, overwrite)
    merged = {**model.temporal_strengths, **check_temporal_strengths(strengths, model.styles, str(src))}
    meta = read_metadata(src)
    meta["temporal_strength"] = json.dumps(merged)
    return write_safetensors(dst, load_file(str(src)), meta)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> StyleModel:
    """Load a model file; every problem is a one-line VidstyleError."""
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
    shapes = _stored_shapes(path)
    try:
        with torch.device("meta"):  # the shapes the metadata asks for, without allocating a weight
            expected = {k: tuple(v.shape) for k, v in TransformerNet(config).state_dict().items()}
    except Exception as e:
        raise VidstyleError(f"{path}: cannot build architecture {meta['arch']} ({one_line(e, 160)})") from None
    weights = {k: v for k, v in shapes.items() if not k.startswith(STYLE_IMAGE)}
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    bad = [k for k in expected if k in weights and weights[k] != expected[k]]
    if missing or extra or bad:
        what = (f"{bad[0]} has shape {weights[bad[0]]}, expected {expected[bad[0]]}"
                if bad else f"missing {missing[:2]}" if missing else f"unexpected {extra[:2]}")
        raise VidstyleError(f"{path} does not match its architecture ({config.arch}): {what}")
    try:
        state = load_file(str(path))
    except Exception as e:
        raise VidstyleError(f"{path} is not a readable .safetensors model file ({one_line(e, 160)})") from None
    pictures = {k: state.pop(k) for k in [k for k in state if k.startswith(STYLE_IMAGE)]}
    net = TransformerNet(config)
    net.load_state_dict({k: v.float() for k, v in state.items()})
    net.eval().requires_grad_(False)
    # NaN or infinity anywhere makes the sum so (numpy: a few ms; torch's reductions take 30x longer here)
    broken = next((k for k, v in net.state_dict().items() if not np.isfinite(v.detach().numpy().sum())), None)
    if broken is not None:  # it would paint black, or noise, without a word
        raise VidstyleError(f"{path} is broken: its weights hold NaN or infinite numbers ({broken})")
    images = {styles[int(k[len(STYLE_IMAGE):])]: v for k, v in pictures.items()
              if k[len(STYLE_IMAGE):].isdigit() and int(k[len(STYLE_IMAGE):]) < len(styles)}
    strengths = check_temporal_strengths(strengths, styles, str(path))
    return StyleModel(net.to(device), styles, training, path, images, strengths)


# What a model file may ask for: the bundled network has (32, 64, 128) channels and 5 blocks; these bounds leave
# room for larger ones while refusing metadata that would build a network of gigabytes before a weight is read.
MAX_CHANNELS = 1024
MAX_RES_BLOCKS = 64
MAX_STYLES = 4096


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
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError ...: one line
        raise VidstyleError(f"{path} is not a readable .safetensors model file ({one_line(e, 160)})") from None
