"""``vidstyle bench``: stage and end-to-end speed (numbers for docs/PERFORMANCE.md; not a test)."""
from __future__ import annotations

import json
from typing import Optional

import typer

from ..errors import VidstyleError
from ..options import parse_size
from .common import PAINT_OPTIONS, user_errors, with_options


@with_options(PAINT_OPTIONS, after="size")
def bench(
    size: str = typer.Option("640x360", "--size", help="Resolution WIDTHxHEIGHT of the synthetic clip "
                             "(H.264 4:2:0: even numbers, at least 16x16)."),
    frames: int = typer.Option(60, "--frames", min=4, help="Frames of the synthetic clip (and measured)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Frames per network call "
                                             "(default: 1 on the CPU, sized to the resolution on a GPU)."),
    codec: Optional[str] = typer.Option(None, "--codec", help="Encoder for the encode and end-to-end figures "
                                        "(default libx264)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Encoder preset (x264 default veryfast)."),
    live: bool = typer.Option(False, "--live", help="Benchmark live mode instead (file source, no window): "
                              "fps and capture-to-output latency."),
    source_fps: int = typer.Option(60, "--source-fps", min=1, help="With --live: the rate the source delivers "
                                   "frames at, like a camera."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of the table."),
    **options,
):
    """Measure decode, model, encode and end-to-end frames per second (not a test: numbers for docs/PERFORMANCE.md)."""
    from ..options import EncodeOptions, PaintOptions

    with user_errors():
        wh = parse_size(size, "--size")
        if not wh or wh[0] % 2 or wh[1] % 2 or min(wh) < 16:
            raise VidstyleError(f"--size wants an even width and height of at least 16 (the synthetic clip is "
                                f"H.264 4:2:0), e.g. 640x360, not {size!r}")
        paint = PaintOptions.pick(options)
        if live:
            from ..live.loop import bench_live
            res = bench_live(wh, frames, paint, source_fps)
        else:
            from ..bench import bench_pipeline
            res = bench_pipeline(wh, frames, paint, EncodeOptions(codec=codec, preset=preset), batch_size)
        if json_out:
            typer.echo(json.dumps(res))
        else:
            for k, v in res.items():
                typer.echo(f"{k:<32} {v}")
