"""``vidstyle bench``: stage and end-to-end speed (numbers for docs/PERFORMANCE.md; not a test)."""
from __future__ import annotations

import json
from typing import Optional

import typer

from ..errors import VidstyleError
from ..options import parse_size
from .common import BrushOpt, Device, Engine, EngineOpt, MaxSideOpt, Precision, PrecisionOpt, user_errors


def bench(
    size: str = typer.Option("640x360", "--size", help="Resolution WIDTHxHEIGHT of the synthetic clip "
                             "(H.264 4:2:0: even numbers, at least 16x16)."),
    frames: int = typer.Option(60, "--frames", min=4),
    style: Optional[str] = typer.Option(None, "--style", "-s"),
    device: Device = typer.Option(Device.auto, "--device"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1),
    codec: Optional[str] = typer.Option(None, "--codec"),
    preset: Optional[str] = typer.Option(None, "--preset"),
    max_side: Optional[int] = MaxSideOpt,
    brush: float = BrushOpt,
    engine: Engine = EngineOpt,
    precision: Precision = PrecisionOpt,
    live: bool = typer.Option(False, "--live", help="Benchmark live mode instead (file source, no window): "
                              "fps and capture-to-output latency."),
    source_fps: int = typer.Option(60, "--source-fps", min=1, help="With --live: the rate the source delivers "
                                   "frames at, like a camera."),
    json_out: bool = typer.Option(False, "--json"),
):
    """Measure decode, model, encode and end-to-end frames per second (not a test: numbers for docs/PERFORMANCE.md)."""
    with user_errors():
        wh = parse_size(size, "--size")
        if not wh or wh[0] % 2 or wh[1] % 2 or min(wh) < 16:
            raise VidstyleError(f"--size wants an even width and height of at least 16 (the synthetic clip is "
                                f"H.264 4:2:0), e.g. 640x360, not {size!r}")
        if live:
            from ..live.loop import bench_live
            res = bench_live(wh, frames, style, device.value, max_side, source_fps, engine=engine.value,
                             precision=precision.value, brush=brush)
        else:
            from ..bench import bench_pipeline
            from ..options import EncodeOptions, PaintOptions
            params = locals()
            res = bench_pipeline(wh, frames, PaintOptions.pick(params), EncodeOptions.pick(params), batch_size)
        if json_out:
            typer.echo(json.dumps(res))
        else:
            for k, v in res.items():
                typer.echo(f"{k:<32} {v}")
