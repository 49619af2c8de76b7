"""The training loop: one or several styles, perceptual + temporal losses, checkpoints and exact resume."""
from __future__ import annotations

import contextlib
import csv
import hashlib
import copy
import json
import logging
import math
import os
import shutil
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..errors import Terminated, VidstyleError, one_line
from ..io.images import read_image
from ..io.writer import AtomicPath, raises_terminated, stop_signals
from ..models.files import save_model
from ..models.transformer import TransformerNet, arch_config
from .. import precision
from . import losses as L
from .data import Photos, VideoPairs, photo_scale, synthetic_pair
from .lossnet import MIN_SIDE, load_loss_net

log = logging.getLogger("vidstyle")


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


def _file_hash(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _style_image(path: str, max_side: int) -> torch.Tensor:
    p = Path(path)
    if not p.is_file():
        raise VidstyleError(f"style image not found: {path}")
    rgb = read_image(p)
    h, w = rgb.shape[:2]
    if min(h, w) < 64:
        raise VidstyleError(f"style image {path} is too small ({w}x{h}); use one at least 64 px on each side")
    s = max_side / max(h, w)
    rgb = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255


def _halve(x: torch.Tensor, times: int) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 3, H / 2**times, W / 2**times), by averaging 2x2 blocks."""
    for _ in range(times):
        x = F.avg_pool2d(x, 2)
    return x


def _picture(style: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) float in [0, 1] -> (H, W, 3) uint8, as model files store style pictures."""
    return (style[0].permute(1, 2, 0) * 255).round().byte()


def _finite(net: torch.nn.Module) -> bool:
    return all(torch.isfinite(p).all() for p in net.parameters())


