"""``vidstyle train``: the command-line face of train.loop."""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .common import require_torch, user_errors
from ..errors import VidstyleError


# What ``vidstyle train --style PICTURE`` (your own style, the default) takes; every other option trains a network
OWN_STYLE_OPTIONS = {"style_images", "style", "data", "output", "name", "minutes", "base", "photos", "distil_steps", "anchor",
                     "run_dir", "resume",
                     "overwrite", "device", "seed", "threads", "precision", "preview_minutes", "quiet", "json_out"}


def train(
    ctx: typer.Context,
    style_images: Optional[List[Path]] = typer.Argument(None, help="Style image(s); same as --style."),
    style: Optional[List[Path]] = typer.Option(None, "--style", help="A style image. One picture: your own style, added to the bundled network in --minutes. Several (with --new-network): one multi-style network."),
    data: Optional[List[Path]] = typer.Option(None, "--data", help="Training pictures: a folder of photos (searched recursively); for your own style also video files (frames sampled: train on the footage you will paint; their frame pairs feed the temporal loss), several --data allowed. Without it your own style looks in your Pictures folder."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Style file or model file (.safetensors); default: the user models folder, named after the style."),
    name: Optional[str] = typer.Option(None, "--name", help="Your own style's name (default: the picture's file name): --style NAME paints with it."),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Time budget in minutes: your own style's default is 45 on a CPU, 10 on a GPU; with --new-network it stops a run early (the model is written). An ETA is printed from the first steps, previews every --preview-minutes, Ctrl-C keeps what was learnt."),
    base: str = typer.Option("paintings", "--base", help="Your own style: the model whose network it paints with (its convolutions are kept; only the new style's norm rows train)."),
    photos: int = typer.Option(240, "--photos", min=20, help="Your own style: how many training pictures (each painted once by the picture network, in seconds)."),
    distil_steps: int = typer.Option(100, "--distil-steps", min=0, help="Your own style: steps learning the picture network's paintings before the perceptual losses. 0: none, to refine a style of the base from its own row (--name starry_night)."),
    anchor: float = typer.Option(4.0, "--anchor", min=0, help="Your own style: how strongly the refine phase keeps to the picture network's paintings (an L1 weight), which keeps your photos' subjects; 0: the perceptual losses alone (more of the painting's texture, less of the subject)."),
    new_network: bool = typer.Option(False, "--new-network", help="Train a whole network (hours on a CPU) instead of adding your own style to the bundled one; implied by --init, --norm-only, --targets, --video-data, --nproc and several styles."),
    video_data: Optional[Path] = typer.Option(None, "--video-data", help="Folder of frame folders or videos: real frame pairs for the temporal loss (flow cached beside the data)."),
    flow: str = typer.Option("dis", "--flow", help="Flow for --video-data: dis (OpenCV) or raft (torchvision, needs cached weights)."),
    arch: str = typer.Option("transformer", "--arch", help="transformer (Johnson et al.) or lite (for CPUs and laptops)."),
    size: int = typer.Option(128, "--size", min=32, help="Training crop size (px)."),
    photo_size: Optional[int] = typer.Option(256, "--photo-size", min=32, help="Short side the photos are scaled to before the --size crop (at least --size). Recorded in the model as its scale: `run` paints at about this size, so strokes look as in training."),
    style_size: int = typer.Option(384, "--style-size", min=64, help="Longer side of the style image for its Gram matrices."),
    batch_size: int = typer.Option(2, "--batch-size", min=1, help="Photos per step (with the temporal loss, each comes with a moved copy: twice as many images)."),
    steps: int = typer.Option(40000, "--steps", min=1, help="Optimiser steps. Multi-style models share them: each step trains one style in turn."),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate (above 0)."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1, help="Same seed, same data order and losses."),
    content_weight: float = typer.Option(2.0, "--content-weight", help="Weight of the content loss (the photo's subject); 0 with --style-weight 0 and --targets: no loss network."),
    content_layer: str = typer.Option("relu3_3", "--content-layer", help="Loss-network layer the content loss compares: relu1_2, relu2_2, relu3_3 or relu4_3. Shallower keeps edges more literally (relu2_2: a fine texture over the photo); relu3_3 lets strokes replace them."),
    style_weight: float = typer.Option(0.5, "--style-weight", help="Weight of the style loss (Gram matrices of the painting), scaled per style by --style-scale."),
    style_scale: Optional[List[str]] = typer.Option(None, "--style-scale", help="NAME=FACTOR: multiply --style-weight by FACTOR for the style NAME (an image's stem) of a multi-style run, for a style that stays flat. Repeat for several."),
    style_norm: str = typer.Option("relative", "--style-norm", help="relative: each layer's Gram error is divided by the mean square of the style's Gram at that layer, so relu1_2 .. relu4_3 all count (strokes, not only colour). none: raw sums, where relu1_2 outweighs relu4_3 a millionfold with the hed network."),
    style_octaves: int = typer.Option(1, "--style-octaves", min=1, help="Also compare styles at 1/2, 1/4 .. of the output's size with the painting at 1/2, 1/4 .. (the loss is their mean): the deepest layer then sees strokes and swirls larger than the training crop lets it. 1: full size only."),
    content_octave: int = typer.Option(0, "--content-octave", min=0, help="Compare the content at 1/2**N of the size (output and photo both halved N times): the picture's subject and layout must stay, its finest edges may give way to strokes. 0: full size."),
    tv_weight: float = typer.Option(2.0, "--tv-weight", help="Total variation: against pixel-grid artefacts and hatching."),
    layout_weight: float = typer.Option(10.0, "--layout-weight", min=0, help="Keep the photo's coarse light and dark (luma averaged over 1/16 of the short side) against the loss network's blindness to it: without it pictures come out dark and flat. Colour and strokes stay the style's. 0: off."),
    colour_weight: float = typer.Option(10.0, "--colour-weight", min=0, help="Ask for the painting's distribution of colours (its darks, lights and accents), pooled over the batch, without saying where they go (a sliced histogram loss). Gram matrices alone settle on one mean tint. 0: off."),
    targets: Optional[Path] = typer.Option(None, "--targets", help="Folder of painted targets: TARGETS/STYLE/REL.png, the photo --data/REL.* painted in STYLE at --photo-size (e.g. by a teacher network: benchmarks/teacher_targets.py). Each step also asks for its photos' paintings, pixel by pixel (L1, --target-weight); photos without one in every style are left out. With --content-weight 0 --style-weight 0 the loss network is not run: distillation alone."),
    target_weight: float = typer.Option(10.0, "--target-weight", min=0, help="Weight of the L1 distance to the --targets paintings."),
    clip_grad: float = typer.Option(10.0, "--clip-grad", min=0, help="Clip the gradient to this norm (0: no clipping). Steps whose loss or gradient is not finite are always skipped."),
    ema: float = typer.Option(0.0, "--ema", min=0, max=0.99999, help="Keep a moving average of the weights with this decay (e.g. 0.999: about the last 1,000 steps) and write it as the model: less noise from small batches. 0: off. It is kept in checkpoints; --ema can be turned on at a --resume."),
    temporal_loss: str = typer.Option("output", "--temporal-loss", help="output (Ruder et al.), reconet (Gao et al.) or none."),
    temporal_weight: float = typer.Option(30.0, "--temporal-weight", help="Weight of the temporal loss (--temporal-loss) against flicker."),
    feature_temporal_weight: float = typer.Option(0.0, "--feature-temporal-weight", help="Temporal term on the encoder output."),
    loss_net: str = typer.Option("auto", "--loss-net", help="auto, torchvision, hed, or a loss-network .safetensors file."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Checkpoints, log.csv and previews (default runs/<style>). One that holds an earlier run's checkpoint is refused unless --resume continues that run or --overwrite starts over in it."),
    checkpoint_every: int = typer.Option(200, "--checkpoint-every", min=0, help="Save RUN_DIR/checkpoint.safetensors every N steps (0: only at the end and on Ctrl-C)."),
    preview_every: int = typer.Option(0, "--preview-every", min=0, help="Also write a preview every N steps (0: only by time)."),
    preview_minutes: float = typer.Option(10.0, "--preview-minutes", min=0, help="Write RUN_DIR/preview.png (one row per style) and print the ETA every N minutes."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output model, and start over in a --run-dir that holds an earlier run (its log, previews and checkpoints are replaced)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue from a checkpoint.safetensors."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from the weights of a model file or checkpoint (same --arch), or of a bundled or user model by name (paintings) with this command's recipe: a fresh optimiser and step count. Styles are matched by name; new ones start from the mean of the file's styles."),
    norm_only: bool = typer.Option(False, "--norm-only", help="Train only each style's own norm parameters (Dumoulin et al.), with --init MODEL: its convolutions stay as they are, so its other styles stay exactly as they were and the new model keeps them beside the ones trained here. Adds a style to a multi-style model (e.g. `vidstyle train mine.jpg --data PHOTOS --init paintings --norm-only --lr 1e-2 -o mine7.safetensors`: the norm rows want about 10 times the default learning rate), or retunes one (which moves it little: the convolutions are shared); every step goes to the styles given."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (at least 1)."),
    precision: str = typer.Option("auto", "--precision", help="auto, fp32 or bf16. auto: bf16 autocast on CUDA and on CPUs with bf16 maths (AVX-512 BF16, AMX), else fp32."),
    loss_padding: str = typer.Option("reflect", "--loss-padding", help="Conv padding of the loss network: reflect (no bands along the edges) or zeros (as VGG was trained)."),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Train with N processes on this machine (DistributedDataParallel through torchrun: one per GPU, or gloo on CPUs). For several machines run `torchrun ... -m vidstyle train` yourself (docs/SCALING.md)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no status lines."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
):
    """Your own style from any picture, in under an hour of a CPU; or a whole style network.

    By default it adds the picture as a new style of the bundled network: only the new style's norm rows train
    (every other weight stays as it is), first from the picture network's paintings of your photos, then with
    the perceptual losses (and the temporal loss on your videos), within --minutes. The result is a style file
    of kilobytes in the user models folder: `vidstyle styles` lists it, `--style NAME` paints with it, `--mix`
    blends it with the bundled styles.

    Examples:

      vidstyle train my_painting.jpg --data ~/photos --data holiday.mp4 --minutes 45

      vidstyle train --resume runs/my_painting          # go on after Ctrl-C

      vidstyle train starry_night.jpg --new-network --data photos/ --steps 2000 --size 256
    """
    require_torch("vidstyle train", "train")
    from ..train.config import TrainConfig
    from ..train.loop import Trainer

    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(_torchrun(nproc))
    with user_errors(quiet=os.environ.get("RANK", "0") != "0"):  # under torchrun, rank 0 speaks for all
        styles = [str(p) for p in (style_images or [])] + [str(p) for p in (style or [])]
        own_run = _own_run_dir(resume)
        if not styles and own_run is None:
            raise VidstyleError("give a style picture (vidstyle train MY_PAINTING.jpg --data PHOTOS/)")
        network = (new_network or init is not None or norm_only or targets is not None or video_data is not None
                   or nproc > 1 or "WORLD_SIZE" in os.environ or len(styles) > 1)  # a torchrun rank: --nproc given
        if not network:
            given = [n for n in ctx.params if n not in OWN_STYLE_OPTIONS
                     and ctx.get_parameter_source(n).name not in ("DEFAULT", "DEFAULT_MAP")]
            if given:
                flag = "--" + given[0].replace("_", "-")
                own = ", ".join("--" + n.replace("_", "-") for n in sorted(OWN_STYLE_OPTIONS - {"style_images", "json_out"}))
                raise VidstyleError(f"{flag} is for training a whole network (add --new-network); your own style "
                                    f"takes {own}, --json")
            from ..train.own_style import OwnStyleOptions

            # --resume RUN: that run's own options (own_style.OwnStyleRun); a --minutes given is its new budget
            run_dir = own_run or run_dir
            opts = OwnStyleOptions(picture=styles[0] if styles else "", data=tuple(str(d) for d in data or ()),
                                   output=str(output) if output else None, name=name, base=base, minutes=minutes,
                                   run_dir=str(run_dir) if run_dir else None, resume=own_run is not None,
                                   overwrite=overwrite, device=device, seed=seed, photos=photos,
                                   distil_steps=distil_steps, anchor=anchor, threads=threads, precision=precision,
                                   preview_minutes=preview_minutes)
            return _own_style(opts, quiet, json_out)
        mine = [n for n in ("name", "base", "photos", "distil_steps", "anchor")
                if ctx.get_parameter_source(n).name not in ("DEFAULT", "DEFAULT_MAP")]
        if mine:
            raise VidstyleError(f"--{mine[0].replace('_', '-')} is for your own style, not for training a whole "
                                "network (--new-network, --init, --norm-only, --targets, --video-data, --nproc or "
                                "several styles)")
        if not data or len(data) > 1:
            raise VidstyleError("training a whole network takes one --data folder of photos")
        data = data[0]
        if not styles:
            raise VidstyleError("give a style image (vidstyle train STYLE.jpg --data PHOTOS/)")
        if arch not in ("transformer", "lite"):
            raise VidstyleError(f"--arch must be transformer or lite, not {arch!r}")
        if output is not None and output.exists() and output.is_dir():
            raise VidstyleError(f"--output is a folder: {output}")
        if init is not None and not init.is_file():  # a model by name: --init paintings
            from ..models.registry import model_file

            init = model_file(str(init))
        cfg = TrainConfig(styles=styles, data=str(data), output=str(output) if output else None,
                          video_data=str(video_data) if video_data else None, flow=flow, arch=arch, size=size,
                          photo_size=photo_size, style_size=style_size, batch_size=batch_size, steps=steps, minutes=minutes, lr=lr, seed=seed,
                          content_weight=content_weight, content_layer=content_layer, clip_grad=clip_grad, ema=ema, style_weight=style_weight, style_scales=_scales(style_scale), style_norm=style_norm, style_octaves=style_octaves, content_octave=content_octave, tv_weight=tv_weight, layout_weight=layout_weight, colour_weight=colour_weight,
                          targets=str(targets) if targets else None, target_weight=target_weight,
                          temporal=temporal_loss, temporal_weight=temporal_weight,
                          feature_temporal_weight=feature_temporal_weight, loss_net=loss_net, device=device,
                          run_dir=str(run_dir) if run_dir else None, checkpoint_every=checkpoint_every,
                          preview_every=preview_every, preview_minutes=preview_minutes, overwrite=overwrite, resume=str(resume) if resume else None, init=str(init) if init else None, norm_only=norm_only, threads=threads,
                          precision=precision, loss_padding=loss_padding)
        bar = None
        quiet = quiet or os.environ.get("RANK", "0") != "0"  # under torchrun, rank 0 speaks for all
        if not quiet and os.environ.get("RANK", "0") == "0":  # status lines every --preview-minutes
            logging.getLogger("vidstyle").setLevel(logging.INFO)
        if not quiet and not json_out and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            bar = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                           TextColumn("{task.fields[losses]}"), console=Console(stderr=True))
            task = bar.add_task("train", total=steps, losses="")

        def progress(step, total, losses):
            if bar:
                text = " ".join(f"{k} {v:.4g}" for k, v in losses.items())
                bar.update(task, completed=step, losses=text)

        trainer = Trainer(cfg, progress)
        if bar:
            bar.start()
        try:
            summary = trainer.train()
        finally:
            if bar:
                bar.stop()
        if trainer.photos.skipped and not json_out:
            typer.echo(f"warning: skipped {len(trainer.photos.skipped)} unreadable image(s)", err=True)
        if os.environ.get("RANK", "0") != "0":
            return
        if json_out:
            typer.echo(json.dumps(summary))
        elif not quiet:
            fl = summary["final_losses"]
            done = summary["trained_steps"]
            resumed = f" (step {summary['steps']} in all)" if done != summary["steps"] else ""
            typer.echo(f"{summary['output']}: {done} steps in {summary['seconds']:.0f} s{resumed}, "
                       f"final total loss {fl.get('total', float('nan')):.4g} (loss net {summary['loss_net']})", err=True)


def _own_run_dir(resume: Optional[Path]) -> Optional[Path]:
    """The own-style run folder ``--resume`` names (the folder, or a checkpoint in it); None for a network's
    checkpoint or no --resume."""
    if resume is None:
        return None
    for folder in (resume, resume.parent, resume.parent.parent):
        if (folder / "own_style.json").is_file():
            return folder
    return None


def _own_style(opts, quiet: bool, json_out: bool) -> None:
    """``vidstyle train PICTURE``: the style file of your own style (train.own_style), and what is said of it."""
    from ..train.own_style import OwnStyleRun

    if not quiet:
        logging.getLogger("vidstyle").setLevel(logging.INFO)
    run = OwnStyleRun(opts)
    summary = run.run()
    if json_out:
        typer.echo(json.dumps(summary))
    elif not quiet:
        typer.echo(f"{summary['output']}: the style {summary['style']} ({summary['bytes'] // 1024} KB, for the "
                   f"{summary['base']} network) in {summary['seconds'] / 60:.0f} min; paint with --style "
                   f"{summary['style']}", err=True)


def _scales(items: Optional[List[str]]) -> dict[str, float]:
    """``--style-scale NAME=FACTOR`` options -> {name: factor}."""
    out = {}
    for item in items or []:
        name, sep, factor = item.partition("=")
        try:
            out[name.strip()] = float(factor)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise VidstyleError(f"--style-scale takes NAME=FACTOR (e.g. starry_night=2), not {item!r}")
    return out


def _torchrun(nproc: int) -> int:
    """Run this same command under torchrun with ``nproc`` processes on this machine; its exit code."""
    args, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            args.append(a)
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # In this process rather than as `python -m torch.distributed.run`: its report of a failed rank is a page
    # of traceback; each rank has already said why in one line (rank 0 only, where all fail alike).
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default, without its warning (--threads sets more)
    try:
        run(parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "vidstyle", *args]))
    except ChildFailedError as e:
        # The first rank to fail ends the others (SIGTERM): its own exit code is the run's. Rank 0 has said
        # why unless it was stopped before it could: then say which process failed.
        codes = {rank: f.exitcode for rank, f in e.failures.items()}
        exited = sorted((r, c) for r, c in codes.items() if c and c > 0)
        if 0 not in codes or codes[0] < 0 and not exited:
            rank, code = exited[0] if exited else min(codes.items())
            typer.echo(f"error: training process {rank} of {nproc} failed (exit code {code})", err=True)
        code = exited[0][1] if exited else min(codes.values(), default=1)
        return 128 - code if code < 0 else code  # killed by a signal: as a shell reports it
    except (SignalException, KeyboardInterrupt):
        return 130
    return 0


def export_loss_net(
    output: Path = typer.Argument(..., help="Where to write the .safetensors file."),
    loss_net: str = typer.Option("auto", "--loss-net", help="auto, torchvision or hed."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
):
    """Write the loss network's conv1_1..conv4_3 as fp16 safetensors (about 15 MB), usable as --loss-net PATH."""
    require_torch("vidstyle export-loss-net", "train")
    from ..io.atomic import check_target
    from ..train.lossnet import export_safetensors, load_loss_net

    with user_errors():
        check_target(output, overwrite)
        if output.suffix != ".safetensors":
            raise VidstyleError(f"the output must end in .safetensors: {output}")
        export_safetensors(load_loss_net(loss_net), output)
        typer.echo(str(output))
