"""``vidstyle bench``: stage and end-to-end speed (numbers for docs/PERFORMANCE.md; not a test)."""
from __future__ import annotations

import json
from typing import Optional

import typer

from ..bench import bench_pipeline
from .common import BrushOpt, Device, Engine, EngineOpt, Precision, PrecisionOpt, parse_size, user_errors


def bench(
    size: str = typer.Option("640x360", "--size", help="Resolution WIDTHxHEIGHT of the synthetic clip."),
    frames: int = typer.Option(60, "--frames", min=4),
    style: Optional[str] = typer.Option(None, "--style", "-s"),
    device: Device = typer.Option(Device.auto, "--device"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1),
    codec: Optional[str] = typer.Option(None, "--codec"),
    preset: Optional[str] = typer.Option(None, "--preset"),
    max_side: Optional[int] = typer.Option(None, "--max-side"),
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
        wh = parse_size(size)
        if live:
            from ..live.loop import bench_live
            res = bench_live(wh, frames, style, device.value, max_side, source_fps, engine=engine.value,
                             precision=precision.value, brush=brush)
        else:
            res = bench_pipeline(wh, frames, style, device.value, batch_size, codec, preset, max_side,
                                 engine=engine.value, precision=precision.value, brush=brush)
        if json_out:
            typer.echo(json.dumps(res))
        else:
            for k, v in res.items():
                typer.echo(f"{k:<32} {v}")