def _hms(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _grid(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) -> (H, N*W, 3) uint8."""
    return (images.clamp(0, 1) * 255).round().byte().permute(2, 0, 3, 1).reshape(images.shape[2], -1, 3).cpu().numpy()


def _same_option(key: str, old, new, size: int | None = None) -> bool:
    """Whether a checkpoint's value of option ``key`` is this run's (folders: the same folder by any name;
    ``photo_size``: the same scale for the crop ``size``, None being 1.15 x it)."""
    if old == new:
        return True
    if key == "photo_size" and size:
        return photo_scale(size, old) == photo_scale(size, new)
    if key in ("data", "video_data") and old and new:
        return Path(old).resolve() == Path(new).resolve()
    return False


@contextlib.contextmanager
def _signals_held():
    """Inside: a Ctrl-C (SIGINT), SIGTERM or SIGHUP is recorded, not raised; the block gets the list of the
    ones that came, for the caller to raise (``_raise_held``) when its step is done and logged.

    Only in the main thread, and only signals that would raise there (Python's Ctrl-C handler, and
    ``io.writer.stop_signals``' for SIGTERM and SIGHUP): an ignored signal stays ignored, a handler of the
    caller's stays in charge, and a signal left to kill the process still does.
    """
    hits: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield hits
        return
    taken = {}
    for s in [signal.SIGINT, *(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))]:
        old = signal.getsignal(s)
        if old is signal.default_int_handler or raises_terminated(old):
            taken[s] = signal.signal(s, lambda signum, frame: hits.append(signum))
    try:
        yield hits
    finally:
        for s, old in taken.items():
            signal.signal(s, old)


def _raise_held(hits: list[int]) -> None:
    """Raise what ``_signals_held`` recorded: KeyboardInterrupt for Ctrl-C, ``Terminated`` for the others."""
    if not hits:
        return
    if hits[0] == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(hits[0])


def _previous(checkpoint: Path) -> Path:
    """Where the checkpoint that ``checkpoint`` replaces is kept: ``checkpoint-prev.safetensors`` beside it."""
    return checkpoint.with_name(checkpoint.stem + "-prev" + checkpoint.suffix)


def _run_id(path: Path) -> str | None:
    """The run id a training checkpoint records; None for a checkpoint from before run ids, or no checkpoint."""
    from ..models.metadata import read_metadata

    try:
        return read_metadata(path).get("run_id")
    except VidstyleError:  # unreadable: the resume itself says so
        return None


def read_checkpoint(path: Path, what: str = "checkpoint") -> tuple[dict, dict, dict[str, torch.Tensor]]:
    """A training checkpoint's (metadata, config, tensors), or a one-line VidstyleError.

    ``config`` is the TrainConfig it was made with; options it predates get the values training used then.
    """
    from safetensors import safe_open

    if not path.is_file():
        raise VidstyleError(f"{what} not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        config = json.loads(meta["config"])
        tensors = load_file(str(path))
    except Exception:
        raise VidstyleError(f"{path} is not a vidstyle training checkpoint") from None
    config.setdefault("content_layer", "relu2_2")  # checkpoints from before --content-layer
    config.setdefault("style_norm", "none")  # and from before --style-norm
    config.setdefault("style_scales", {})  # and from before --style-scale
    config.setdefault("layout_weight", 0.0)  # and from before --layout-weight
    config.setdefault("colour_weight", 0.0)  # and from before --colour-weight
    config.setdefault("style_octaves", 1)  # and from before --style-octaves
    config.setdefault("content_octave", 0)  # and from before --content-octave
    config.setdefault("photo_size", None)  # and from before --photo-size (photos at 1.15 x the crop)
    config.setdefault("loss_padding", "zeros")  # and from before --loss-padding
    config.setdefault("clip_grad", 0.0)  # and from before --clip-grad
    config.setdefault("norm_only", False)  # and from before --norm-only
    config.setdefault("targets", None)  # and from before --targets
    config.setdefault("target_weight", 10.0)
    return meta, config, tensors


def result_weights(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint's network as its run writes it: the moving average of a run with --ema, else the last
    step's weights (a state dict for ``TransformerNet``)."""
    prefix = "ema." if any(k.startswith("ema.") for k in tensors) else "net."
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


NORM_KEYS = (".norm.weight", ".norm.bias")  # the per-style (gamma, beta) rows of StyleNorm


def _file_styles(path: Path, what: str) -> list[str]:
    """The style names a model file or training checkpoint holds, in its order (one-line errors)."""
    from ..models.metadata import read_metadata

    if not path.is_file():
        raise VidstyleError(f"{what} not found: {path}")
    try:
        names = json.loads(read_metadata(path).get("styles", "[]"))
    except (VidstyleError, ValueError):
        raise VidstyleError(f"{what} {path} is not a vidstyle model file or training checkpoint") from None
    return [str(n) for n in names] or [path.stem]


KEPT_PICTURE = "kept_picture."  # checkpoint tensors: the pictures of the styles a --norm-only run keeps


def _kept_from_checkpoint(meta: dict, config: dict, tensors: dict) -> tuple[dict, dict[str, float]]:
    """What a --norm-only checkpoint holds of the --init model's kept styles: ({name: picture}, {name: strength})."""
    if "kept_strengths" not in meta and config.get("norm_only") and config.get("init"):
        # the first --norm-only checkpoints (2026-11-27) did not store them: the --init model file, if still there
        from ..models.files import load_model

        trained = set(config.get("names") or [Path(s).stem for s in config.get("styles", [])])
        try:
            model = load_model(config["init"])
        except VidstyleError:
            return {}, {}
        return ({n: v for n, v in model.style_images.items() if n not in trained},
                {n: v for n, v in model.temporal_strengths.items() if n not in trained})
    pictures = {k[len(KEPT_PICTURE):]: v for k, v in tensors.items() if k.startswith(KEPT_PICTURE)}
    return pictures, {str(k): float(v) for k, v in json.loads(meta.get("kept_strengths", "{}")).items()}


def training_record(cfg: "TrainConfig", step: int, seconds: float, *, scale: int, loss_net: str, precision: str,
                    images: int | None, final_losses: dict | None, device: str, world_size: int) -> dict:
    """The ``training`` metadata of a model file: how it was made."""
    return {
        "style_images": [Path(s).name for s in cfg.styles],
        "style_sha256": [_file_hash(s) if Path(s).is_file() else None for s in cfg.styles],
        "loss_net": loss_net, "steps": step, "size": cfg.size, "batch_size": cfg.batch_size,
        # the short side of the pictures the network learnt on: brush strokes are painting-sized at it
        "scale": scale, "style_size": cfg.style_size, "precision": precision,
        "data": str(cfg.data), "video_data": cfg.video_data, "images": images,
        "content_layer": cfg.content_layer, "style_norm": cfg.style_norm, "clip_grad": cfg.clip_grad,
        "weights": {"content": cfg.content_weight, "style": cfg.style_weight, "tv": cfg.tv_weight,
                    "layout": cfg.layout_weight, "colour": cfg.colour_weight, "temporal": cfg.temporal_weight, "feature_temporal": cfg.feature_temporal_weight,
                    "target": cfg.target_weight if cfg.targets else 0.0},
        "targets": Path(cfg.targets).name if cfg.targets else None,
        "style_scales": dict(cfg.style_scales),
        "temporal": cfg.temporal, "lr": cfg.lr, "seed": cfg.seed, "ema": cfg.ema, "final_losses": final_losses,
        "init": Path(cfg.init).name if cfg.init else None, "norm_only": cfg.norm_only,
        "trained_styles": cfg.style_names,  # style_images' names
        "seconds": round(seconds, 1), "device": device, "world_size": world_size,
    }


def model_from_checkpoint(checkpoint: str | Path, output: str | Path, *, overwrite: bool = False,
                          temporal_strengths: dict[str, float] | None = None) -> Path:
    """Write the model file of a training checkpoint, e.g. while that training goes on.

    The weights are the ones ``vidstyle train`` writes: the moving average of a run with ``--ema``, else the
    last step's. The metadata is the one ``vidstyle train`` writes at its end, less what only the running trainer
    knows (the photo count, the last losses: ``None``; the loss network is the checkpoint's record of it,
    ``none`` for a run that learnt from --targets alone); the style pictures
    are stored when their files are still where the checkpoint says. ``temporal_strengths``
    ({style: strength}) become those styles' ``--temporal`` default.
    """
    import dataclasses

    checkpoint, output = Path(checkpoint), Path(output)
    if output.exists() and not overwrite:
        raise VidstyleError(f"{output} exists; pass --overwrite to replace it")
    meta, config, tensors = read_checkpoint(checkpoint)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in config.items() if k in known})
    names = json.loads(meta.get("styles", "[]")) or [Path(s).stem for s in cfg.styles]
    net = TransformerNet(arch_config(cfg.arch, len(names)))
    try:
        net.load_state_dict(result_weights(tensors))
    except RuntimeError:
        raise VidstyleError(f"{checkpoint} does not hold a {cfg.arch} network with {len(names)} styles") from None
    if not _finite(net):
        raise VidstyleError(f"{checkpoint} holds weights that are not finite")
    trained = cfg.style_names
    pictures, strengths = _kept_from_checkpoint(meta, config, tensors)  # a --norm-only run's kept styles
    if all(Path(s).is_file() for s in cfg.styles):
        pictures.update({n: _picture(_style_image(s, cfg.style_size)) for n, s in zip(trained, cfg.styles)})
    strengths.update(temporal_strengths or {})
    training = training_record(cfg, int(meta["step"]), float(meta.get("seconds", 0.0)),
                               scale=photo_scale(cfg.size, cfg.photo_size),
                               loss_net=meta.get("loss_net_source") or cfg.loss_net, precision=cfg.precision,
                               images=None, final_losses=None,
                               device="unknown", world_size=1)
    training["checkpoint"] = checkpoint.name
    output.parent.mkdir(parents=True, exist_ok=True)
    return save_model(output, net.eval(), names, training, style_images=[pictures.get(n) for n in names],
                      temporal_strengths=strengths or None)


