"""``vidstyle run`` and ``vidstyle image``: paint videos and stills."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import IncompleteInput, VidstyleError
from .common import (TemporalStrengthOpt, BrushOpt, ColorOpt, Device, DeviceOpt, EngineOpt, Engine, MaxSideOpt, MixOpt, Precision,
                     PrecisionOpt, Progress, StrengthOpt, StyleOpt, parse_size, user_errors)


def run(
    inputs: List[str] = typer.Argument(..., help="Video files or URLs (anything FFmpeg reads), folders (searched recursively for videos) or globs."),
    output_arg: Optional[str] = typer.Option(None, "--output", "-o", help="Output file for one input (default <input stem>.<style>.mp4 beside it); a folder (DIR/, or one that exists) for one or several, where vidstyle-manifest.json records each one and a second run resumes. The videos that manifest records as outputs are never taken as inputs, so -o may be the input folder."),
    style: Optional[str] = StyleOpt,
    mix: Optional[str] = MixOpt,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Frames per network call (default: auto)."),
    device: Device = DeviceOpt,
    max_side: Optional[int] = MaxSideOpt,
    brush: float = BrushOpt,
    engine: Engine = EngineOpt,
    precision: Precision = PrecisionOpt,
    out_size: Optional[str] = typer.Option(None, "--out-size", help="Write at WIDTHxHEIGHT instead of the input size."),
    strength: float = StrengthOpt,
    preserve_color: bool = ColorOpt,
    codec: Optional[str] = typer.Option(None, "--codec", help="libx264 (default), hevc, vp9 (default for .webm), h264_nvenc."),
    crf: Optional[int] = typer.Option(None, "--crf", min=0, max=63, help="Quality: lower is better (x264/x265 default 18, vp9 32)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Encoder preset (x264/x265: ultrafast..veryslow, default veryfast, which leaves the CPU to the painter; medium gives smaller files)."),
    temporal: bool = typer.Option(False, "--temporal/--no-temporal", help="Flow-guided stabilisation against flicker."),
    temporal_strength: Optional[float] = TemporalStrengthOpt,
    flow: str = typer.Option("auto", "--flow", help="Optical flow for --temporal: dis, raft or auto."),
    chroma: str = typer.Option("420", "--chroma", help="Chroma subsampling: 420 plays everywhere (odd sizes are padded by one pixel); 444 keeps full colour detail and exact odd sizes (not every player)."),
    deinterlace: bool = typer.Option(True, "--deinterlace/--no-deinterlace", help="Deinterlace interlaced input (FFmpeg's bwdif) before painting."),
    allow_protocol: Optional[List[str]] = typer.Option(None, "--allow-protocol", help="Also allow this FFmpeg input protocol (repeatable), e.g. --allow-protocol concat --allow-protocol file (concat reads its parts through file). By default only files and http(s), hls, rtmp(s), rtsp, srt, udp are read."),
    cluster: str = typer.Option("auto", "--cluster", help="Where the videos are painted: local (this process), ray (RAY_ADDRESS, or a Ray started here), ray://HOST:PORT, or auto: Ray when RAY_ADDRESS is set or this machine has several GPUs. Ray: pip install 'vidstyle\\[cluster]'."),
    segments: int = typer.Option(1, "--segments", min=1, help="Cut one long video into N parts (at keyframes; with --temporal at the calmest moment near each even split), paint them in parallel, join them by stream copy."),
    overlap: int = typer.Option(30, "--overlap", min=0, help="With --segments and --temporal: frames painted before each seam and thrown away, so the stabiliser has its history there."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object with the results on stdout."),
):
    """Stylize videos, keeping their audio, timestamps, rotation and metadata.

    One input is painted in this process (or in --segments parts). Several inputs, folders and globs make
    a batch into the -o folder: one bad file is reported and the batch goes on (exit code 1 if any
    failed), and running the same command again paints only what is not done yet.

    Examples: vidstyle run holiday.mp4 --style udnie --max-side 720;
    vidstyle run clips/ '*.mov' -o painted/ --cluster ray://head:10001
    """
    from ..api import stylize_video

    with user_errors():
        video_options = dict(chroma=chroma, deinterlace=deinterlace, allow_protocols=tuple(allow_protocol or ()))
        output = Path(output_arg) if output_arg else None
        one = len(inputs) == 1 and not _is_many(inputs[0]) and not _names_folder(output_arg)
        if not one or segments > 1:
            from ..batch import StylizeJob, choose_executor

            job = StylizeJob(style, mix=mix, device=device.value, max_side=max_side, out_size=parse_size(out_size),
                             strength=strength, preserve_color=preserve_color, batch_size=batch_size, codec=codec,
                             crf=crf, preset=preset, temporal=temporal, temporal_strength=temporal_strength,
                             flow=flow, video_options=video_options, engine=engine.value,
                             precision=precision.value, brush=brush)
            executor = choose_executor(cluster)
            if not one:
                if segments > 1:
                    if len(inputs) == 1 and not _is_many(inputs[0]):
                        raise VidstyleError(f"--segments writes one video: -o must name a file, not the folder {output}")
                    raise VidstyleError("--segments splits one video; give one input")
                if output is None:
                    raise VidstyleError("several inputs need an output folder: -o DIR")
                if output.suffix and not output.is_dir():
                    what = "a directory needs" if len(inputs) == 1 and Path(inputs[0]).is_dir() else "several inputs need"
                    raise VidstyleError(f"{what} an output folder (-o DIR), not the file name {output}")
                _run_batch(inputs, output, job, executor, overwrite, quiet, json_out)
                return
            from ..segments import stylize_segments
            with Progress(quiet or json_out, "painting") as bar:
                r = stylize_segments(inputs[0], output, job, segments=segments, overlap=overlap, executor=executor,
                                     overwrite=overwrite, progress=bar)
            _report(r, quiet, json_out)
            return
        from ..batch import choose_executor

        if choose_executor(cluster, gpus=0) != "local" and not quiet:  # checked; one video is painted here
            typer.echo("note: one video without --segments is painted in this process; --cluster spreads "
                       "batches and --segments parts", err=True)
        input = inputs[0]
        stab = None
        if temporal:
            from ..temporal import Stabilizer
            stab = Stabilizer(strength=temporal_strength, flow=flow)
        with Progress(quiet or json_out, "painting") as bar:
            try:
                r = stylize_video(input, output, style, mix=mix, batch_size=batch_size, device=device.value,
                                  max_side=max_side, out_size=parse_size(out_size), strength=strength,
                                  engine=engine.value, precision=precision.value, brush=brush,
                                  preserve_color=preserve_color, codec=codec, crf=crf, preset=preset,
                                  overwrite=overwrite, stabilizer=stab, progress=bar, **video_options)
            except IncompleteInput as e:
                _report(e.result, quiet, json_out)
                raise
        _report(r, quiet, json_out)


def _is_many(spec: str) -> bool:
    """A folder or a glob (not an existing file, not a URL: ``is_url``; ``file:`` names a local path)."""
    from ..io.reader import is_url, local_path

    if is_url(spec):
        return False
    path = Path(local_path(spec))
    if path.is_file():
        return False
    return path.is_dir() or any(c in spec for c in "*?[")


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


def _names_folder(output_arg: str | None) -> bool:
    """Whether ``-o`` names a folder: one that exists, or a name ending in a separator (``-o painted/``, made
    if need be; ``Path`` would drop the separator)."""
    return bool(output_arg) and (Path(output_arg).is_dir() or output_arg.endswith(("/", os.sep)))


def _report(r, quiet: bool, json_out: bool) -> None:
    for note in r.notes:
        if not quiet:
            typer.echo(f"note: {note}", err=True)
    if json_out:
        typer.echo(json.dumps(r.to_dict()))
    elif not quiet:
        typer.echo(f"{r.output}: {r.frames} frames in {r.seconds:.1f} s ({r.fps:.1f} fps), "
                   f"style {r.style} on {r.device}", err=True)


def image(
    inputs: List[Path] = typer.Argument(..., help="Images, or folders of images (searched recursively)."),
    output_arg: Optional[str] = typer.Option(None, "--output", "-o", help="Output file (one input) or folder "
                                             "(several, or DIR/); default <stem>.<style>.png beside each input."),
    style: Optional[str] = StyleOpt,
    mix: Optional[str] = MixOpt,
    device: Device = DeviceOpt,
    max_side: Optional[int] = MaxSideOpt,
    brush: float = BrushOpt,
    engine: Engine = EngineOpt,
    precision: Precision = PrecisionOpt,
    strength: float = StrengthOpt,
    preserve_color: bool = ColorOpt,
    optimize: bool = typer.Option(False, "--optimize", help="Gatys et al. optimisation (slow, highest quality) instead of a trained network."),
    steps: int = typer.Option(300, "--steps", min=1, help="L-BFGS steps for --optimize."),
    style_image: Optional[Path] = typer.Option(None, "--style-image", help="Style picture for --optimize."),
    loss_net: str = typer.Option("auto", "--loss-net", help="For --optimize: auto, torchvision, hed or a .safetensors path."),
    overwrite: bool = typer.Option(False, "--overwrite/--no-overwrite", help="Replace existing output images (else an existing one stops the run before anything is painted). Never an input."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Stylize still images (files or folders) with the same options as `run`.

    Example: vidstyle image photos/ -o painted/ --style the_scream
    """
    from ..api import default_image_output, make_stylizer, painted_images
    from ..io.images import check_image_suffix, find_images, read_alpha, read_image, write_image

    with user_errors():
        output = Path(output_arg) if output_arg else None
        files: list[Path] = []
        searched: list[Path] = []  # the pictures found in folders (not named by the user)
        rel: dict[Path, Path] = {}  # where each output goes under -o: a folder's layout is kept
        for p in inputs:
            if p.is_dir():
                found = find_images(p)
                # a second run: what an earlier run wrote in an -o inside the folder is output, not photos
                found = [f for f in found if not (output is not None and output.resolve() in f.resolve().parents)]
                if not found:
                    raise VidstyleError(f"no images in folder {p}")
                files += found
                searched += found
                rel.update({f: f.relative_to(p) for f in found})
            elif not p.exists():
                raise VidstyleError(f"input not found: {p}")
            else:
                files.append(p)
                rel[p] = Path(p.name)
        # -o is a folder for several inputs or a folder of them, and when it names one
        many = len(files) > 1 or any(p.is_dir() for p in inputs) or _names_folder(output_arg)
        if output is not None and not many:
            check_image_suffix(output)  # before painting
        if many and output is not None:
            if output.exists() and not output.is_dir() or not output.exists() and output.suffix:
                raise VidstyleError(f"with several inputs or a folder, --output must be a folder: {output}")
            output.mkdir(parents=True, exist_ok=True)

        def target(f: Path, tag: str) -> Path | None:
            if many and output is not None:
                return output / rel[f].parent / default_image_output(f, tag).name
            return output

        def check_unique(tag: str) -> None:
            """Before anything is painted: no two inputs write one file, and no existing file is replaced
            without --overwrite (--optimize takes minutes a picture: it must not fail at the end). What an
            earlier run wrote beside the photos of a folder is left out of the inputs first."""
            earlier = painted_images(searched, {tag})
            files[:] = [f for f in files if f not in earlier]
            if not files:
                raise VidstyleError(f"no images to paint: the folders hold only pictures painted before ({tag})")
            seen: dict[Path, Path] = {}
            for f in files:
                dst = target(f, tag) or default_image_output(f, tag)
                if dst in seen:
                    raise VidstyleError(f"{seen[dst]} and {f} would both be written to {dst}; rename one, give "
                                        "their folders (when they are in two) or paint them separately")
                seen[dst] = f
            existing = [d for d in seen if d.exists()]
            inputs = {(st.st_dev, st.st_ino) for st in (g.stat() for g in files)}
            for dst in existing:  # by file identity: another name or a link of an input counts
                st = dst.stat()
                if (st.st_dev, st.st_ino) in inputs:
                    raise VidstyleError(f"the output would overwrite the input: {dst}")
            if existing and not overwrite:
                more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
                raise VidstyleError(f"{existing[0]} exists{more}; pass --overwrite to replace it")

        if optimize:
            from ..train.gatys import optimize_image
            if style_image is None:
                raise VidstyleError("--optimize needs --style-image PICTURE")
            check_unique("gatys")
            for f in files:
                dst = target(f, "gatys") or default_image_output(f, "gatys")
                dst.parent.mkdir(parents=True, exist_ok=True)
                with Progress(quiet, f"optimising {f.name}") as bar:
                    rgb = read_image(f)
                    out = optimize_image(rgb, read_image(style_image), steps=steps, loss_net=loss_net,
                                         device=device.value, max_side=max_side or 512, progress=bar)
                write_image(dst, out, overwrite=overwrite, alpha=read_alpha(f, rgb.shape, size=out.shape))
                if not quiet:
                    typer.echo(str(dst), err=True)
            return
        st = make_stylizer(style, mix=mix, device=device.value, max_side=max_side, strength=strength,
                           engine=engine.value, precision=precision.value, brush=brush,
                           preserve_color=preserve_color)
        from ..api import stylize_image
        from ..batch import safe_label
        tag = safe_label(getattr(st.model, "label", st.name))
        check_unique(tag)
        for f in files:
            dst = target(f, tag)
            if dst is not None:
                dst.parent.mkdir(parents=True, exist_ok=True)
            written = stylize_image(f, dst, stylizer=st, overwrite=overwrite)
            if not quiet:
                typer.echo(str(written), err=True)


