"""Your own style in under an hour of a CPU: ``vidstyle train --style PICTURE`` adds it to the bundled network.

In a conditional-instance-norm network a style is its (gamma, beta) rows in the norm layers; the convolutions are
shared (Dumoulin et al. 2017 learn a new style by training those rows alone). So a new style needs no new network:
only its rows are trained, on a copy of the bundled one (every other weight stays bit for bit), and it is written as
a style file of kilobytes (``models.style_file``) that paints with the bundled network.

One budget (``minutes``), three phases, each resumable:

1. **data** (seconds): photos (folders) and frames (videos, sampled evenly) at the base model's scale, each
   painted by the picture network (``models.arbitrary``, Ghiasi et al. 2017): the picture's look, at once.
2. **distil** (a few minutes): the new rows learn those paintings (L1), with no loss network: the rows start
   where the picture network already is.
3. **refine** (the rest): the perceptual losses (Gram style, content, colour, layout; the temporal loss on real
   frame pairs when videos are given) take the rows beyond the picture network where it falls short. The rows
   with the lowest loss on fixed photos are kept.

RUN_DIR holds everything: ``data/``, ``distil/`` and ``refine/`` (the trainer's run folders), ``distil.safetensors``,
``best.safetensors`` (the refine checkpoint kept), ``own_style.json`` (the seconds each phase took).
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..errors import VidstyleError
from ..io.atomic import atomic_write_bytes
from ..io.images import find_images, is_image
from .config import TrainConfig

log = logging.getLogger("vidstyle")

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".gif")
MIN_PHOTOS = 20  # fewer, and the rows learn those few pictures
DEFAULT_BASE = "paintings"


@dataclass(frozen=True)
class OwnStyleOptions:
    """What ``vidstyle train --style PICTURE`` takes (the recipe's fixed parts are in ``recipe``)."""

    picture: str                                  # the painting (any picture file)
    data: tuple[str, ...] = ()                    # folders of photos and video files; () : found (``find_data``)
    output: str | None = None                     # the style file; default <user models>/<name>.safetensors
    name: str | None = None                       # the style's name; default the picture's file name
    base: str = DEFAULT_BASE                      # the model whose network it paints with
    minutes: float | None = None                  # the budget; None: 45 on a CPU, 10 on a GPU
    run_dir: str | None = None                    # default runs/<name>
    resume: bool = False                          # go on from what RUN_DIR holds
    overwrite: bool = False                       # replace the output, start RUN_DIR over
    device: str = "auto"
    seed: int = 0
    photos: int = 240                             # training pictures (each painted once by the picture network)
    distil_steps: int = 100                       # the rows have found the paintings by then (docs/MODELS.md)
    refine_steps: int | None = None               # None: until the budget is spent
    threads: int | None = None
    precision: str = "auto"
    preview_minutes: float = 5.0
    recipe: dict = field(default_factory=dict)    # TrainConfig fields to change in the refine phase (experiments)

    @property
    def style_name(self) -> str:
        from ..naming import safe_label

        return self.name or safe_label(Path(self.picture).stem)


def default_minutes(device: str) -> float:
    """The budget when none is given: 45 minutes on a CPU, 10 on a GPU (where a step is 50 times faster)."""
    return 10.0 if device == "cuda" else 45.0


def find_data(given: tuple[str, ...]) -> tuple[list[Path], list[Path]]:
    """(photo files, video files) of the ``--data`` folders and files; without any, the user's Pictures folder.

    A one-line VidstyleError when they hold too few pictures, saying what to give."""
    if not given:
        import platformdirs

        pictures = Path(platformdirs.user_pictures_dir())
        if not pictures.is_dir():
            raise VidstyleError(f"no training photos: give --data PHOTOS (a folder of at least {MIN_PHOTOS} photos, "
                                "or videos of the footage you will paint)")
        given = (str(pictures),)
    photos, videos = [], []
    for item in map(Path, given):
        if item.is_dir():
            photos += find_images(item)
            videos += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        elif item.is_file() and item.suffix.lower() in VIDEO_SUFFIXES:
            videos.append(item)
        elif item.is_file() and is_image(item):
            photos.append(item)
        else:
            raise VidstyleError(f"--data {item}: not a folder, a video or a picture")
    if len(photos) < MIN_PHOTOS and not videos:
        where = ", ".join(given)
        raise VidstyleError(f"{where} holds {len(photos)} photo(s) and no video: give --data a folder of at least "
                            f"{MIN_PHOTOS} photos, or videos of the footage you will paint")
    return photos, videos


def sample_frames(video: Path, count: int, short_side: int) -> list[np.ndarray]:
    """``count`` frames spread evenly over a video, (H, W, 3) uint8 RGB at ``short_side``."""
    from ..io.reader import VideoReader
    from .data import fit_short_side

    with VideoReader(video) as r:
        frames = [f.rgb for f in r.frames()]  # a user's clip: seconds to minutes of small frames at most
    if not frames:
        return []
    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    return [fit_short_side(frames[i], short_side) for i in sorted(set(picks.tolist()))]


def prepare_data(opts: OwnStyleOptions, folder: Path, scale: int, device) -> tuple[Path, Path, Path | None]:
    """Write the training pictures and their paintings: (photos folder, targets folder, video folder or None).

    ``folder/photos/NNNNN.png`` (a photo or a video frame at ``scale`` px on its short side) and
    ``folder/targets/<style>/NNNNN.png`` (the picture network's painting of it). What is there is kept (resume).
    """
    from .data import load_photo

    photos_dir, targets_dir = folder / "photos", folder / "targets" / opts.style_name
    photos_dir.mkdir(parents=True, exist_ok=True)
    targets_dir.mkdir(parents=True, exist_ok=True)
    files, videos = find_data(opts.data)
    rng = random.Random(opts.seed)
    rng.shuffle(files)
    per_video = math.ceil(opts.photos / 2 / len(videos)) if videos else 0  # frames: up to half the pictures
    painter = _picture_painter(opts.picture, device)
    n = 0

    def add(img: np.ndarray) -> None:
        nonlocal n
        photo, target = photos_dir / f"{n:05d}.png", targets_dir / f"{n:05d}.png"
        if not target.exists():
            _write_png(photo, img)
            _write_png(target, painter(img))
        n += 1

    for v in videos:
        for frame in sample_frames(v, per_video, scale):
            add(frame)
    for f in files:
        if n >= opts.photos:
            break
        img = load_photo(f, scale)
        if img is not None and max(img.shape[:2]) <= 4 * scale:  # a panorama's 256-px crops would all be sky
            add(img)
    if n < MIN_PHOTOS:
        raise VidstyleError(f"only {n} readable picture(s) in --data: give at least {MIN_PHOTOS}")
    video_dir = None
    if videos:  # real frame pairs for the temporal loss
        video_dir = folder / "video"
        video_dir.mkdir(exist_ok=True)
        for i, v in enumerate(videos):
            link = video_dir / f"{i:03d}{v.suffix.lower()}"
            if not link.exists():
                link.symlink_to(v.resolve())
    return photos_dir, targets_dir.parent, video_dir


def _picture_painter(picture: str, device) -> Callable[[np.ndarray], np.ndarray]:
    """(H, W, 3) uint8 -> the picture network's painting of it in the style of ``picture``, same size."""
    import torch

    from ..models.picture_style import picture_model

    model = picture_model({picture: 1.0}, device=device, light=False)
    net, mix = model.net.eval(), model.net.mix.to(device)

    def paint(img: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(img).permute(2, 0, 1)[None].float().div(255).to(device)
            y = net(x, mix)[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
        return y

    return paint


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise VidstyleError(f"cannot encode {path}")
    atomic_write_bytes(path, png.tobytes())


# --------------------------------------------------------------------------- the run
class OwnStyleRun:
    """One ``vidstyle train --style PICTURE`` run: checks everything before any slow work, then ``run()``."""

    CHECK_EVERY = 25  # refine steps between checkpoints and the validation that keeps the best

    def __init__(self, opts: OwnStyleOptions, progress: Callable[[str, int, int, dict], None] | None = None):
        from ..io.pictures import read_picture
        from ..models.files import model_scale
        from ..models.metadata import read_metadata
        from ..models.registry import model_file, user_dir
        from ..models.style_file import is_style_file
        from ..stylizer import pick_device

        self.opts, self.progress, self.name = opts, progress, opts.style_name
        self.base = model_file(opts.base)
        if is_style_file(self.base):
            raise VidstyleError(f"--init {opts.base} is a style file: a style is added to a model file (e.g. "
                                f"{DEFAULT_BASE})")
        self.output = Path(opts.output) if opts.output else user_dir() / f"{self.name}.safetensors"
        if self.output.suffix != ".safetensors":
            raise VidstyleError(f"--output must end in .safetensors: {self.output}")
        if self.output.exists() and not opts.overwrite:
            raise VidstyleError(f"{self.output} exists; pass --overwrite to replace it, or choose another --output")
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.run_dir = Path(opts.run_dir or Path("runs") / self.name)
        self.state_path = self.run_dir / "own_style.json"
        if self.state_path.exists() and not (opts.resume or opts.overwrite):
            raise VidstyleError(f"{self.run_dir} holds an earlier run of this style: --resume {self.run_dir} to go on "
                                "with it, or --overwrite to start over")
        if opts.resume and not self.state_path.exists():
            raise VidstyleError(f"--resume: {self.run_dir} holds no run to go on with")
        read_picture(opts.picture)  # one line now, for a picture that cannot be read
        if opts.minutes is not None and not (math.isfinite(opts.minutes) and opts.minutes > 0):
            raise VidstyleError(f"--minutes must be a number above 0, not {opts.minutes}")
        self.device = pick_device(opts.device)
        self.minutes = opts.minutes if opts.minutes is not None else default_minutes(self.device.type)
        import json as _json

        meta = read_metadata(self.base)
        self.scale = model_scale(_json.loads(meta.get("training", "{}"))) or 256
        self.arch = str(_json.loads(meta.get("arch", "{}")).get("arch", "transformer"))
        find_data(opts.data)  # one line now, for data that will not do
        self.cuda = self.device.type == "cuda"

    # -- the state kept in RUN_DIR --------------------------------------------------
    def _state(self) -> dict:
        if self.opts.resume and self.state_path.exists():
            state = json.loads(self.state_path.read_text())
            if state.get("picture_sha256") != _sha(self.opts.picture) or state.get("name") != self.name:
                raise VidstyleError(f"--resume: {self.run_dir} is a run of another picture or style name")
            return state
        o = self.opts
        return {"name": self.name, "picture": str(Path(o.picture).resolve()), "picture_sha256": _sha(o.picture),
                "base": self.base.stem, "data": [str(Path(d).resolve()) for d in o.data],
                "output": str(self.output.resolve()), "minutes": self.minutes, "seconds": {}}

    def _save_state(self, state: dict) -> None:
        atomic_write_bytes(self.state_path, json.dumps(state, indent=1).encode())

    def _left(self, state: dict) -> float:
        """Minutes of the budget not yet spent."""
        return self.minutes - sum(state["seconds"].values()) / 60

    # -- the phases ---------------------------------------------------------------
    def run(self) -> dict:
        """Every phase not yet done, then the style file. Returns a summary (JSON-able)."""
        import shutil

        if self.opts.overwrite and not self.opts.resume and self.run_dir.exists():
            for sub in ("data", "distil", "refine"):
                shutil.rmtree(self.run_dir / sub, ignore_errors=True)
            for f in ("distil.safetensors", "refine.safetensors", "best.safetensors", "best.json", "best-model.safetensors",
                      "own_style.json"):
                (self.run_dir / f).unlink(missing_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = self._state()
        self._save_state(state)
        log.info("your own style %s: %.3g minutes in all, %.3g left (the picture network paints the training "
                 "pictures, the new rows learn them, then the perceptual losses refine them)", self.name,
                 self.minutes, self._left(state))
        data = self.run_dir / "data"
        if "data" not in state["seconds"]:
            t = time.perf_counter()
            log.info("painting the training pictures with the picture network (%s)", Path(self.opts.picture).name)
            prepare_data(self.opts, data, self.scale, self.device)
            state["seconds"]["data"] = time.perf_counter() - t
            self._save_state(state)
        photos, targets = data / "photos", data / "targets"
        video = data / "video" if (data / "video").is_dir() else None
        distilled = self.run_dir / "distil.safetensors"
        if "distil" not in state["seconds"] or not distilled.exists():
            self._phase("distil", state, self._distil_config(photos, targets, distilled, state))
        if self._left(state) > 0.5 and "refine" not in state.get("done", []):
            self._phase("refine", state, self._refine_config(photos, video, distilled, state))
        return self._write(state)

    def _distil_config(self, photos: Path, targets: Path, out: Path, state: dict) -> TrainConfig:
        """The rows learn the picture network's paintings (L1 alone: no loss network, a step is the style network's)."""
        ck = self.run_dir / "distil" / "checkpoint.safetensors"
        return self._config(data=str(photos), targets=str(targets), init=None if ck.exists() else str(self.base),
                            output=str(out),
                            content_weight=0.0, style_weight=0.0, tv_weight=0.0, layout_weight=0.0,
                            colour_weight=0.0, target_weight=1.0, temporal="none", lr=1e-2,
                            steps=self.opts.distil_steps, batch_size=16 if self.cuda else 4, run_dir=str(self.run_dir / "distil"),
                            resume=str(ck) if ck.exists() else None, minutes=self._left(state))

    def _refine_config(self, photos: Path, video: Path | None, distilled: Path, state: dict) -> TrainConfig:
        """The perceptual losses from where the distilled rows are, for the rest of the budget."""
        ck = self.run_dir / "refine" / "checkpoint.safetensors"
        cfg = self._config(data=str(photos), init=None if ck.exists() else str(distilled),
                           output=str(self.run_dir / "refine.safetensors"),
                           video_data=str(video) if video else None, temporal="output" if video else "none",
                           lr=5e-3, ema=0.99, steps=self.opts.refine_steps or 10_000_000, batch_size=8 if self.cuda else 2,
                           run_dir=str(self.run_dir / "refine"), resume=str(ck) if ck.exists() else None,
                           minutes=self._left(state))
        for k, v in self.opts.recipe.items():
            setattr(cfg, k, v)
        return cfg

    def _config(self, **fields) -> TrainConfig:
        o = self.opts
        return TrainConfig(styles=[o.picture], names=[self.name], norm_only=True, arch=self.arch, size=self.scale,
                           photo_size=self.scale, seed=o.seed, device=o.device, threads=o.threads,
                           precision=o.precision, checkpoint_every=self.CHECK_EVERY,
                           preview_minutes=o.preview_minutes, overwrite=True, **fields)

    def _phase(self, phase: str, state: dict, cfg: TrainConfig) -> None:
        """Train one phase; its seconds go to the state. Ctrl-C: what was learnt becomes the style file."""
        from .loop import Trainer

        trainer = Trainer(cfg, self._progress(phase))
        self.trainer = trainer
        before = trainer.seconds  # a resumed phase's earlier seconds are in the state already
        try:
            trainer.train()
        except VidstyleError as e:
            if not trainer.interrupted:
                raise
            state["seconds"][phase] = state["seconds"].get(phase, 0.0) + trainer._elapsed() - before
            self._save_state(state)
            written = self._write(state, interrupted=True)
            raise VidstyleError(f"{str(e).split(';')[0]} of the {phase} phase; what it learnt is in "
                                f"{written['output']}: go on with --resume {self.run_dir}") from None
        state["seconds"][phase] = state["seconds"].get(phase, 0.0) + trainer._elapsed() - before
        state.setdefault("done", []).append(phase)
        self._save_state(state)

    def _progress(self, phase: str):
        def progress(step: int, total: int, losses: dict) -> None:
            if phase == "refine" and step % self.CHECK_EVERY == 0:
                self._keep_best(step)
            if self.progress:
                self.progress(phase, step, total, losses)

        return progress

    def _keep_best(self, step: int) -> None:
        """Keep the refine checkpoint whose network has the lowest loss on the preview's fixed photos."""
        loss = self.trainer.validation_loss()["total"]
        best = self.run_dir / "best.json"
        old = json.loads(best.read_text()) if best.exists() else {}
        if not math.isfinite(loss) or loss >= old.get("loss", math.inf):
            return
        self.trainer.save_checkpoint(self.run_dir / "best.safetensors")
        atomic_write_bytes(best, json.dumps({"step": step, "loss": loss}).encode())
        log.info("refine step %d: validation loss %.4g, the best so far: kept", step, loss)

    # -- the style file ---------------------------------------------------------------
    def _write(self, state: dict, interrupted: bool = False) -> dict:
        """The style file from the best refine checkpoint, else the latest network of the last phase run."""
        from ..models.style_file import write_style_file
        from .checkpoint import model_from_checkpoint

        candidates = [self.run_dir / "best.safetensors", self.run_dir / "refine" / "checkpoint.safetensors",
                      self.run_dir / "distil.safetensors", self.run_dir / "distil" / "checkpoint.safetensors"]
        source = next((c for c in candidates if c.exists()), None)
        if source is None:
            raise VidstyleError("nothing was learnt yet: no style file written")
        model = source
        if source.parent.name in ("distil", "refine") or source.name == "best.safetensors":  # a checkpoint
            model = model_from_checkpoint(source, self.run_dir / "best-model.safetensors", overwrite=True)
        seconds = sum(state["seconds"].values())
        recipe = {"picture": Path(self.opts.picture).name, "picture_sha256": state["picture_sha256"],
                  "base": self.base.stem, "minutes": self.minutes, "seconds": round(seconds, 1),
                  "phases": {k: round(v, 1) for k, v in state["seconds"].items()}, "from": source.name,
                  "scale": self.scale, "device": str(self.device), "data": list(self.opts.data),
                  "photos": self.opts.photos, "seed": self.opts.seed, "interrupted": interrupted,
                  "best": json.loads((self.run_dir / "best.json").read_text())
                  if (self.run_dir / "best.json").exists() else None}
        from ..models.picture_style import TEMPORAL_STRENGTH

        write_style_file(self.output, model, self.name, self.base, training=recipe, temporal_strength=TEMPORAL_STRENGTH)
        return {"output": str(self.output), "style": self.name, "base": self.base.stem, "seconds": round(seconds, 1),
                "phases": recipe["phases"], "from": source.name, "run_dir": str(self.run_dir),
                "best": recipe["best"], "bytes": self.output.stat().st_size}


def _sha(path: str) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
