"""``vidstyle run`` and ``vidstyle image``: paint videos and stills."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import IncompleteInput, VidstyleError
from .common import (ColorOpt, Device, DeviceOpt, MaxSideOpt, MixOpt, Progress, StrengthOpt, StyleOpt, parse_size,
                     user_errors)


def run(
    input: str = typer.Argument(..., help="Video file or URL (anything FFmpeg reads)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output file; default <input stem>.<style>.mp4 beside the input."),
    style: Optional[str] = StyleOpt,
    mix: Optional[str] = MixOpt,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Frames per network call (default: auto)."),
    device: Device = DeviceOpt,
    max_side: Optional[int] = MaxSideOpt,
    out_size: Optional[str] = typer.Option(None, "--out-size", help="Write at WIDTHxHEIGHT instead of the input size."),
    strength: float = StrengthOpt,
    preserve_color: bool = ColorOpt,
    codec: Optional[str] = typer.Option(None, "--codec", help="libx264 (default), hevc, vp9 (default for .webm), h264_nvenc."),
    crf: Optional[int] = typer.Option(None, "--crf", min=0, max=63, help="Quality: lower is better (x264/x265 default 18, vp9 32)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Encoder preset (x264/x265: ultrafast..veryslow, default medium)."),
    temporal: bool = typer.Option(False, "--temporal/--no-temporal", help="Flow-guided stabilisation against flicker."),
    temporal_strength: float = typer.Option(0.7, "--temporal-strength", min=0.0, max=1.0, help="How much of the warped previous output to keep where it is visible."),
    flow: str = typer.Option("auto", "--flow", help="Optical flow for --temporal: dis, raft or auto."),
    chroma: str = typer.Option("420", "--chroma", help="Chroma subsampling: 420 plays everywhere (odd sizes are padded by one pixel); 444 keeps full colour detail and exact odd sizes (not every player)."),
    deinterlace: bool = typer.Option(True, "--deinterlace/--no-deinterlace", help="Deinterlace interlaced input (FFmpeg's bwdif) before painting."),
    allow_protocol: Optional[List[str]] = typer.Option(None, "--allow-protocol", help="Also allow this FFmpeg input protocol (repeatable), e.g. --allow-protocol concat. By default only files and http(s), hls, rtmp(s), rtsp, srt, udp are read."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object with the results on stdout."),
):
    """Stylize a video, keeping its audio, timestamps, rotation and metadata.

    Example: vidstyle run holiday.mp4 --style udnie --max-side 720
    """
    from ..api import stylize_video

    with user_errors():
        stab = None
        if temporal:
            from ..temporal import Stabilizer
            stab = Stabilizer(strength=temporal_strength, flow=flow)
        with Progress(quiet or json_out, "painting") as bar:
            try:
                r = stylize_video(input, output, style, mix=mix, batch_size=batch_size, device=device.value,
                                  max_side=max_side, out_size=parse_size(out_size), strength=strength,
                                  preserve_color=preserve_color, codec=codec, crf=crf, preset=preset,
                                  overwrite=overwrite, stabilizer=stab, progress=bar, chroma=chroma,
                                  deinterlace=deinterlace, allow_protocols=allow_protocol or ())
            except IncompleteInput as e:
                _report(e.result, quiet, json_out)
                raise
        _report(r, quiet, json_out)


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
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output file (one input) or folder (several); "
                                          "default <stem>.<style>.png beside each input."),
    style: Optional[str] = StyleOpt,
    mix: Optional[str] = MixOpt,
    device: Device = DeviceOpt,
    max_side: Optional[int] = MaxSideOpt,
    strength: float = StrengthOpt,
    preserve_color: bool = ColorOpt,
    optimize: bool = typer.Option(False, "--optimize", help="Gatys et al. optimisation (slow, highest quality) instead of a trained network."),
    steps: int = typer.Option(300, "--steps", min=1, help="L-BFGS steps for --optimize."),
    style_image: Optional[Path] = typer.Option(None, "--style-image", help="Style picture for --optimize."),
    loss_net: str = typer.Option("auto", "--loss-net", help="For --optimize: auto, torchvision, hed or a .safetensors path."),
    overwrite: bool = typer.Option(True, "--overwrite/--no-overwrite", help="Replace existing output images."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Stylize still images (files or folders) with the same options as `run`.

    Example: vidstyle image photos/ -o painted/ --style the_scream
    """
    from ..api import make_stylizer
    from ..io.images import find_images, read_image, write_image

    with user_errors():
        files: list[Path] = []
        for p in inputs:
            if p.is_dir():
                found = find_images(p)
                if not found:
                    raise VidstyleError(f"no images in folder {p}")
                files += found
            elif not p.exists():
                raise VidstyleError(f"input not found: {p}")
            else:
                files.append(p)
        many = len(files) > 1 or any(p.is_dir() for p in inputs)
        if many and output is not None:
            if output.exists() and not output.is_dir():
                raise VidstyleError(f"with several inputs --output must be a folder: {output}")
            output.mkdir(parents=True, exist_ok=True)
        if optimize:
            from ..train.gatys import optimize_image
            if style_image is None:
                raise VidstyleError("--optimize needs --style-image PICTURE")
            for f in files:
                dst = (output / f"{f.stem}.png" if many and output else output) or f.with_name(f"{f.stem}.gatys.png")
                with Progress(quiet, f"optimising {f.name}") as bar:
                    out = optimize_image(read_image(f), read_image(style_image), steps=steps, loss_net=loss_net,
                                         device=device.value, max_side=max_side or 512, progress=bar)
                write_image(dst, out, overwrite=overwrite)
                if not quiet:
                    typer.echo(str(dst), err=True)
            return
        st = make_stylizer(style, mix=mix, device=device.value, max_side=max_side, strength=strength,
                           preserve_color=preserve_color)
        from ..api import stylize_image
        for f in files:
            dst = (output / f"{f.stem}.{st.name}.png" if many and output else output)
            written = stylize_image(f, dst, stylizer=st, overwrite=overwrite)
            if not quiet:
                typer.echo(str(written), err=True)


