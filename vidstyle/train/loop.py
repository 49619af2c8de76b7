"""The training loop: one or several styles, perceptual + temporal losses, checkpoints and exact resume.

The options and their checks are in ``config``, what checkpoints hold and the model file made from one in
``checkpoint``.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import json
import logging
import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import Terminated, VidstyleError, one_line
from ..signals import raise_held, signals_held, stop_signals
from ..models.config import NORM_KEYS
from ..models.files import save_model
from ..models.transformer import TransformerNet, arch_config
from .. import precision
from . import losses as L
from .checkpoint import (check_earlier_run, check_resumable, file_hash, file_styles, kept_from_checkpoint,
                         previous_checkpoint, read_checkpoint, style_image, style_picture, training_record, warm_start,
                         write_checkpoint)
from .config import TrainConfig, check_choices, check_numbers, check_paths, style_weights
from .data import Photos, VideoPairs, synthetic_pair
from .lossnet import MIN_SIDE, load_loss_net
from .runlog import hms, trim_log, write_preview

log = logging.getLogger("vidstyle")


def _halve(x: torch.Tensor, times: int) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 3, H / 2**times, W / 2**times), by averaging 2x2 blocks."""
    for _ in range(times):
        x = F.avg_pool2d(x, 2)
    return x


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
        self.cfg = cfg
        self.world, self.rank, local_rank = _world()
        self.main = self.rank == 0
        if cfg.batch_size % self.world:
            raise VidstyleError(f"--batch-size {cfg.batch_size} does not split over {self.world} processes")
        self.progress = progress
        check_numbers(cfg)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        check_choices(cfg)
        self.names = cfg.style_names
        self.net_names = self._network_styles()
        self.style_index = [self.net_names.index(n) for n in self.names]  # trained style k -> its norm row
        self.run_dir = Path(cfg.run_dir or Path("runs") / "+".join(self.names))
        self.output = Path(cfg.output) if cfg.output else None
        self._check_paths()  # before any slow work
        self.style_weights = style_weights(cfg)
        self._pick_device(local_rank)
        style_imgs = self._read_styles()  # checks before any slow work
        self._read_data()
        self._build_networks()
        self._style_targets(style_imgs)
        self._fresh_state()
        self._start_from()
        if self.main:
            self._prepare_run_dir()

    # -- setting up --------------------------------------------------------------
    def _network_styles(self) -> list[str]:
        """The network's styles: the trained ones, and with --norm-only also the --init file's others, which
        ride along unchanged (their norm rows get no gradient; the weights they share are frozen)."""
        cfg = self.cfg
        if not cfg.norm_only:
            return list(self.names)
        source = cfg.resume or cfg.init
        if not source:
            raise VidstyleError("--norm-only needs --init MODEL: the network whose shared weights it keeps")
        if not cfg.output:
            raise VidstyleError("--norm-only writes a model that also holds the --init model's styles: "
                                "name it with -o FILE.safetensors")
        held = file_styles(Path(source), "resume file" if cfg.resume else "--init file")
        return held + [n for n in self.names if n not in held]

    def _check_paths(self) -> None:
        """Refuse what would fail only after the training, or destroy the files of an earlier run."""
        check_paths(self.cfg, self.output_path(), self.run_dir)
        check_earlier_run(self.cfg, self.run_dir, self.checkpoint_path())

    def _pick_device(self, local_rank: int) -> None:
        """The device, and under torchrun this rank's GPU and the process group."""
        from ..stylizer import pick_device

        self.device = pick_device(self.cfg.device)
        self.cuda = self.device.type == "cuda"
        if self.world > 1:
            import torch.distributed as dist

            if self.cuda:
                self.device = torch.device("cuda", local_rank)
                torch.cuda.set_device(self.device)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if self.cuda else "gloo")

    def _read_styles(self) -> list[torch.Tensor]:
        """The style images (1, 3, H, W) at --style-size; their hashes and pictures are kept for the files."""
        cfg = self.cfg
        style_imgs = [style_image(s, cfg.style_size) for s in cfg.styles]
        for s, img in zip(cfg.styles, style_imgs):  # the coarsest octave must still make a loss-network picture
            if min(img.shape[-2:]) >> (cfg.style_octaves - 1) < MIN_SIDE:
                raise VidstyleError(f"style image {s} is too thin at --style-size {cfg.style_size} "
                                    f"({img.shape[-1]}x{img.shape[-2]}) for {cfg.style_octaves} octave(s); "
                                    "crop it, or raise --style-size")
        self.style_hashes = [file_hash(s) for s in cfg.styles]  # once: a style file moved later is no matter
        self.style_pictures = [style_picture(s) for s in style_imgs]
        return style_imgs

    def _read_data(self) -> None:
        """The photos (this rank's shard of them), the preview's photos and the video frame pairs."""
        cfg = self.cfg
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

    def _build_networks(self) -> None:
        """The loss network, the precision, the network (its DDP wrapper under torchrun) and its optimiser."""
        cfg = self.cfg
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

    def _style_targets(self, style_imgs: list[torch.Tensor]) -> None:
        """What the style losses compare the output with: each painting's Gram matrices and colours."""
        # Per style, per octave o: the painting's Gram matrices at 1/2**o of --style-size (multi-scale style
        # loss: relu4_3 of the halved output sees strokes twice as large, relative to the picture).
        with torch.no_grad():
            self.grams = [[{k: L.gram(v) for k, v in self.vgg(_halve(s, o).to(self.device)).items()}
                           for o in range(self.cfg.style_octaves)] if self.vgg is not None else [{}]
                          for s in style_imgs]
        self.norms = [[L.gram_norms(g) if self.cfg.style_norm == "relative" else None for g in octaves]
                      for octaves in self.grams]
        self.colour_dirs = L.colour_directions().to(self.device)
        self.colour_targets = [L.colour_quantiles(s.to(self.device), self.colour_dirs) for s in style_imgs]

    def _fresh_state(self) -> None:
        """The state of a run at step 0, which --resume replaces."""
        self.step = 0
        self.interrupted = False  # set when Ctrl-C (or SIGTERM, SIGHUP) stopped train(): a checkpoint was saved
        self.skipped_steps = 0  # steps whose loss or gradient was not finite: no update was made
        self.seconds = 0.0  # training time before this run (restored by --resume)
        self.run_id = uuid.uuid4().hex  # kept across resumes: tells this run's checkpoints from others'
        self._t0: float | None = None  # when this run's train() started
        # --ema: a moving average of the weights (Polyak averaging). Batches of two photos make every step's
        # weights noisy (checkpoints 250 steps apart differ by 5 to 10% in style loss); the average is what
        # previews show and what the model file holds. A resumed checkpoint brings its own (_load_checkpoint);
        # otherwise it starts from the weights loaded in _start_from.
        self.ema_net: TransformerNet | None = None
        self.ema_updates = 0  # how many steps the average holds (its warm-up)
        # --norm-only: the pictures and --temporal strengths of the --init model's other styles, which the
        # model file holds again; kept in checkpoints, so a resume or an export does not need that file
        self.kept_pictures: dict[str, torch.Tensor] = {}
        self.kept_strengths: dict[str, float] = {}

    def _start_from(self) -> None:
        """Resume a checkpoint (--resume) or start from a file's weights (--init); start the --ema average."""
        cfg = self.cfg
        if cfg.resume and cfg.init:
            raise VidstyleError("give --resume (continue a run) or --init (start from its weights), not both")
        if cfg.resume:
            self._load_checkpoint(Path(cfg.resume))
        elif cfg.init:
            self.kept_pictures, self.kept_strengths = warm_start(Path(cfg.init), cfg, self.net, self.net_names,
                                                                 self.names)
        if cfg.ema > 0 and self.ema_net is None:
            self.ema_net = copy.deepcopy(self.net).eval().requires_grad_(False)

    def _prepare_run_dir(self) -> None:
        """Make the --run-dir; with --overwrite (and no --resume), clear the earlier run's checkpoints and previews."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.cfg.overwrite and not self.cfg.resume:  # starting over: nothing of the earlier run may be resumed into it
            ck = self.checkpoint_path()
            for old in (ck, previous_checkpoint(ck), *self.run_dir.glob("preview*.png")):
                old.unlink(missing_ok=True)

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

    def losses(self, step: int, data: tuple | None = None, net=None) -> dict[str, torch.Tensor]:
        """The weighted losses of ``step`` (``data``: ``batch(step)``, made here when not given; a batch with no
        flow has no temporal term) for ``net`` (default: the network trained)."""
        cfg = self.cfg
        k = step % len(self.grams)
        mix = self._mix(k)
        x, flow, mask, *target = data if data is not None else self.batch(step)
        temporal = flow is not None
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
            y, feats = (net or self.model)(x, mix, return_features=True)   # (B or 2B, 3, S, S)
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

    def validation_loss(self, k: int = 0) -> dict[str, float]:
        """The losses of the written network (``result_net``) for style ``k`` on the preview's fixed photos: one
        figure to compare checkpoints by (no temporal or target term)."""
        net = self.result_net.eval()
        with torch.no_grad():
            out = self.losses(k, (self.preview_x, None, None), net=net)
        return {n: float(v) for n, v in out.items()}

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
        meta = {"step": str(self.step), "seconds": f"{self.elapsed():.2f}", "run_id": self.run_id,
                "config": json.dumps(asdict(self.cfg)), "styles": json.dumps(self.net_names),
                "style_hashes": json.dumps(self.style_hashes), "world_size": str(self.world),
                "loss_net_source": self.loss_net_source, "kept_strengths": json.dumps(self.kept_strengths)}
        return write_checkpoint(path or self.checkpoint_path(), self.net, self.opt, meta, step=self.step,
                                ema_net=self.ema_net, ema_updates=self.ema_updates, kept_pictures=self.kept_pictures)

    def _load_checkpoint(self, path: Path) -> None:
        """Resume: the weights, the optimiser's state, the --ema average and the step count of a checkpoint."""
        meta, old, tensors = read_checkpoint(path, "resume file")
        check_resumable(path, meta, old, self.cfg, world=self.world, style_hashes=self.style_hashes)
        self.kept_pictures, self.kept_strengths = kept_from_checkpoint(meta, old, tensors)
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

    def preview(self) -> Path:
        """RUN_DIR/preview.png (and preview_STEP.png): the preview photos, then one row per style."""
        net = self.result_net.eval()
        with torch.no_grad():
            x = self.preview_x.to(self.device)
            rows = [x] + [net(x, self._mix(k)).float() for k in range(len(self.grams))]
        return write_preview(self.run_dir, self.step, rows)

    # -- the loop ----------------------------------------------------------------
    def elapsed(self) -> float:
        """Training seconds so far, across resumed runs (what checkpoints record)."""
        return self.seconds + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)

    def output_path(self) -> Path:
        from ..models.registry import user_dir

        return self.output or user_dir() / f"{'+'.join(self.names)}.safetensors"

    def eta(self, steps_done: int, seconds: float) -> float:
        """Seconds left at the pace of this run so far (within --minutes, when given)."""
        return min((self.cfg.steps - self.step) * seconds / max(1, steps_done), self._time_left())

    def _over_budget(self, pace: float) -> bool:
        """Whether the next step would end past --minutes; under torchrun, when it would on any rank (they stop
        together, or the others would wait in a collective for ever)."""
        over = self._time_left() <= pace
        if self.world > 1 and self.cfg.minutes is not None:
            import torch.distributed as dist

            flag = torch.tensor([float(over)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            over = bool(flag.item())
        return over

    def _time_left(self) -> float:
        """Seconds of the --minutes budget this train() call has left (infinite without one)."""
        if self.cfg.minutes is None or self._t0 is None:
            return float("inf")
        return self.cfg.minutes * 60 - (time.perf_counter() - self._t0)

    def train(self) -> dict:
        cfg = self.cfg
        log_path = self.run_dir / "log.csv"
        new_log = not log_path.exists() or self.step == 0
        if not new_log and self.main:
            trim_log(log_path, self.step)
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
                pace = 0.0  # seconds a step takes: a step that would end past --minutes is not begun
                while self.step < cfg.steps and not self._over_budget(pace):
                    data = ahead.result()
                    if self.step + 1 < cfg.steps:
                        ahead = pool.submit(self.batch, self.step + 1)
                    # a Ctrl-C waits for the end of the step (the CPU optimiser updates the weights one by
                    # one): the checkpoint saved below never holds half an update under the old step number.
                    # One process only: under DDP every rank must leave its collectives together.
                    with signals_held() if self.world == 1 else contextlib.nullcontext([]) as held:
                        last = self.train_step(data)
                    first = first or dict(last)
                    pace = (time.perf_counter() - t0) / (self.step - start)
                    if not self.main:
                        raise_held(held)
                        continue
                    if writer is None:
                        fields = ["step", "seconds", *last.keys()]
                        if not new_log:  # a resumed run appends under the columns the log already has
                            with open(log_path, newline="") as old_fh:
                                fields = next(csv.reader(old_fh), fields)
                        writer = csv.DictWriter(fh, fields, extrasaction="ignore")
                        if new_log:
                            writer.writeheader()
                    writer.writerow({"step": self.step, "seconds": round(self.elapsed(), 2), **last})
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
                                 spent / (self.step - start), hms(self.eta(self.step - start, spent)), shown)
                    raise_held(held)  # after the step's row and checkpoint: the log has every step saved
            except KeyboardInterrupt as e:
                if not self.main:
                    raise
                self.interrupted = True
                ck = self.save_checkpoint()
                why = f"stopped by {signal.Signals(e.signum).name}" if isinstance(e, Terminated) else "interrupted"
                raise VidstyleError(f"{why} at step {self.step}; checkpoint saved: continue with "
                                    f"--resume {ck}") from None
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        seconds = time.perf_counter() - t0
        total_seconds = self.elapsed()
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
