"""A training run's options (``TrainConfig``) and the checks of their values, before any slow work."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import VidstyleError
from . import losses as L
from .data import photo_scale


@dataclass
class TrainConfig:
    styles: list[str]                      # style image paths
    data: str                              # folder of content photos
    output: str | None = None              # model file; default <user models>/<style>.safetensors
    video_data: str | None = None          # folder of frame folders / videos for real frame pairs
    flow: str = "dis"
    arch: str = "transformer"
    # The defaults are the recipe of the bundled models (docs/MODELS.md); the CLI shares them (tested).
    size: int = 128
    photo_size: int | None = 256           # photos scaled to this short side before cropping (None: size*1.15)
    style_size: int = 384
    batch_size: int = 2
    steps: int = 40000
    minutes: float | None = None           # a budget: stop (and write the model) after this many minutes of training
    lr: float = 1e-3
    seed: int = 0
    content_weight: float = 2.0
    content_layer: str = "relu3_3"         # as Gatys's optimisation: relu2_2 keeps every edge, so only a fine texture fits
    style_weight: float = 0.5
    style_scales: dict[str, float] = field(default_factory=dict)  # style name -> factor on style_weight
    style_norm: str = "relative"           # relative: each layer's Gram error over the style's own (every layer counts)
    style_octaves: int = 1                 # the style loss also at 1/2, 1/4 .. of the output against the painting at 1/2, 1/4 ..
    content_octave: int = 0                # compare content at 1/2**N of the size: the subject, not every fine edge
    tv_weight: float = 2.0
    layout_weight: float = 10.0            # the photo's coarse light and dark (losses.layout_loss)
    colour_weight: float = 10.0            # the painting's distribution of colours (losses.colour_loss)
    targets: str | None = None             # folder of painted targets: targets/STYLE/REL.png per photo REL of --data
    target_weight: float = 10.0            # weight of the L1 distance to them (with --targets)
    clip_grad: float = 10.0                # max gradient norm (0: no clipping); non-finite steps are always skipped
    ema: float = 0.0                       # decay of a moving average of the weights, written as the model (0: off)
    temporal: str = "output"               # output | reconet | none
    temporal_weight: float = 30.0
    feature_temporal_weight: float = 0.0
    loss_net: str = "auto"
    device: str = "auto"
    run_dir: str | None = None             # checkpoints, CSV log, previews
    checkpoint_every: int = 200
    preview_every: int = 0                 # steps between previews (0: only by time)
    preview_minutes: float = 10.0          # minutes between previews and status lines (0: only by steps)
    overwrite: bool = False                # replace an existing output model
    resume: str | None = None
    init: str | None = None                # warm start: the weights of a model file or checkpoint, new recipe
    norm_only: bool = False                # train only the styles' norm rows; the --init file's other styles are kept
    threads: int | None = None
    precision: str = "auto"                # auto | fp32 | bf16 (auto: bf16 on CUDA and on CPUs with bf16 maths)
    loss_padding: str = "reflect"          # the loss network's conv padding: reflect (no border bands) or zeros
    data_limit: int | None = None
    names: list[str] = field(default_factory=list)  # style names; default the image stems

    @property
    def style_names(self) -> list[str]:
        """The names of the styles this run trains: ``names``, or the style images' stems."""
        return self.names or [Path(x).stem for x in self.styles]

    # options a resumed run must share with the checkpoint
    MATCH = ("arch", "size", "photo_size", "style_size", "batch_size", "seed", "content_weight", "content_layer",
             "style_weight", "style_scales", "style_norm", "style_octaves", "content_octave", "tv_weight", "layout_weight", "colour_weight",
             "temporal", "temporal_weight", "feature_temporal_weight", "lr",
             # these change the losses or the data order too; a checkpoint from before they were
             # recorded has no value for them and is not refused for them
             "data", "data_limit", "video_data", "flow", "loss_net", "loss_padding", "clip_grad", "precision",
             "norm_only", "targets", "target_weight")


def same_option(key: str, old, new, size: int | None = None) -> bool:
    """Whether a checkpoint's value of option ``key`` is this run's (folders: the same folder by any name;
    ``photo_size``: the same scale for the crop ``size``, None being 1.15 x it)."""
    if old == new:
        return True
    if key == "photo_size" and size:
        return photo_scale(size, old) == photo_scale(size, new)
    if key in ("data", "video_data") and old and new:
        return Path(old).resolve() == Path(new).resolve()
    return False


