"""The ``vidstyle`` command: a thin typer layer over the library. No logic lives here."""
from __future__ import annotations

import contextlib
import json
import logging
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from .errors import IncompleteInput, VidstyleError

app = typer.Typer(
    help="Turn videos and webcam feeds into moving paintings.\n\n"
         "Start with `vidstyle styles` to see the styles, then `vidstyle run VIDEO`.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def _err(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)


@contextlib.contextmanager
def user_errors():
    """VidstyleError -> one line on stderr and exit 2; Ctrl-C -> exit 130. No tracebacks."""
    try:
        yield
    except IncompleteInput as e:
        typer.echo(f"warning: {e}", err=True)
        raise typer.Exit(3)
    except VidstyleError as e:
        _err(str(e))
        raise typer.Exit(2)
    except KeyboardInterrupt:
        _err("interrupted; nothing was written at the target")
        raise typer.Exit(130)


def parse_size(text: Optional[str]) -> Optional[tuple[int, int]]:
    if not text:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        assert w > 0 and h > 0
        return w, h
    except (ValueError, AssertionError):
        raise VidstyleError(f"--out-size wants WIDTHxHEIGHT, e.g. 1280x720, not {text!r}") from None


# Shared option declarations (typer reads the defaults as the option definitions).
StyleOpt = typer.Option(None, "--style", "-s", help="Style name (see `vidstyle styles`), MODEL:STYLE, or a "
                        ".safetensors path. Default: the bundled default style.")
MixOpt = typer.Option(None, "--mix", help="Blend the styles of a multi-style model, e.g. a:0.5,b:0.5.")
DeviceOpt = typer.Option(Device.auto, "--device", help="Where the network runs.")
MaxSideOpt = typer.Option(None, "--max-side", min=16, help="Stylize at this longer side (px), "
                          "then scale back: larger strokes and faster.")
StrengthOpt = typer.Option(1.0, "--strength", min=0.0, max=1.0, help="Blend with the original: 0 = input, 1 = full style.")
ColorOpt = typer.Option(False, "--preserve-color", help="Keep the input's colours; take only luminance from the style.")


class Progress:
    """A rich progress bar on stderr (frames, fps, ETA), or nothing when quiet."""

    def __init__(self, quiet: bool, label: str):
        self.bar = None
        if not quiet:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RP, TaskProgressColumn,
                                       TextColumn, TimeRemainingColumn)
            self.bar = RP(TextColumn(label), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                          TextColumn("{task.fields[fps]} fps"), TimeRemainingColumn(),
                          console=Console(stderr=True), transient=True)
            self.task = self.bar.add_task(label, total=None, fps="-")

    def __enter__(self):
        if self.bar:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar:
            self.bar.__exit__(*exc)

    def __call__(self, done: int, total: int) -> None:
        if self.bar:
            t = self.bar.tasks[0]
            fps = f"{done / t.elapsed:.1f}" if t.elapsed else "-"
            self.bar.update(self.task, completed=done, total=total or None, fps=fps)


@app.command()
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
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object with the results on stdout."),
):
    """Stylize a video, keeping its audio, timestamps, rotation and metadata.

    Example: vidstyle run holiday.mp4 --style udnie --max-side 720
    """
    from .api import stylize_video

    with user_errors():
        stab = None
        if temporal:
            from .temporal import Stabilizer
            stab = Stabilizer(strength=temporal_strength, flow=flow)
        with Progress(quiet or json_out, "painting") as bar:
            try:
                r = stylize_video(input, output, style, mix=mix, batch_size=batch_size, device=device.value,
                                  max_side=max_side, out_size=parse_size(out_size), strength=strength,
                                  preserve_color=preserve_color, codec=codec, crf=crf, preset=preset,
                                  overwrite=overwrite, stabilizer=stab, progress=bar)
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


@app.command()
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
    from .api import make_stylizer
    from .io.images import find_images, read_image, write_image

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
            from .train.gatys import optimize_image
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
        from .api import stylize_image
        for f in files:
            dst = (output / f"{f.stem}.{st.name}.png" if many and output else output)
            written = stylize_image(f, dst, stylizer=st, overwrite=overwrite)
            if not quiet:
                typer.echo(str(written), err=True)


@app.command()
def styles(json_out: bool = typer.Option(False, "--json", help="Print a JSON list.")):
    """List the bundled and user styles (user models live in $VIDSTYLE_MODELS or ~/.local/share/vidstyle/models)."""
    from .models import files, registry

    with user_errors():
        rows = []
        for e in registry.list_styles():
            try:
                meta = files.read_metadata(e.path)
                arch = json.loads(meta.get("arch", "{}")).get("arch", "?")
                inner = json.loads(meta.get("styles", "[]"))
            except (VidstyleError, ValueError):
                arch, inner = "unreadable", []
            rows.append({"name": e.name, "source": e.source, "arch": arch, "styles": inner, "path": str(e.path),
                         "default": e.name == registry.DEFAULT_STYLE})
        if json_out:
            typer.echo(json.dumps(rows))
            return
        if not rows:
            typer.echo(f"no styles found; bundled: {registry.BUNDLED_DIR}, user: {registry.user_dir()}")
        for r in rows:
            extra = f"  [{', '.join(r['styles'])}]" if len(r["styles"]) > 1 else ""
            typer.echo(f"{r['name']:<28} {r['source']:<8} {r['arch']:<12}{' (default)' if r['default'] else ''}{extra}")
        typer.echo(f"\nuser models folder: {registry.user_dir()}")


def _register_optional() -> None:
    """Commands whose modules live in their own layers."""
    for mod in ("train.cli", "evaluate", "live.cli", "bench"):
        try:
            __import__(f"{__package__}.{mod}")
        except ModuleNotFoundError as e:
            if not e.name or not e.name.startswith(__package__):
                raise


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    app()


_register_optional()


if __name__ == "__main__":
    main()
