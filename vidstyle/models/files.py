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

from ..errors import VidstyleError
from .config import ArchConfig  # noqa: F401 - part of this module's API
from .metadata import read_metadata  # noqa: F401 - part of this module's API
from ..io.atomic import save_file, write_safetensors  # noqa: F401 - part of this module's API
from . import registry
from .style_file import is_style_file, read_style_file
from .weights import (FORMAT, MAX_CHANNELS, MAX_RES_BLOCKS, MAX_STYLES, STYLE_IMAGE,  # noqa: F401 - this module's API
                      ModelFile, WeightsNet, check_temporal_strengths, read_model_file)


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

    def mix_array(self) -> np.ndarray:
        """The style mix painted now, (n_styles,) float32, whether the network is torch's or plain weights."""
        mix = self.net.mix
        return np.asarray(mix.detach().float().cpu() if hasattr(mix, "detach") else mix, np.float32)

    def temporal_strength(self) -> float | None:
        """The stabiliser strength recorded for the style(s) selected now; None when the file has none.

        For a blend, the mix-weighted mean; a style with no recorded value counts as None (then None).
        """
        if not self.temporal_strengths:
            return None
        mix = self.mix_array().tolist()
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


def save_model(path: str | Path, net: TransformerNet, styles: list[str], training: dict | None = None,
               half: bool = False, style_images: list | None = None,
               temporal_strengths: dict[str, float] | None = None) -> Path:
    """Write ``net`` to ``path`` (.safetensors) with its metadata, atomically.

    ``style_images`` ((H, W, 3) uint8 tensors, one per style, or None for one without) are stored too, so that
    ``vidstyle eval`` can measure the style loss without the original pictures.
    ``temporal_strengths`` ({style: strength}) become the ``--temporal`` default of those styles.
    """
    import torch

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


def with_temporal_strengths(src: str | Path, dst: str | Path, strengths: dict[str, float], *,
                            overwrite: bool = False) -> Path:
    """Copy the model file ``src`` to ``dst`` with ``strengths`` ({style: strength}) recorded in it.

    The weights and the other metadata are copied untouched; styles not named keep the strength they
    had. ``dst`` may be ``src`` (with ``overwrite``): it is replaced atomically.
    """
    from safetensors.numpy import load_file

    from ..io.atomic import check_target

    src, dst = Path(src), Path(dst)
    model = load_model(src, light=True)  # checks the file as a whole, one-line errors (no PyTorch needed)
    check_target(dst, overwrite)
    merged = {**model.temporal_strengths, **check_temporal_strengths(strengths, model.styles, str(src))}
    meta = read_metadata(src)
    meta["temporal_strength"] = json.dumps(merged)
    return write_safetensors(dst, load_file(str(src)), meta)


def read_any(path: str | Path) -> ModelFile:
    """A model file, or a style file with its base network (``registry.find_base``) and its style in it, checked:
    what ``load_model`` loads; one-line VidstyleErrors."""
    if is_style_file(path):
        return read_style_file(path, registry.find_base(Path(path)))
    return read_model_file(path)


def load_model(path: str | Path, device: str | torch.device = "cpu", *, light: bool = False) -> StyleModel:
    """Load a model file, or a style file (``style_file``: its base network with its style in it); every problem is a one-line VidstyleError. ``light``: its network as a ``WeightsNet``
    (NumPy weights, for ``vidstyle.light``: PyTorch is not imported), else a ``TransformerNet`` on ``device``."""
    f = read_any(path)
    if light:
        net = WeightsNet(f.config, f.weights)
        images = f.pictures
    else:
        import torch

        from .transformer import TransformerNet

        net = TransformerNet(f.config)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in f.weights.items()})
        net.eval().requires_grad_(False).to(device)
        images = {k: torch.from_numpy(v) for k, v in f.pictures.items()}
    return StyleModel(net, f.styles, f.training, f.path, images, f.strengths)
