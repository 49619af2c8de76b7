"""``vidstyle run``: paint videos (one, one in parallel segments, or a batch into a folder)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import IncompleteInput
from .common import PAINT_OPTIONS, TEMPORAL_OPTIONS, Progress, user_errors, with_options


@with_options(PAINT_OPTIONS, TEMPORAL_OPTIONS, after="output_arg")
def run(
    inputs: List[str] = typer.Argument(..., help="Video files or URLs (anything FFmpeg reads), folders (searched recursively for videos) or globs."),
    output_arg: Optional[str] = typer.Option(None, "--output", "-o", help="Output file for one input (default <input stem>.<style>.mp4 beside it); a folder (DIR/, or one that exists) for one or several, where vidstyle-manifest.json records each one and a second run resumes. The videos that manifest records as outputs are never taken as inputs, so -o may be the input folder."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Frames per network call (default: auto)."),
    out_size: Optional[str] = typer.Option(None, "--out-size", help="Write at WIDTHxHEIGHT instead of the input size."),
    codec: Optional[str] = typer.Option(None, "--codec", help="libx264 (default), hevc, vp9 (default for .webm), h264_nvenc."),
    crf: Optional[int] = typer.Option(None, "--crf", min=0, max=63, help="Quality: lower is better (x264/x265 default 18, vp9 32)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Encoder preset (x264/x265: ultrafast..veryslow, default veryfast, which leaves the CPU to the painter; medium gives smaller files)."),
    chroma: str = typer.Option("420", "--chroma", help="Chroma subsampling: 420 plays everywhere (odd sizes are padded by one pixel); 444 keeps full colour detail and exact odd sizes (not every player)."),
    deinterlace: bool = typer.Option(True, "--deinterlace/--no-deinterlace", help="Deinterlace interlaced input (FFmpeg's bwdif) before painting."),
    allow_protocol: Optional[List[str]] = typer.Option(None, "--allow-protocol", help="Also allow this FFmpeg input protocol (repeatable), e.g. --allow-protocol concat --allow-protocol file (concat reads its parts through file). By default only files and http(s), hls, rtmp(s), rtsp, srt, udp are read."),
    cluster: str = typer.Option("auto", "--cluster", help="Where the videos are painted: local (this process), ray (RAY_ADDRESS, or a Ray started here), ray://HOST:PORT, or auto: Ray when RAY_ADDRESS is set or this machine has several GPUs. Ray: pip install 'vidstyle\\[cluster]'."),
    segments: int = typer.Option(1, "--segments", min=1, help="Cut one long video into N parts (at keyframes; with --temporal at the calmest moment near each even split), paint them in parallel, join them by stream copy."),
    overlap: int = typer.Option(30, "--overlap", min=0, help="With --segments and --temporal: frames painted before each seam and thrown away, so the stabiliser has its history there."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object with the results on stdout."),
    **options,
):
    """Stylize videos, keeping their audio, timestamps, rotation and metadata.

    One input is painted in this process (or in --segments parts). Several inputs, folders and globs make
    a batch into the -o folder: one bad file is reported and the batch goes on (exit code 1 if any
    failed), and running the same command again paints only what is not done yet.

    Examples: vidstyle run holiday.mp4 --style udnie --max-side 720;
    vidstyle run clips/ '*.mov' -o painted/ --cluster ray://head:10001
    """
    from ..api import stylize_video
    from ..executors import choose_executor
    from ..naming import run_kind
    from ..options import EncodeOptions, PaintOptions, ReadOptions, TemporalOptions, parse_size

    with user_errors():
        params = {**locals(), **options, "out_size": parse_size(out_size)}
        paint, encode = PaintOptions.pick(params), EncodeOptions.pick(params)
        read, stab = ReadOptions.pick(params), TemporalOptions.pick(params)
        kind = run_kind(inputs, output_arg, segments)
        output = Path(output_arg) if output_arg else None
        if kind == "one":
            if choose_executor(cluster, gpus=0) != "local" and not quiet:  # checked; one video is painted here
                typer.echo("note: one video without --segments is painted in this process; --cluster spreads "
                           "batches and --segments parts", err=True)
            with Progress(quiet or json_out, "painting") as bar:
                try:
                    r = stylize_video(inputs[0], output, paint=paint, encode=encode, read=read, temporal=stab,
                                      batch_size=batch_size, overwrite=overwrite, progress=bar)
                except IncompleteInput as e:
                    _report(e.result, quiet, json_out)
                    raise
            _report(r, quiet, json_out)
            return
        from ..batch import StylizeJob

        job = StylizeJob(paint=paint, encode=encode, read=read, temporal=stab, batch_size=batch_size)
        executor = choose_executor(cluster)
        if kind == "batch":
            _run_batch(inputs, output, job, executor, overwrite, quiet, json_out)
            return
        from ..segments import stylize_segments
        with Progress(quiet or json_out, "painting") as bar:
            r = stylize_segments(inputs[0], output, job, segments=segments, overlap=overlap, executor=executor,
                                 overwrite=overwrite, progress=bar)
        _report(r, quiet, json_out)


def _run_batch(inputs, out_dir: Path, job, executor: str, overwrite: bool, quiet: bool, json_out: bool) -> None:
    """Paint a batch with a files + frames progress bar; errors one line each; exit 1 if any failed."""
    from ..batch import run_batch

    bar = None
    if not (quiet or json_out):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as RP, TextColumn, TimeRemainingColumn
        bar = RP(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                 console=Console(stderr=True), transient=True)
        files = bar.add_task("files", total=None)
        frames = bar.add_task("frames", total=None)

    def progress(p):
        if bar is None:
            return
        bar.update(files, completed=p.files_done + p.files_failed + p.files_skipped, total=p.files_total)
        bar.update(frames, completed=p.frames_done, total=p.frames_total or None)
        if p.event == "failed" and p.error:
            bar.console.print(f"error: {p.input}: {p.error}")

    if bar:
        bar.start()
    try:
        result = run_batch(inputs, out_dir, job, executor=executor, overwrite=overwrite, progress=progress)
    finally:
        if bar:
            bar.stop()
    if bar is None:  # with a bar they were printed as they came
        for i, e in result.failed:
            typer.echo(f"error: {i}: {e}", err=True)
    if result.ignored and not quiet:
        n = len(result.ignored)
        typer.echo(f"note: {n} video{'s' if n > 1 else ''} in {out_dir} not taken as input{'s' if n > 1 else ''}: "
                   f"{'outputs' if n > 1 else 'an output'} of earlier runs there (see {result.manifest.name})", err=True)
    if json_out:
        typer.echo(json.dumps(result.to_dict()))
    elif not quiet:
        typer.echo(f"{out_dir}: {result.done} painted, {result.skipped} already done, {len(result.failed)} failed; "
                   f"{result.frames} frames in {result.seconds:.1f} s (manifest {result.manifest.name})", err=True)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _report(r, quiet: bool, json_out: bool) -> None:
    for note in r.notes:
        if not quiet:
            typer.echo(f"note: {note}", err=True)
    if json_out:
        typer.echo(json.dumps(r.to_dict()))
    elif not quiet:
        typer.echo(f"{r.output}: {r.frames} frames in {r.seconds:.1f} s ({r.fps:.1f} fps), "
                   f"style {r.style} on {r.device}", err=True)
