"""``vidstyle eval``: flicker and style figures of a stylization (metrics in :mod:`vidstyle.evaluate`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import VidstyleError
from .common import PAINT_OPTIONS, TEMPORAL_OPTIONS, Progress, require_torch, user_errors, with_options


@with_options(PAINT_OPTIONS, TEMPORAL_OPTIONS, after="input", skip=("style", "max_side"))
def eval_cmd(
    input: Path = typer.Argument(..., help="A video file or a folder of frames."),
    style: Optional[List[str]] = typer.Option(None, "--style", "-s", help="Style name or model file; repeat to compare models."),
    max_side: Optional[int] = typer.Option(None, "--max-side", min=16, help="Read the frames at this longer side (px); they are painted as `run` would paint frames of that size."),
    compare: bool = typer.Option(False, "--compare", help="Rows for per-frame and --temporal of every --style, side by side."),
    long_k: int = typer.Option(5, "--long-k", min=1, help="Frame distance of the long-term warping error (not "
                               "measured, and null in --json, when there are k frames or fewer)."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=2, help="Measure the first N frames only "
                                             "(the loss network is slow on a CPU)."),
    flo_dir: Optional[Path] = typer.Option(None, "--flo-dir", help="Ground-truth flows (backward_T_S.flo) instead of DIS."),
    style_image: Optional[Path] = typer.Option(None, "--style-image", help="Style picture for the style loss (default: the one stored in the model)."),
    loss_net: str = typer.Option("auto", "--loss-net", help="The network of the style and content losses: auto, "
                                 "torchvision, hed or a .safetensors path."),
    plot_path: Optional[Path] = typer.Option(None, "--plot", help="Draw the per-frame warping error of each row (needs matplotlib)."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object (a list with --compare) on stdout."),
    **options,
):
    """Measure flicker (warping error) and style/content losses of a stylization.

    Example: vidstyle eval frames/ --style starry_night --compare
    """
    require_torch("vidstyle eval")
    from ..evaluate import FlowBank, check_flo_dir, check_plot_path, evaluate_styles, load_frames, plot
    from ..options import PaintOptions, TemporalOptions
    from ..stylizer import pick_device

    with user_errors():
        params = {**locals(), **options}
        # --style names several models here, and --max-side is the size the frames are read at
        paint = PaintOptions.pick({**params, "style": None, "max_side": None})
        stab = TemporalOptions.pick(params)
        if not input.exists():
            raise VidstyleError(f"input not found: {input}")
        if flo_dir is not None:
            check_flo_dir(flo_dir)
        if plot_path:
            check_plot_path(plot_path)  # matplotlib missing, or a bad name: say so now, not after the evaluation
        if stab.temporal or compare:
            stab.replace(temporal=True).stabilizer().estimator(pick_device(paint.device))  # RAFT not cached
        frames = load_frames(input, max_frames, max_side)
        if len(frames) <= long_k:
            more = " or raise --max-frames" if max_frames and max_frames <= long_k else ""
            typer.echo(f"note: the k={long_k} warping error is not measured: {len(frames)} frames, it needs more "
                       f"than {long_k} (lower --long-k{more})", err=True)
        with Progress(json_out, "measuring") as bar:  # painting, then the flow and loss figures of each row
            rows = evaluate_styles(frames, style or [None], paint, stab, compare=compare,
                                   bank=FlowBank(frames, flo_dir), long_k=long_k, loss_net=loss_net,
                                   style_image=style_image, progress=bar)
        if json_out:
            data = [r.to_dict() for r in rows]
            typer.echo(json.dumps(data if compare or len(data) > 1 else data[0]))
        else:
            _print_table(rows, long_k)
        if plot_path:  # after the figures: a failing plot does not lose them
            plot(rows, plot_path)


def _print_table(rows: list, long_k: int) -> None:
    head = f"{'setting':<32} {'frames':>6} {'warp err':>10} {'warp err k=' + str(long_k):>13} {'style':>10} {'content':>9} {'s/frame':>8}"
    typer.echo(head)
    for r in rows:
        sl = f"{r.style_loss:.3e}" if r.style_loss is not None else "-"
        wl = f"{r.warp_error_long:.5f}" if r.warp_error_long is not None else "not measured"
        typer.echo(f"{r.label:<32} {r.frames:>6} {r.warp_error:>10.5f} {wl:>13} {sl:>10} "
                   f"{r.content_loss:>9.4f} {r.seconds_per_frame:>8.3f}")
