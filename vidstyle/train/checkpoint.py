"""Training checkpoints: writing one so that there always is one, reading one back (to resume, or to start
from its weights), and the model file made from one."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import cv2
import torch
from safetensors.torch import load_file, save_file

from ..errors import VidstyleError, one_line
from ..io.atomic import AtomicPath
from ..io.images import read_image
from ..models.config import NORM_KEYS
from ..models.files import save_model
from ..models.transformer import TransformerNet, arch_config
from .config import TrainConfig, same_option
from .data import photo_scale

log = logging.getLogger("vidstyle")

KEPT_PICTURE = "kept_picture."  # checkpoint tensors: the pictures of the styles a --norm-only run keeps


# -- style images: trained on, and stored in model files -------------------------
def file_hash(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def style_image(path: str, max_side: int) -> torch.Tensor:
    """A style image as (1, 3, H, W) float in [0, 1], its long side scaled to ``max_side`` (one-line errors)."""
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


def style_picture(style: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) float in [0, 1] -> (H, W, 3) uint8, as model files store style pictures."""
    return (style[0].permute(1, 2, 0) * 255).round().byte()


def all_finite(net: torch.nn.Module) -> bool:
    return all(torch.isfinite(p).all() for p in net.parameters())


# -- where checkpoints are, and whose ----------------------------------------------
def previous_checkpoint(checkpoint: Path) -> Path:
    """Where the checkpoint that ``checkpoint`` replaces is kept: ``checkpoint-prev.safetensors`` beside it."""
    return checkpoint.with_name(checkpoint.stem + "-prev" + checkpoint.suffix)


def run_id(path: Path) -> str | None:
    """The run id a training checkpoint records; None for a checkpoint from before run ids, or no checkpoint."""
    from ..models.metadata import read_metadata

    try:
        return read_metadata(path).get("run_id")
    except VidstyleError:  # unreadable: the resume itself says so
        return None


def check_earlier_run(cfg: TrainConfig, run_dir: Path, checkpoint: Path) -> None:
    """Refuse to destroy the files of an earlier run in ``run_dir`` (whose checkpoint is ``checkpoint``), or to
    mix another run into them."""
    # A fresh run would rewrite the log and previews and push the checkpoint out (a third run deletes it).
    # The -prev checkpoint counts too: it may be all that is left of a run stopped while saving.
    earlier = [p for p in (checkpoint, previous_checkpoint(checkpoint)) if p.exists()]
    if earlier and not (cfg.resume or cfg.overwrite):
        raise VidstyleError(f"--run-dir {run_dir} holds an earlier run: pass --resume "
                            f"{earlier[0]} to continue it, --overwrite to start over there, "
                            f"or another --run-dir")
    # Resuming another run's checkpoint into a folder that holds a run would mix the two. The same
    # run's checkpoints (its two in the folder, or a copy kept elsewhere: the same run id) are fine.
    if cfg.resume and earlier and not cfg.overwrite:
        theirs = Path(cfg.resume)
        own = {checkpoint.resolve(), previous_checkpoint(checkpoint).resolve()}
        theirs_id = run_id(theirs)
        same = theirs.resolve() in own or (theirs_id is not None and theirs_id == run_id(earlier[0]))
        if not same:
            raise VidstyleError(f"--run-dir {run_dir} holds another run's checkpoint: resume from "
                                f"{earlier[0]}, choose another --run-dir, or pass --overwrite to continue "
                                f"{cfg.resume} there")


# -- writing -------------------------------------------------------------------
def _state_tensors(net: torch.nn.Module, opt: torch.optim.Optimizer,
                   ema_net: torch.nn.Module | None) -> dict[str, torch.Tensor]:
    """The weights (``net.``), the moving average (``ema.``) and the optimiser's state (``opt.i.``) on the CPU."""
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    if ema_net is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema_net.state_dict().items()})
    for i, p in enumerate(net.parameters()):
        st = opt.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in st:
                tensors[f"opt.{i}.{key}"] = st[key].detach().cpu().contiguous()
        if "step" in st:
            tensors[f"opt.{i}.step"] = torch.as_tensor(st["step"], dtype=torch.float32).reshape(1).cpu()
    return tensors