def check_numbers(cfg: TrainConfig) -> None:
    """Refuse numbers that would end in a traceback, or in a run whose every step is skipped."""
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise VidstyleError(f"--lr must be a number above 0, not {cfg.lr}")
    weights = {"--content-weight": cfg.content_weight, "--style-weight": cfg.style_weight, "--tv-weight": cfg.tv_weight,
               "--layout-weight": cfg.layout_weight, "--colour-weight": cfg.colour_weight,
               "--target-weight": cfg.target_weight,
               "--temporal-weight": cfg.temporal_weight, "--feature-temporal-weight": cfg.feature_temporal_weight,
               "--clip-grad": cfg.clip_grad, "--preview-minutes": cfg.preview_minutes,
               **({"--minutes": cfg.minutes} if cfg.minutes is not None else {})}
    for option, value in weights.items():
        if not (math.isfinite(value) and value >= 0):
            raise VidstyleError(f"{option} must be a number of 0 or more, not {value}")
    if not (math.isfinite(cfg.ema) and 0 <= cfg.ema < 1):
        raise VidstyleError(f"--ema must be 0 (off) or a decay below 1 such as 0.999, not {cfg.ema}")
    if cfg.threads is not None and cfg.threads < 1:
        raise VidstyleError(f"--threads must be at least 1, not {cfg.threads}")


def check_choices(cfg: TrainConfig) -> None:
    """Refuse options out of their choices, and styles a model could not tell apart or a --style-scale names
    wrongly."""
    if not cfg.styles:
        raise VidstyleError("give at least one style image")
    if cfg.content_layer not in L.STYLE_LAYERS:
        raise VidstyleError(f"--content-layer must be one of {', '.join(L.STYLE_LAYERS)}, not {cfg.content_layer!r}")
    if cfg.style_norm not in ("relative", "none"):
        raise VidstyleError(f"--style-norm must be relative or none, not {cfg.style_norm!r}")
    if cfg.style_octaves < 1 or cfg.size >> (cfg.style_octaves - 1) < 32:
        raise VidstyleError(f"--style-octaves must be at least 1, and leave the --size {cfg.size} crop at least "
                            f"32 px at the coarsest octave, not {cfg.style_octaves}")
    if cfg.content_octave < 0 or cfg.size >> cfg.content_octave < 32:
        raise VidstyleError(f"--content-octave must be at least 0, and leave the --size {cfg.size} crop at least "
                            f"32 px, not {cfg.content_octave}")
    if cfg.temporal not in ("output", "reconet", "none"):
        raise VidstyleError(f"--temporal-loss must be output, reconet or none, not {cfg.temporal!r}")
    names = cfg.style_names
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise VidstyleError(f"two style images are named {', '.join(twice)}: a model finds its styles by name; "
                            "rename one of the files")
    unknown = sorted(set(cfg.style_scales) - set(names))
    if unknown:
        raise VidstyleError(f"--style-scale names {', '.join(unknown)}, not a style of this run "
                            f"({', '.join(names)})")
    bad = [f"{n}={v}" for n, v in cfg.style_scales.items() if not (math.isfinite(v) and v > 0)]
    if bad:
        raise VidstyleError(f"--style-scale factors must be above 0: {', '.join(bad)}")


def style_weights(cfg: TrainConfig) -> list[float]:
    """The style weight of each style: --style-weight times its --style-scale factor (default 1)."""
    return [cfg.style_weight * cfg.style_scales.get(n, 1.0) for n in cfg.style_names]


def check_folder(path: Path, what: str) -> None:
    """Refuse a folder that is a file or cannot be made or written in: found out otherwise only when writing."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise VidstyleError(f"{what} {path} cannot be a folder: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise VidstyleError(f"{what} {path}: no permission to write in {existing}")


def check_paths(cfg: TrainConfig, output: Path, run_dir: Path) -> None:
    """Refuse input and output paths that would fail only after the training: the model file ``output`` and
    the ``run_dir`` must be writable, the --resume file and the --data folder be there."""
    if cfg.resume and not Path(cfg.resume).is_file():
        raise VidstyleError(f"resume file not found: {cfg.resume}")
    data = Path(cfg.data)
    if data.exists() and not data.is_dir():
        raise VidstyleError(f"--data is a file, not a folder of photos: {data}")
    if output.suffix != ".safetensors":
        raise VidstyleError(f"--output must end in .safetensors: {output}")
    if output.is_dir():
        raise VidstyleError(f"--output is a folder: {output}")
    if output.exists() and not cfg.overwrite:
        raise VidstyleError(f"{output} exists; pass --overwrite to replace it, or choose another --output")
    check_folder(output.parent, "--output folder")
    check_folder(run_dir, "--run-dir")
