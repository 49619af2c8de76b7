"""Your own style in under an hour of a CPU: ``vidstyle train --style PICTURE`` adds it to the bundled network.

In a conditional-instance-norm network a style is its (gamma, beta) rows in the norm layers; the convolutions are
shared (Dumoulin et al. 2017 learn a new style by training those rows alone). So a new style needs no new network:
only its rows are trained, on a copy of the bundled one (every other weight stays bit for bit), and it is written as
a style file of kilobytes (``models.style_file``) that paints with the bundled network.

One budget (``minutes``), three phases, each resumable:

1. **data** (seconds, ``own_data``): photos (folders) and frames (videos, sampled evenly) at the base model's
   scale, each painted by the picture network (``models.arbitrary``, Ghiasi et al. 2017): the picture's look.
2. **distil** (a few minutes): the new rows learn those paintings (L1), with no loss network: the rows start
   where the picture network already is.
3. **refine** (the rest): the perceptual losses (Gram style, content, colour, layout; the temporal loss on real
   frame pairs when videos are given) take the rows beyond the picture network where it falls short. The rows
   with the lowest loss on fixed photos are kept.

RUN_DIR holds everything: ``data/``, ``distil/`` and ``refine/`` (the trainer's run folders), ``distil.safetensors``,
``best.safetensors`` and ``best.json`` (the refine checkpoint kept), ``own_style.json`` (the run's options, the base
network's sha256, the seconds each phase took: what ``--resume`` goes on with).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import VidstyleError
from ..io.atomic import atomic_write_bytes
from .config import TrainConfig
from .own_data import find_data, prepare_data

log = logging.getLogger("vidstyle")

DEFAULT_BASE = "paintings"


@dataclass(frozen=True)
class OwnStyleOptions:
    """What ``vidstyle train --style PICTURE`` takes (the recipe's fixed parts are in ``recipe``)."""

    picture: str = ""                             # the painting (any picture file); with resume, the run's
    data: tuple[str, ...] = ()                    # folders of photos and video files; () : found (``find_data``)
    output: str | None = None                     # the style file; default <user models>/<name>.safetensors
    name: str | None = None                       # the style's name; default the picture's file name
    base: str = DEFAULT_BASE                      # the model whose network it paints with
    minutes: float | None = None                  # the budget; None: 45 on a CPU, 10 on a GPU
    run_dir: str | None = None                    # default runs/<name>
    resume: bool = False                          # go on from what RUN_DIR holds (its own options; minutes may change)
    overwrite: bool = False                       # replace the output, start RUN_DIR over
    device: str = "auto"
    seed: int = 0
    photos: int = 240                             # training pictures (each painted once by the picture network)
    distil_steps: int = 100                       # the rows have found the paintings by then; 0: no distil (a
                                                  # style of the base is refined from its own row)
    refine_steps: int | None = None               # None: until the budget is spent
    anchor: float = 4.0                           # refine: weight of the L1 to the picture network's paintings,
                                                  # which keeps the photo's subject (0: perceptual losses alone)
    threads: int | None = None
    precision: str = "auto"
    preview_minutes: float = 5.0
    recipe: dict = field(default_factory=dict)    # TrainConfig fields to change in the refine phase (experiments)

    # what a resumed run takes from its RUN_DIR rather than from the command line
    KEPT = ("picture", "data", "output", "name", "base", "seed", "photos", "distil_steps", "refine_steps", "anchor")

    @property
    def style_name(self) -> str:
        from ..naming import safe_label

        return self.name or safe_label(Path(self.picture).stem)


def default_minutes(device: str) -> float:
    """The budget when none is given: 45 minutes on a CPU, 10 on a GPU (where a step is 50 times faster)."""
    return 10.0 if device == "cuda" else 45.0


# --------------------------------------------------------------------------- the run
class OwnStyleRun:
    """One ``vidstyle train --style PICTURE`` run: checks everything before any slow work, then ``run()``.

    RUN_DIR/own_style.json keeps the run's options, the base network's sha256 and the seconds each phase took:
    ``--resume RUN_DIR`` goes on with exactly that run (a --minutes given then is the new budget)."""

    CHECK_EVERY = 25  # refine steps between checkpoints and the validation that keeps the best

    def __init__(self, opts: OwnStyleOptions, progress: Callable[[str, int, int, dict], None] | None = None):
        from ..io.pictures import read_picture
        from ..models.files import model_scale
        from ..models.registry import model_file, model_paths, user_dir
        from ..models.style_file import check_style_name, is_style_file, network_sha256
        from ..models.weights import read_model_file
        from ..stylizer import pick_device

        self.run_dir = Path(opts.run_dir or Path("runs") / opts.style_name)
        self.state_path = self.run_dir / "own_style.json"
        self.state = self._earlier(opts)
        if self.state:  # --resume: the run's own options
            kept = {k: self.state["options"].get(k, getattr(opts, k)) for k in opts.KEPT}
            opts = dataclasses.replace(opts, **{**kept, "data": tuple(kept["data"])})
        self.opts, self.progress, self.name = opts, progress, opts.style_name
        self.base = model_file(opts.base)
        if is_style_file(self.base):
            raise VidstyleError(f"--base {opts.base} is a style file: a style is added to a model file (e.g. "
                                f"{DEFAULT_BASE})")
        held = read_model_file(self.base)
        check_style_name(self.name, taken=[p.stem for p in model_paths()])
        self.output = Path(opts.output) if opts.output else user_dir() / f"{self.name}.safetensors"
        if self.output.suffix != ".safetensors":
            raise VidstyleError(f"--output must end in .safetensors: {self.output}")
        ours = self.state and Path(self.state["options"]["output"]) == self.output  # written at a Ctrl-C
        if self.output.exists() and not (opts.overwrite or ours):
            raise VidstyleError(f"{self.output} exists; pass --overwrite to replace it, or choose another --output")
        if opts.minutes is not None and not (math.isfinite(opts.minutes) and opts.minutes > 0):
            raise VidstyleError(f"--minutes must be a number above 0, not {opts.minutes}")
        self.picture = read_picture(opts.picture)  # one line now, for a picture that cannot be read
        self.found = find_data(opts.data)  # and for data that will not do (the data phase paints these)
        self.network = network_sha256(held)
        if self.state and self.state["base_network_sha256"] != self.network:
            raise VidstyleError(f"--resume: {self.run_dir} was trained on another {opts.base} network; start over "
                                "with --overwrite")
        self.device = pick_device(opts.device)
        self.cuda = self.device.type == "cuda"
        self.minutes = opts.minutes if opts.minutes is not None else (
            self.state["minutes"] if self.state else default_minutes(self.device.type))
        self.scale = model_scale(held.training) or 256
        self.arch = held.config.arch
        # batches by device, kept by a resumed run (a checkpoint goes on with its own batch size)
        self.batches = self.state.get("batches") if self.state else (
            {"distil": 16, "refine": 8} if self.cuda else {"distil": 4, "refine": 2})
        self.output.parent.mkdir(parents=True, exist_ok=True)

    def _earlier(self, opts: OwnStyleOptions) -> dict | None:
        """The state of the run in RUN_DIR that --resume goes on with (None for a new run); one-line refusals."""
        there = self.state_path.is_file()
        if opts.resume:
            if not there:
                raise VidstyleError(f"--resume: {self.run_dir} holds no run of your own style to go on with")
            try:
                state = json.loads(self.state_path.read_text())
                state["options"]["data"], state["seconds"], state["base_network_sha256"]  # noqa: B018 - all there
            except (OSError, ValueError, KeyError, TypeError):
                raise VidstyleError(f"--resume: {self.state_path} is broken; start over with --overwrite") from None
            return state
        if there and not opts.overwrite:
            raise VidstyleError(f"{self.run_dir} holds an earlier run of this style: --resume {self.run_dir} to go on "
                                "with it, or --overwrite to start over")
        return None

    # -- the state kept in RUN_DIR --------------------------------------------------
    def _new_state(self) -> dict:
        o = self.opts
        options = {k: getattr(o, k) for k in o.KEPT}
        options.update(picture=str(Path(o.picture).resolve()), data=[str(Path(d).resolve()) for d in o.data],
                       output=str(self.output.resolve()))
        return {"options": options, "picture_sha256": self.picture.digest, "base_network_sha256": self.network,
                "minutes": self.minutes, "batches": self.batches, "seconds": {}, "done": []}

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
            for f in ("distil.safetensors", "refine.safetensors", "best.safetensors", "best-prev.safetensors",
                      "best.json", "best-model.safetensors", "own_style.json"):
                (self.run_dir / f).unlink(missing_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = self.state or self._new_state()
        state["minutes"] = self.minutes
        self._save_state(state)
        log.info("your own style %s: %.3g minutes in all, %.3g left (the picture network paints the training "
                 "pictures, the new rows learn them, then the perceptual losses refine them)", self.name,
                 self.minutes, self._left(state))
        data = self.run_dir / "data"
        o = self.opts
        if "data" not in state["done"]:
            t = time.perf_counter()
            log.info("painting %d training pictures with the picture network (%s)", o.photos, Path(o.picture).name)
            prepare_data(o.picture, self.name, self.found, data, scale=self.scale, count=o.photos, seed=o.seed,
                         device=self.device)
            state["seconds"]["data"] = state["seconds"].get("data", 0.0) + time.perf_counter() - t
            state["done"].append("data")
            self._save_state(state)
        video = data / "video" if (data / "video").is_dir() else None
        distilled = self.run_dir / "distil.safetensors"
        if o.distil_steps and "distil" not in state["done"]:
            self._check_budget(state, "painting the training pictures")
            self._phase("distil", state, self._distil_config(data / "photos", data / "targets", distilled))
        start = distilled if o.distil_steps else self.base  # 0: refine a style of the base from its own row
        if self._left(state) > 0.5 and "refine" not in state["done"]:
            self._phase("refine", state, self._refine_config(data / "photos", video, start))
        return self._write(state)

    def _check_budget(self, state: dict, spent_on: str) -> None:
        if self._left(state) <= 0:
            raise VidstyleError(f"the {self.minutes:g}-minute budget went on {spent_on}; give more --minutes "
                                f"(--resume {self.run_dir} --minutes N goes on)")

    def _distil_config(self, photos: Path, targets: Path, out: Path) -> TrainConfig:
        """The rows learn the picture network's paintings (L1 alone: no loss network, a step is the style network's)."""
        ck = self.run_dir / "distil" / "checkpoint.safetensors"
        return self._config(data=str(photos), targets=str(targets), init=None if ck.exists() else str(self.base),
                            output=str(out), content_weight=0.0, style_weight=0.0, tv_weight=0.0, layout_weight=0.0,
                            colour_weight=0.0, target_weight=1.0, temporal="none", lr=1e-2,
                            steps=self.opts.distil_steps, batch_size=self.batches["distil"],
                            run_dir=str(self.run_dir / "distil"), resume=str(ck) if ck.exists() else None)

    def _refine_config(self, photos: Path, video: Path | None, start: Path) -> TrainConfig:
        """The perceptual losses from the model file ``start`` (the distilled rows), for the rest of the budget,
        with the picture network's paintings as an anchor (``anchor``): alone, the Gram loss trades the photo's
        subject for the painting's texture (docs/MODELS.md, *Your own style*)."""
        ck = self.run_dir / "refine" / "checkpoint.safetensors"
        anchor = {"targets": str(photos.parent / "targets"), "target_weight": self.opts.anchor} if self.opts.anchor else {}
        cfg = self._config(data=str(photos), init=None if ck.exists() else str(start), **anchor,
                           output=str(self.run_dir / "refine.safetensors"),
                           video_data=str(video) if video else None, temporal="output" if video else "none",
                           lr=5e-3, ema=0.99, steps=self.opts.refine_steps or 10_000_000,
                           batch_size=self.batches["refine"], run_dir=str(self.run_dir / "refine"),
                           resume=str(ck) if ck.exists() else None)
        return dataclasses.replace(cfg, **self.opts.recipe)

    def _config(self, **fields) -> TrainConfig:
        o = self.opts
        return TrainConfig(styles=[o.picture], names=[self.name], norm_only=True, arch=self.arch, size=self.scale,
                           photo_size=self.scale, seed=o.seed, device=o.device, threads=o.threads,
                           precision=o.precision, checkpoint_every=self.CHECK_EVERY,
                           preview_minutes=o.preview_minutes, overwrite=True, minutes=1.0, **fields)

    def _phase(self, phase: str, state: dict, cfg: TrainConfig) -> None:
        """Train one phase within what is left of the budget; its seconds (a resumed checkpoint's included) go to
        the state. Ctrl-C: what was learnt becomes the style file."""
        from .loop import Trainer

        trainer = Trainer(cfg, self._progress(phase))
        self.trainer = trainer
        state["seconds"][phase] = trainer.seconds  # 0, or the resumed checkpoint's training time
        self._check_budget(state, "the phases before " + phase)
        trainer.cfg.minutes = self._left(state)  # this call's share: what the budget has left
        try:
            trainer.train()
        except VidstyleError as e:
            if not trainer.interrupted:
                raise
            state["seconds"][phase] = trainer.elapsed()
            self._save_state(state)
            written = self._write(state, interrupted=True)
            raise VidstyleError(f"{str(e).split(';')[0]} of the {phase} phase; what it learnt is in "
                                f"{written['output']}: go on with --resume {self.run_dir}") from None
        state["seconds"][phase] = trainer.elapsed()
        if phase == "refine":
            self._keep_best(trainer.step)  # the last steps too, not only every CHECK_EVERY
        state["done"].append(phase)
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
        if getattr(self, "_validated", None) == step:  # the end of the phase, on a multiple of CHECK_EVERY
            return
        self._validated = step
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
        from ..models.picture_style import TEMPORAL_STRENGTH
        from ..models.style_file import write_style_file
        from .checkpoint import model_from_checkpoint

        r = self.run_dir
        checkpoints = (r / "best.safetensors", r / "refine" / "checkpoint.safetensors")
        models = (r / "distil.safetensors",)
        source = next((c for c in (*checkpoints, *models, r / "distil" / "checkpoint.safetensors") if c.exists()), None)
        if source is None:
            raise VidstyleError("nothing was learnt yet: no style file written")
        model = source
        if source not in models:
            model = model_from_checkpoint(source, r / "best-model.safetensors", overwrite=True)
        seconds = sum(state["seconds"].values())
        best = json.loads((r / "best.json").read_text()) if (r / "best.json").exists() else None
        recipe = {"picture": Path(self.opts.picture).name, "picture_sha256": state["picture_sha256"],
                  "base": self.base.stem, "minutes": self.minutes, "seconds": round(seconds, 1),
                  "phases": {k: round(v, 1) for k, v in state["seconds"].items()}, "from": source.name,
                  "scale": self.scale, "device": str(self.device), "photos": self.opts.photos,
                  "distil_steps": self.opts.distil_steps, "anchor": self.opts.anchor, "seed": self.opts.seed, "videos": (r / "data" / "video").is_dir(),
                  "interrupted": interrupted, "best": best}
        write_style_file(self.output, model, self.name, self.base, training=recipe, temporal_strength=TEMPORAL_STRENGTH)
        return {"output": str(self.output), "style": self.name, "base": self.base.stem, "seconds": round(seconds, 1),
                "phases": recipe["phases"], "from": source.name, "run_dir": str(r), "best": best,
                "bytes": self.output.stat().st_size}