def write_checkpoint(path: Path, net: torch.nn.Module, opt: torch.optim.Optimizer, meta: dict[str, str], *,
                     step: int, ema_net: torch.nn.Module | None = None, ema_updates: int = 0,
                     kept_pictures: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a run's state at ``step`` to ``path``, with ``meta`` as its metadata: the weights, the optimiser's
    state, the --ema average and a --norm-only run's kept pictures.

    The checkpoint it replaces is kept as ``checkpoint-prev.safetensors``, and the new one is put in place
    whole: there is always a checkpoint. Weights that are not finite are refused, the last checkpoint left as is.
    """
    if not all_finite(net):
        raise VidstyleError(f"the weights are not finite at step {step}; the last checkpoint "
                            f"({path}) is left as it was")
    tensors = _state_tensors(net, opt, ema_net)
    if ema_net is not None:
        meta = {**meta, "ema_updates": str(ema_updates)}
    tensors.update({KEPT_PICTURE + n: v.contiguous() for n, v in (kept_pictures or {}).items()})
    atomic = AtomicPath(path)
    try:
        save_file(tensors, str(atomic.tmp), metadata=meta)
    except Exception as e:  # noqa: BLE001 - a full disk (OSError, or safetensors' own error)
        atomic.discard()
        kept = next((str(q) for q in (path, previous_checkpoint(path)) if q.exists()), "none")
        raise VidstyleError(f"cannot write the checkpoint of step {step} to {path} ({one_line(e, 100)}); "
                            f"the last one is kept: {kept}") from None
    if path.exists():  # a second name for the old one, put in place at once: there is always a checkpoint
        prev = previous_checkpoint(path)
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


# -- reading -------------------------------------------------------------------
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


def check_resumable(path: Path, meta: dict, config: dict, cfg: TrainConfig, *, world: int,
                    style_hashes: list[str]) -> None:
    """Refuse to resume the checkpoint at ``path`` (its ``meta`` and ``config``) into a run of ``cfg`` with
    ``world`` processes that differs in an option of ``TrainConfig.MATCH``, the process count or the style images."""
    for key in TrainConfig.MATCH:
        if key in config and not same_option(key, config[key], getattr(cfg, key), cfg.size):
            raise VidstyleError(f"resume file {path} was made with --{key.replace('_', '-')} {config.get(key)}, "
                                f"not {getattr(cfg, key)}")
    made = int(meta.get("world_size", world))  # checkpoints from before it was recorded: not checked
    if made != world:
        raise VidstyleError(f"resume file {path} was made with {made} training processes (--nproc), "
                            f"not {world}")
    if json.loads(meta.get("style_hashes", "[]")) != style_hashes:
        raise VidstyleError(f"resume file {path} was trained on other style images")


def result_weights(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint's network as its run writes it: the moving average of a run with --ema, else the last
    step's weights (a state dict for ``TransformerNet``)."""
    prefix = "ema." if any(k.startswith("ema.") for k in tensors) else "net."
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def file_styles(path: Path, what: str) -> list[str]:
    """The style names a model file or training checkpoint holds, in its order (one-line errors)."""
    from ..models.metadata import read_metadata
    from ..models.files import read_any
    from ..models.style_file import is_style_file

    if not path.is_file():
        raise VidstyleError(f"{what} not found: {path}")
    if is_style_file(path):  # the base network's styles and its own
        return read_any(path).styles
    try:
        names = json.loads(read_metadata(path).get("styles", "[]"))
    except (VidstyleError, ValueError):
        raise VidstyleError(f"{what} {path} is not a vidstyle model file or training checkpoint") from None
    return [str(n) for n in names] or [path.stem]


def kept_from_checkpoint(meta: dict, config: dict, tensors: dict) -> tuple[dict, dict[str, float]]:
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


def warm_start(path: Path, cfg: TrainConfig, net: TransformerNet, net_names: list[str],
               names: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Copy into ``net`` (styles ``net_names``, of which this run trains ``names``) the weights of a model file
    or a training checkpoint (same architecture) for --init.

    The optimiser, the step count and the recipe start afresh. Each style's norm parameters come from
    the style of the same name in the file; a style it does not have starts from the mean of its styles.
    Returns, with --norm-only, the pictures and --temporal strengths of the file's styles the network keeps
    (``({}, {})`` without).
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
        state, names_in_file, arch = result_weights(tensors), json.loads(meta.get("styles", "[]")), config.get("arch")
        scale = photo_scale(config.get("size", 0), config.get("photo_size"))
        pictures, strengths = kept_from_checkpoint(meta, config, tensors)
    else:  # a model file (load_model has its own one-line errors)
        model = load_model(path)
        state, names_in_file, arch = model.net.state_dict(), model.styles, model.net.config.arch
        scale, pictures, strengths = model.training.get("scale"), model.style_images, model.temporal_strengths
    if arch != cfg.arch:
        raise VidstyleError(f"--init {path} is a {arch} network, not --arch {cfg.arch}")
    kept_pictures: dict[str, torch.Tensor] = {}
    kept_strengths: dict[str, float] = {}
    if cfg.norm_only:  # one scale for the whole model: the kept styles were trained at the file's
        own = photo_scale(cfg.size, cfg.photo_size)
        if scale and int(scale) != own:
            raise VidstyleError(f"--init {path} was trained at scale {scale} px and --norm-only keeps its styles: "
                                f"train at the same scale (--photo-size {scale}), not {own}")
        kept_pictures = {n: v for n, v in pictures.items() if n in net_names and n not in names}
        kept_strengths = {n: v for n, v in strengths.items() if n in net_names and n not in names}
    own = net.state_dict()
    for key, value in own.items():
        src = state.get(key)
        if src is None:
            raise VidstyleError(f"--init {path} does not match --arch {cfg.arch} (no {key})")
        if key.endswith(NORM_KEYS):  # (n_styles, C): one row per style
            rows = [src[names_in_file.index(n)] if n in names_in_file else src.mean(0) for n in net_names]
            src = torch.stack(rows)
        if tuple(src.shape) != tuple(value.shape):
            raise VidstyleError(f"--init {path} does not match --arch {cfg.arch} ({key})")
        value.copy_(src.to(value.dtype))
    log.info("warm start from %s (%s)", path, ", ".join(n for n in net_names if n in names_in_file) or "no shared styles")
    return kept_pictures, kept_strengths


# -- the model file of a checkpoint ------------------------------------------------
def training_record(cfg: TrainConfig, step: int, seconds: float, *, scale: int, loss_net: str, precision: str,
                    images: int | None, final_losses: dict | None, device: str, world_size: int) -> dict:
    """The ``training`` metadata of a model file: how it was made."""
    return {
        "style_images": [Path(s).name for s in cfg.styles],
        "style_sha256": [file_hash(s) if Path(s).is_file() else None for s in cfg.styles],
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
    if not all_finite(net):
        raise VidstyleError(f"{checkpoint} holds weights that are not finite")
    trained = cfg.style_names
    pictures, strengths = kept_from_checkpoint(meta, config, tensors)  # a --norm-only run's kept styles
    if all(Path(s).is_file() for s in cfg.styles):
        pictures.update({n: style_picture(style_image(s, cfg.style_size)) for n, s in zip(trained, cfg.styles)})
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