def _check_numbers(cfg: TrainConfig) -> None:
    """Refuse numbers that would end in a traceback, or in a run whose every step is skipped."""
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise VidstyleError(f"--lr must be a number above 0, not {cfg.lr}")
    weights = {"--content-weight": cfg.content_weight, "--style-weight": cfg.style_weight, "--tv-weight": cfg.tv_weight,
               "--layout-weight": cfg.layout_weight, "--colour-weight": cfg.colour_weight,
               "--target-weight": cfg.target_weight,
               "--temporal-weight": cfg.temporal_weight, "--feature-temporal-weight": cfg.feature_temporal_weight,
               "--clip-grad": cfg.clip_grad, "--preview-minutes": cfg.preview_minutes}
    for option, value in weights.items():
        if not (math.isfinite(value) and value >= 0):
            raise VidstyleError(f"{option} must be a number of 0 or more, not {value}")
    if not (math.isfinite(cfg.ema) and 0 <= cfg.ema < 1):
        raise VidstyleError(f"--ema must be 0 (off) or a decay below 1 such as 0.999, not {cfg.ema}")
    if cfg.threads is not None and cfg.threads < 1:
        raise VidstyleError(f"--threads must be at least 1, not {cfg.threads}")


def _check_folder(path: Path, what: str) -> None:
    """Refuse a folder that is a file or cannot be made or written in: found out otherwise only when writing."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise VidstyleError(f"{what} {path} cannot be a folder: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise VidstyleError(f"{what} {path}: no permission to write in {existing}")


def _world() -> tuple[int, int, int]:
    """(world size, rank, local rank) from torchrun's environment; (1, 0, 0) in a plain process."""
    env = os.environ
    return int(env.get("WORLD_SIZE", "1")), int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0"))


class Trainer:
    """Trains one network on one or several styles.

    Under torchrun (``WORLD_SIZE`` > 1) it trains with DistributedDataParallel: NCCL on GPUs, gloo on CPUs.
    ``batch_size`` stays the global batch, split evenly over the ranks; each rank draws from its own shard
    of the photos; rank 0 alone writes the log, previews, checkpoints and the model.
    """

    def __init__(self, cfg: TrainConfig, progress: Callable[[int, int, dict], None] | None = None):
        from ..stylizer import pick_device

        self.cfg = cfg
        self.world, self.rank, local_rank = _world()
        self.main = self.rank == 0
        if cfg.batch_size % self.world:
            raise VidstyleError(f"--batch-size {cfg.batch_size} does not split over {self.world} processes")
        self.progress = progress
        _check_numbers(cfg)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
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
        self.names = cfg.style_names
        twice = sorted({n for n in self.names if self.names.count(n) > 1})
        if twice:
            raise VidstyleError(f"two style images are named {', '.join(twice)}: a model finds its styles by name; "
                                "rename one of the files")
        unknown = sorted(set(cfg.style_scales) - set(self.names))
        if unknown:
            raise VidstyleError(f"--style-scale names {', '.join(unknown)}, not a style of this run "
                                f"({', '.join(self.names)})")
        bad = [f"{n}={v}" for n, v in cfg.style_scales.items() if not (math.isfinite(v) and v > 0)]
        if bad:
            raise VidstyleError(f"--style-scale factors must be above 0: {', '.join(bad)}")
        # The network's styles: the trained ones, and with --norm-only also the --init file's others, which
        # ride along unchanged (their norm rows get no gradient; the weights they share are frozen).
        self.net_names = list(self.names)
        if cfg.norm_only:
            source = cfg.resume or cfg.init
            if not source:
                raise VidstyleError("--norm-only needs --init MODEL: the network whose shared weights it keeps")
            if not cfg.output:
                raise VidstyleError("--norm-only writes a model that also holds the --init model's styles: "
                                    "name it with -o FILE.safetensors")
            held = _file_styles(Path(source), "resume file" if cfg.resume else "--init file")
            self.net_names = held + [n for n in self.names if n not in held]
        self.style_index = [self.net_names.index(n) for n in self.names]  # trained style k -> its norm row
        self.run_dir = Path(cfg.run_dir or Path("runs") / "+".join(self.names))
        self.output = Path(cfg.output) if cfg.output else None
        self._check_paths()  # before any slow work
        # the style weight of each style: --style-weight times its --style-scale factor (default 1)
        self.style_weights = [cfg.style_weight * cfg.style_scales.get(n, 1.0) for n in self.names]
        self.device = pick_device(cfg.device)
        self.cuda = self.device.type == "cuda"
        if self.world > 1:
            import torch.distributed as dist

            if self.cuda:
                self.device = torch.device("cuda", local_rank)
                torch.cuda.set_device(self.device)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if self.cuda else "gloo")
        style_imgs = [_style_image(s, cfg.style_size) for s in cfg.styles]  # checks before any slow work
        for s, img in zip(cfg.styles, style_imgs):  # the coarsest octave must still make a loss-network picture
            if min(img.shape[-2:]) >> (cfg.style_octaves - 1) < MIN_SIDE:
                raise VidstyleError(f"style image {s} is too thin at --style-size {cfg.style_size} "
                                    f"({img.shape[-1]}x{img.shape[-2]}) for {cfg.style_octaves} octave(s); "
                                    "crop it, or raise --style-size")
        self.style_hashes = [_file_hash(s) for s in cfg.styles]  # once: a style file moved later is no matter
        self.style_pictures = [_picture(s) for s in style_imgs]
        targets = [Path(cfg.targets) / n for n in self.names] if cfg.targets else None
        self.photos = Photos(cfg.data, cfg.size, cfg.data_limit, short_side=cfg.photo_size, targets=targets)
        run_dir = self.run_dir.resolve()  # inside --data (runs/ under --data .): its previews are not photos
        self.photos.files = [f for f in self.photos.files if run_dir not in Path(f).resolve().parents]
        if not self.photos.files:
            raise VidstyleError(f"--data {cfg.data} holds no photos besides the --run-dir's pictures")
        gen = torch.Generator().manual_seed(12345)
        self.preview_x = self.photos.batch(4, gen)  # the same 4 photos whatever the world size
        self.images = len(self.photos)  # all of them, for the model file (a rank holds its shard below)
        if self.world > 1:
            if len(self.photos.files) < self.world:
                raise VidstyleError(f"{len(self.photos.files)} photo(s) for {self.world} training processes: "
                                    "each needs at least one")
            self.photos.files = self.photos.files[self.rank::self.world]  # this rank's shard
            self.photos.cache.clear()  # cached by index in the whole list: the preview's, not the shard's
        # frames are scaled as the photos are (--photo-size, then the --size crop): strokes at one scale
        self.video = VideoPairs(cfg.video_data, cfg.size, flow=cfg.flow, device=self.device,
                                short_side=self.photos.short_side) if cfg.video_data else None
        # A run that learns from --targets alone (content and style weights 0) needs no loss network at all:
        # it trains where none is installed (a GPU machine with torch only).
        perceptual = cfg.content_weight > 0 or any(w > 0 for w in self.style_weights)
        self.vgg = load_loss_net(cfg.loss_net, self.device, padding_mode=cfg.loss_padding) if perceptual else None
        self.loss_net_source = self.vgg.source if self.vgg is not None else "none"
        if (cfg.precision or "").lower() == "fp16":  # it trained in bf16 without a word
            raise VidstyleError("training takes --precision auto, bf16 or fp32 (fp16 would need a loss scaler)")
        # bf16 autocast on CUDA and on CPUs with bf16 maths (2.3x on AVX-512 BF16); fp16 would need a scaler
        dtype = precision.resolve(cfg.precision, self.device)
        self.amp = torch.bfloat16 if dtype is not None else None
        torch.manual_seed(cfg.seed)  # same seed, same initial network
        self.net = TransformerNet(arch_config(cfg.arch, len(self.net_names))).to(self.device)
        if cfg.norm_only:  # Dumoulin et al.: a style is its (gamma, beta) rows; the convolutions stay as in --init
            for key, p in self.net.named_parameters():
                p.requires_grad_(key.endswith(NORM_KEYS))
        self.channels_last = self.cuda  # on the CPU, channels_last measured slightly slower (oneDNN bf16)
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
            if self.vgg is not None:
                self.vgg = self.vgg.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True  # one crop size all run long: pick the fastest kernels once
        self.opt = torch.optim.AdamW([p for p in self.net.parameters() if p.requires_grad], lr=cfg.lr,
                                     weight_decay=0.0)
        self.model = self.net  # what the forward pass calls: the net, or its DDP wrapper
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(self.net, device_ids=[self.device.index] if self.cuda else None)
        # Per style, per octave o: the painting's Gram matrices at 1/2**o of --style-size (multi-scale style
        # loss: relu4_3 of the halved output sees strokes twice as large, relative to the picture).
        with torch.no_grad():
            self.grams = [[{k: L.gram(v) for k, v in self.vgg(_halve(s, o).to(self.device)).items()}
                           for o in range(cfg.style_octaves)] if self.vgg is not None else [{}]
                          for s in style_imgs]
        self.norms = [[L.gram_norms(g) if cfg.style_norm == "relative" else None for g in octaves]
                      for octaves in self.grams]
        self.colour_dirs = L.colour_directions().to(self.device)
        self.colour_targets = [L.colour_quantiles(s.to(self.device), self.colour_dirs) for s in style_imgs]
        self.step = 0
        self.skipped_steps = 0  # steps whose loss or gradient was not finite: no update was made
        self.seconds = 0.0  # training time before this run (restored by --resume)
        self.run_id = uuid.uuid4().hex  # kept across resumes: tells this run's checkpoints from others'
        self._t0: float | None = None  # when this run's train() started
        # --ema: a moving average of the weights (Polyak averaging). Batches of two photos make every step's
        # weights noisy (checkpoints 250 steps apart differ by 5 to 10% in style loss); the average is what
        # previews show and what the model file holds. A resumed checkpoint brings its own (_load_checkpoint);
        # otherwise it starts from the weights loaded below.
        self.ema_net: TransformerNet | None = None
        self.ema_updates = 0  # how many steps the average holds (its warm-up)
        # --norm-only: the pictures and --temporal strengths of the --init model's other styles, which the
        # model file holds again; kept in checkpoints, so a resume or an export does not need that file
        self.kept_pictures: dict[str, torch.Tensor] = {}
        self.kept_strengths: dict[str, float] = {}
        if cfg.resume and cfg.init:
            raise VidstyleError("give --resume (continue a run) or --init (start from its weights), not both")
        if cfg.resume:
            self._load_checkpoint(Path(cfg.resume))
        elif cfg.init:
            self._warm_start(Path(cfg.init))
        if cfg.ema > 0 and self.ema_net is None:
            self.ema_net = copy.deepcopy(self.net).eval().requires_grad_(False)
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if cfg.overwrite and not cfg.resume:  # starting over: nothing of the earlier run may be resumed into it
                ck = self.checkpoint_path()
                for old in (ck, _previous(ck), *self.run_dir.glob("preview*.png")):
                    old.unlink(missing_ok=True)

    def _check_paths(self) -> None:
        """Refuse what would fail only after the training, or destroy the files of an earlier run."""
        cfg = self.cfg
        if cfg.resume and not Path(cfg.resume).is_file():
            raise VidstyleError(f"resume file not found: {cfg.resume}")
        data = Path(cfg.data)
        if data.exists() and not data.is_dir():
            raise VidstyleError(f"--data is a file, not a folder of photos: {data}")
        out = self.output_path()
        if out.suffix != ".safetensors":
            raise VidstyleError(f"--output must end in .safetensors: {out}")
        if out.is_dir():
            raise VidstyleError(f"--output is a folder: {out}")
        if out.exists() and not cfg.overwrite:
            raise VidstyleError(f"{out} exists; pass --overwrite to replace it, or choose another --output")
        _check_folder(out.parent, "--output folder")
        _check_folder(self.run_dir, "--run-dir")
        # A fresh run would rewrite the log and previews and push the checkpoint out (a third run deletes it).
        # The -prev checkpoint counts too: it may be all that is left of a run stopped while saving.
        earlier = [p for p in (self.checkpoint_path(), _previous(self.checkpoint_path())) if p.exists()]
        if earlier and not (cfg.resume or cfg.overwrite):
            raise VidstyleError(f"--run-dir {self.run_dir} holds an earlier run: pass --resume "
                                f"{earlier[0]} to continue it, --overwrite to start over there, "
                                f"or another --run-dir")
        # Resuming another run's checkpoint into a folder that holds a run would mix the two. The same
        # run's checkpoints (its two in the folder, or a copy kept elsewhere: the same run id) are fine.
        here = self.checkpoint_path()
        if cfg.resume and earlier and not cfg.overwrite:
            theirs = Path(cfg.resume)
            own = {here.resolve(), _previous(here).resolve()}
            theirs_id = _run_id(theirs)
            same = theirs.resolve() in own or (theirs_id is not None and theirs_id == _run_id(earlier[0]))
            if not same:
                raise VidstyleError(f"--run-dir {self.run_dir} holds another run's checkpoint: resume from "
                                    f"{earlier[0]}, choose another --run-dir, or pass --overwrite to continue "
                                    f"{cfg.resume} there")

    # -- one step ----------------------------------------------------------------
    @property
    def temporal(self) -> bool:
        cfg = self.cfg
        return cfg.temporal != "none" and (cfg.temporal_weight > 0 or cfg.feature_temporal_weight > 0)

    def batch(self, step: int) -> tuple:
        """The CPU-side inputs of ``step``: (x (B or 2B, 3, S, S), flow, mask), a pure function of (seed, step).

        With the temporal loss, x is frames t-1 then frames t, and flow/mask (B, 2|1, S, S) map t-1 onto t.
        With --targets a fourth item follows: the painted targets of the photos (frames t-1), (B, 3, S, S).
        """
        cfg = self.cfg
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step + self.rank * 1_000_000_007)
        n = cfg.batch_size // self.world
        # a real frame pair on every other step of each style (steps go round the styles): no photos drawn
        if self.temporal and self.video is not None and (step // len(self.names)) % 2 == 1:
            xp, xt, flow, mask = self.video.batch(n, gen)
            return torch.cat([xp, xt]), flow, mask
        target = None
        if self.photos.targets is not None:  # each photo with its painting in this step's style
            x, target = self.photos.batch(n, gen, style=step % len(self.names)).split(3, dim=1)
        else:
            x = self.photos.batch(n, gen)
        flow = mask = None
        if self.temporal:
            xt, flow, mask = synthetic_pair(x, gen)
            x = torch.cat([x, xt])
        return (x, flow, mask) if target is None else (x, flow, mask, target)

    def losses(self, step: int, data: tuple | None = None) -> dict[str, torch.Tensor]:
        """The weighted losses of ``step`` (``data``: ``batch(step)``, made here when not given)."""
        cfg = self.cfg
        k = step % len(self.grams)
        mix = self._mix(k)
        x, flow, mask, *target = data if data is not None else self.batch(step)
        temporal = self.temporal
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        # With the temporal loss, frame t is frame t-1 moved a little (a warp of the same photo, or the next
        # video frame): its perceptual losses would nearly repeat the first half's, at twice the loss network's
        # cost. So the loss network sees frames t-1 only; the temporal loss links the outputs of frames t to them.
        firsts = len(x) // 2 if temporal else len(x)
        # with both weights 0 (a run that learns from --targets alone) the loss network is not run at all
        perceptual = cfg.content_weight > 0 or self.style_weights[k] > 0
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp is not None):
            y, feats = self.model(x, mix, return_features=True)   # (B or 2B, 3, S, S)
            if perceptual:
                fy = self.vgg(y[:firsts])
                coarse = [self.vgg(_halve(y[:firsts], o)) for o in range(1, cfg.style_octaves)]
                c = cfg.content_octave  # the content at 1/2**c of the size: the style octave's features where it has one
                fyc = ([fy] + coarse)[c] if c < cfg.style_octaves else self.vgg(_halve(y[:firsts], c), upto=cfg.content_layer)
                with torch.no_grad():
                    fx = self.vgg(_halve(x[:firsts], c), upto=cfg.content_layer)
        zero = y.new_zeros((), dtype=torch.float32)
        out = {
            "content": L.content_loss(fyc, fx, cfg.content_layer) if perceptual else zero,
            # the mean over octaves: --style-weight keeps its meaning
            "style": sum(L.style_loss(f, g, norms=n) for f, g, n in zip([fy] + coarse, self.grams[k], self.norms[k]))
            / cfg.style_octaves if perceptual else zero,
            "tv": L.tv_loss(y.float()),
        }
        if cfg.layout_weight > 0:
            out["layout"] = L.layout_loss(y, x)
        if cfg.colour_weight > 0:
            out["colour"] = L.colour_loss(y[:firsts], self.colour_targets[k], self.colour_dirs)
        if cfg.targets:  # the painted photo, pixel by pixel (a real frame pair's step has none: 0, for the log's columns)
            out["target"] = F.l1_loss(y[:firsts].float(), target[0].to(self.device)) if target else zero
        if temporal:
            flow, mask = flow.to(self.device), mask.to(self.device)
            yp, yt = y.float().chunk(2)
            if cfg.temporal == "reconet":
                xp_, xt_ = x.float().chunk(2)
                out["temporal"] = L.reconet_loss(yt, yp, xt_, xp_, flow, mask)
            else:
                out["temporal"] = L.temporal_loss(yt, yp, flow, mask)
            if cfg.feature_temporal_weight > 0:
                fp, ft = feats.float().chunk(2)
                out["feature_temporal"] = L.feature_temporal_loss(ft, fp, flow, mask)
        w = {"content": cfg.content_weight, "style": self.style_weights[k], "tv": cfg.tv_weight,
             "layout": cfg.layout_weight, "colour": cfg.colour_weight, "temporal": cfg.temporal_weight, "feature_temporal": cfg.feature_temporal_weight,
             "target": cfg.target_weight}
        out["total"] = sum(w[n] * v for n, v in out.items())
        return out

    def _mix(self, k: int) -> torch.Tensor:
        """The network's one-hot style mix (n_net_styles,) for the trained style k."""
        return F.one_hot(torch.tensor(self.style_index[k]), len(self.net_names)).float().to(self.device)

    def train_step(self, data: tuple | None = None) -> dict[str, float]:
        self.net.train()
        self.opt.zero_grad(set_to_none=True)
        out = self.losses(self.step, data)
        out["total"].backward()
        # The gradient's norm (inf or nan when any part is not finite; under DDP the same on every rank,
        # as the gradients are already averaged). One bad batch once turned a 7,000-step run into NaN:
        # such a step is skipped, and --clip-grad bounds the size of any update.
        limit = self.cfg.clip_grad if self.cfg.clip_grad > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), limit)
        if torch.isfinite(norm) and torch.isfinite(out["total"]):
            self.opt.step()
            self._update_ema()
        else:
            self.skipped_steps += 1
            log.warning("step %d: loss or gradient not finite; the update was skipped", self.step + 1)
        self.step += 1
        out["grad_norm"] = norm
        values = torch.stack([v.detach().float() for v in out.values()])
        if self.world > 1:  # log the global batch's losses, as one process would
            import torch.distributed as dist

            dist.all_reduce(values)
            values /= self.world
        return dict(zip(out.keys(), values.tolist()))

    def _update_ema(self) -> None:
        """ema <- ema + (1 - decay) * (weights - ema), for every parameter and buffer.

        The decay warms up as min(--ema, (1 + n) / (10 + n)) over the average's first n updates, so that
        the starting weights (random, in a run from scratch) fade out within a few hundred steps whatever
        the decay, instead of holding, at 0.9999, most of the model for tens of thousands of steps.
        """
        if self.ema_net is None:
            return
        decay = min(self.cfg.ema, (1 + self.ema_updates) / (10 + self.ema_updates))
        self.ema_updates += 1
        with torch.no_grad():
            for e, w in zip(self.ema_net.state_dict().values(), self.net.state_dict().values()):
                if e.is_floating_point():
                    e.lerp_(w, 1.0 - decay)
                else:
                    e.copy_(w)

    @property
    def result_net(self) -> TransformerNet:
        """The network previews show and the model file holds: the moving average with --ema, else the net."""
        return self.ema_net if self.ema_net is not None else self.net

    # -- checkpoints -----------------------------------------------------------
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.safetensors"

    def save_checkpoint(self, path: Path | None = None) -> Path:
        """Write the run's state; the one it replaces is kept as ``checkpoint-prev.safetensors``."""
        path = path or self.checkpoint_path()
        if not _finite(self.net):
            raise VidstyleError(f"the weights are not finite at step {self.step}; the last checkpoint "
                                f"({path}) is left as it was")
        tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        if self.ema_net is not None:
            tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in self.ema_net.state_dict().items()})
            meta_ema = {"ema_updates": str(self.ema_updates)}
        else:
            meta_ema = {}
        for i, p in enumerate(self.net.parameters()):
            st = self.opt.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in st:
                    tensors[f"opt.{i}.{key}"] = st[key].detach().cpu().contiguous()
            if "step" in st:
                tensors[f"opt.{i}.step"] = torch.as_tensor(st["step"], dtype=torch.float32).reshape(1).cpu()
        meta = {"step": str(self.step), "seconds": f"{self._elapsed():.2f}", "run_id": self.run_id, "config": json.dumps(asdict(self.cfg)), "styles": json.dumps(self.net_names),
                "style_hashes": json.dumps(self.style_hashes), "world_size": str(self.world),
                "loss_net_source": self.loss_net_source, "kept_strengths": json.dumps(self.kept_strengths),
                **meta_ema}
        tensors.update({KEPT_PICTURE + n: v.contiguous() for n, v in self.kept_pictures.items()})
        atomic = AtomicPath(path)
        try:
            save_file(tensors, str(atomic.tmp), metadata=meta)
        except Exception as e:  # noqa: BLE001 - a full disk (OSError, or safetensors' own error)
            atomic.discard()
            kept = next((str(q) for q in (path, _previous(path)) if q.exists()), "none")
            raise VidstyleError(f"cannot write the checkpoint of step {self.step} to {path} ({one_line(e, 100)}); "
                                f"the last one is kept: {kept}") from None
        if path.exists():  # a second name for the old one, put in place at once: there is always a checkpoint
            prev = _previous(path)
            link = prev.with_name(f".{prev.name}.{os.getpid()}.tmp")
            try:
                link.unlink(missing_ok=True)
                try:
                    os.link(path, link)
                except OSError:  # a file system without hard links
                    shutil.copyfile(path, link)
                os.replace(link, prev)
            finally:
                link.unlink(missing_ok=True)
        atomic.commit()
        return path

    def _load_checkpoint(self, path: Path) -> None:
        meta, old, tensors = read_checkpoint(path, "resume file")
        for key in TrainConfig.MATCH:
            if key in old and not _same_option(key, old[key], getattr(self.cfg, key), self.cfg.size):
                raise VidstyleError(f"resume file {path} was made with --{key.replace('_', '-')} {old.get(key)}, "
                                    f"not {getattr(self.cfg, key)}")
        world = int(meta.get("world_size", self.world))  # checkpoints from before it was recorded: not checked
        if world != self.world:
            raise VidstyleError(f"resume file {path} was made with {world} training processes (--nproc), "
                                f"not {self.world}")
        if json.loads(meta.get("style_hashes", "[]")) != self.style_hashes:
            raise VidstyleError(f"resume file {path} was trained on other style images")
        self.kept_pictures, self.kept_strengths = _kept_from_checkpoint(meta, old, tensors)
        state = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
        try:
            self.net.load_state_dict(state)
        except RuntimeError:
            raise VidstyleError(f"resume file {path} does not match --arch {self.cfg.arch}") from None
        for i, p in enumerate(self.net.parameters()):
            if f"opt.{i}.exp_avg" in tensors:
                self.opt.state[p] = {"step": tensors[f"opt.{i}.step"][0].clone(),
                                     "exp_avg": tensors[f"opt.{i}.exp_avg"].to(self.device),
                                     "exp_avg_sq": tensors[f"opt.{i}.exp_avg_sq"].to(self.device)}
        source = meta.get("loss_net_source")  # --loss-net auto: what it found then must be what it finds now
        if source not in (None, "none") and self.vgg is not None and source != self.vgg.source:
            raise VidstyleError(f"resume file {path} was trained with the {source} loss network, and --loss-net "
                                f"{self.cfg.loss_net} finds {self.vgg.source} now; pass --loss-net {source}")
        ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
        if ema and not self.cfg.ema:  # resuming without it would write the last weights and drop the average
            raise VidstyleError(f"resume file {path} keeps a moving average (--ema {old.get('ema')}); pass --ema "
                                "to go on with it")
        if ema and old.get("ema") and float(old["ema"]) != self.cfg.ema:
            raise VidstyleError(f"resume file {path} was made with --ema {old['ema']}, not {self.cfg.ema}")
        if ema:  # without one (--ema turned on at a resume) the average starts from the resumed weights
            self.ema_net = copy.deepcopy(self.net).eval().requires_grad_(False)
            self.ema_net.load_state_dict(ema)
            self.ema_updates = int(meta.get("ema_updates", 0))
        self.step = int(meta["step"])
        self.seconds = float(meta.get("seconds", 0.0))
        self.run_id = meta.get("run_id") or self.run_id  # checkpoints from before run ids start one

    def _warm_start(self, path: Path) -> None:
        """Start from the weights of a model file or a training checkpoint (same architecture).

        The optimiser, the step count and the recipe start afresh. Each style's norm parameters come from
        the style of the same name in the file; a style it does not have starts from the mean of its styles.
        """
        from ..models.files import load_model
        from ..models.metadata import read_metadata

        if not path.is_file():
            raise VidstyleError(f"--init file not found: {path}")
        try:
            checkpoint = "config" in read_metadata(path)
        except VidstyleError:
            raise VidstyleError(f"--init {path} is not a vidstyle model file or training checkpoint") from None
        if checkpoint:  # the network its run writes
            meta, config, tensors = read_checkpoint(path, "--init file")
            state, names, arch = result_weights(tensors), json.loads(meta.get("styles", "[]")), config.get("arch")
            scale = photo_scale(config.get("size", 0), config.get("photo_size"))
            pictures, strengths = _kept_from_checkpoint(meta, config, tensors)
        else:  # a model file (load_model has its own one-line errors)
            model = load_model(path)
            state, names, arch = model.net.state_dict(), model.styles, model.net.config.arch
            scale, pictures, strengths = model.training.get("scale"), model.style_images, model.temporal_strengths
        if arch != self.cfg.arch:
            raise VidstyleError(f"--init {path} is a {arch} network, not --arch {self.cfg.arch}")
        if self.cfg.norm_only:  # one scale for the whole model: the kept styles were trained at the file's
            own = photo_scale(self.cfg.size, self.cfg.photo_size)
            if scale and int(scale) != own:
                raise VidstyleError(f"--init {path} was trained at scale {scale} px and --norm-only keeps its styles: "
                                    f"train at the same scale (--photo-size {scale}), not {own}")
            self.kept_pictures = {n: v for n, v in pictures.items() if n in self.net_names and n not in self.names}
            self.kept_strengths = {n: v for n, v in strengths.items() if n in self.net_names and n not in self.names}
        own = self.net.state_dict()
        for key, value in own.items():
            src = state.get(key)
            if src is None:
                raise VidstyleError(f"--init {path} does not match --arch {self.cfg.arch} (no {key})")
            if key.endswith(NORM_KEYS):  # (n_styles, C): one row per style
                rows = [src[names.index(n)] if n in names else src.mean(0) for n in self.net_names]
                src = torch.stack(rows)
            if tuple(src.shape) != tuple(value.shape):
                raise VidstyleError(f"--init {path} does not match --arch {self.cfg.arch} ({key})")
            value.copy_(src.to(value.dtype))
        log.info("warm start from %s (%s)", path, ", ".join(n for n in self.net_names if n in names) or "no shared styles")

    def preview(self) -> Path:
        net = self.result_net.eval()
        rows = []
        with torch.no_grad():
            x = self.preview_x.to(self.device)
            rows.append(_grid(x))
            for k in range(len(self.grams)):
                rows.append(_grid(net(x, self._mix(k)).float()))
        img = np.concatenate(rows, 0)
        path = self.run_dir / "preview.png"
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(self.run_dir / f"preview_{self.step:06d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        return path

    # -- the loop ----------------------------------------------------------------
    def _elapsed(self) -> float:
        """Training seconds so far, across resumed runs."""
        return self.seconds + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)

    def _trim_log(self, log_path: Path) -> None:
        """On resume, drop log rows after the checkpoint's step (they are about to be trained again)."""
        with open(log_path, newline="") as fh:
            rows = list(csv.reader(fh))
        keep = rows[:1] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= self.step]
        with open(log_path, "w", newline="") as fh:
            csv.writer(fh).writerows(keep)

    def output_path(self) -> Path:
        from ..models.registry import user_dir

        return self.output or user_dir() / f"{'+'.join(self.names)}.safetensors"

    def eta(self, steps_done: int, seconds: float) -> float:
        """Seconds left at the pace of this run so far."""
        return (self.cfg.steps - self.step) * seconds / max(1, steps_done)

    def train(self) -> dict:
        cfg = self.cfg
        log_path = self.run_dir / "log.csv"
        new_log = not log_path.exists() or self.step == 0
        if not new_log and self.main:
            self._trim_log(log_path)
        t0 = self._t0 = time.perf_counter()
        start = self.step
        last: dict[str, float] = {}
        first: dict[str, float] | None = None
        last_preview = t0
        # the next step's photos are decoded and cropped in a thread while this step runs
        pool = ThreadPoolExecutor(1, thread_name_prefix="vidstyle-data")
        ahead = pool.submit(self.batch, self.step)
        # SIGTERM and SIGHUP (kill, a scheduler, a closed terminal) save a checkpoint as Ctrl-C does
        with stop_signals(), \
                open(log_path, "w" if new_log else "a", newline="") if self.main else contextlib.nullcontext() as fh:
            writer = None
            try:
                while self.step < cfg.steps:
                    data = ahead.result()
                    if self.step + 1 < cfg.steps:
                        ahead = pool.submit(self.batch, self.step + 1)
                    # a Ctrl-C waits for the end of the step (the CPU optimiser updates the weights one by
                    # one): the checkpoint saved below never holds half an update under the old step number.
                    # One process only: under DDP every rank must leave its collectives together.
                    with _signals_held() if self.world == 1 else contextlib.nullcontext([]) as held:
                        last = self.train_step(data)
                    first = first or dict(last)
                    if not self.main:
                        _raise_held(held)
                        continue
                    if writer is None:
                        fields = ["step", "seconds", *last.keys()]
                        if not new_log:  # a resumed run appends under the columns the log already has
                            with open(log_path, newline="") as old_fh:
                                fields = next(csv.reader(old_fh), fields)
                        writer = csv.DictWriter(fh, fields, extrasaction="ignore")
                        if new_log:
                            writer.writeheader()
                    writer.writerow({"step": self.step, "seconds": round(self._elapsed(), 2), **last})
                    fh.flush()
                    if self.progress:
                        self.progress(self.step, cfg.steps, last)
                    if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                        self.save_checkpoint()
                    now = time.perf_counter()
                    due = cfg.preview_minutes and now - last_preview >= cfg.preview_minutes * 60
                    if due or (cfg.preview_every and self.step % cfg.preview_every == 0):
                        last_preview = now
                        shown = self.preview()
                        spent = now - t0
                        log.info("step %d/%d, %.2f s/step, ETA %s, preview %s", self.step, cfg.steps,
                                 spent / (self.step - start), _hms(self.eta(self.step - start, spent)), shown)
                    _raise_held(held)  # after the step's row and checkpoint: the log has every step saved
            except KeyboardInterrupt as e:
                if not self.main:
                    raise
                ck = self.save_checkpoint()
                why = f"stopped by {signal.Signals(e.signum).name}" if isinstance(e, Terminated) else "interrupted"
                raise VidstyleError(f"{why} at step {self.step}; checkpoint saved: continue with "
                                    f"--resume {ck}") from None
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        seconds = time.perf_counter() - t0
        total_seconds = self._elapsed()
        out = self.output_path()
        summary = {"output": str(out), "steps": self.step, "trained_steps": self.step - start,
                   "seconds": round(seconds, 1), "total_seconds": round(total_seconds, 1), "first_losses": first,
                   "final_losses": last, "skipped_images": len(self.photos.skipped),
                   "skipped_steps": self.skipped_steps, "loss_net": self.loss_net_source,
                   "run_dir": str(self.run_dir), "world_size": self.world}
        if not self.main:
            return summary
        self.save_checkpoint()
        self.preview()
        out.parent.mkdir(parents=True, exist_ok=True)
        training = training_record(cfg, self.step, total_seconds, scale=self.photos.short_side,
                                   loss_net=self.loss_net_source, precision=precision.name(self.amp),
                                   images=self.images, final_losses=last, device=str(self.device),
                                   world_size=self.world)
        pictures = {**self.kept_pictures, **dict(zip(self.names, self.style_pictures))}
        try:
            save_model(out, self.result_net.eval(), self.net_names, training,
                       style_images=[pictures.get(n) for n in self.net_names],
                       temporal_strengths=self.kept_strengths or None)
        except VidstyleError:
            raise
        except Exception as e:  # noqa: BLE001 - a full disk: the checkpoint just saved holds the same network
            ck = self.checkpoint_path()
            raise VidstyleError(f"cannot write {out} ({one_line(e, 100)}); the checkpoint holds it: vidstyle export "
                                f"{ck} -o MODEL.safetensors") from None
        return summary
