"""``vidstyle image``: paint still pictures, files or folders, with the same options as ``run``."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import PAINT_OPTIONS, Progress, user_errors, with_options


@with_options(PAINT_OPTIONS, after="output_arg")
def image(
    inputs: List[Path] = typer.Argument(..., help="Images, or folders of images (searched recursively)."),
    output_arg: Optional[str] = typer.Option(None, "--output", "-o", help="Output file (one input) or folder "
                                             "(several, or DIR/); default <stem>.<style>.png beside each input."),
    optimize: bool = typer.Option(False, "--optimize", help="Gatys et al. optimisation (slow, highest quality) instead of a trained network."),
    steps: int = typer.Option(300, "--steps", min=1, help="L-BFGS steps for --optimize."),
    style_image: Optional[Path] = typer.Option(None, "--style-image", help="Style picture for --optimize "
                                               "(default: --style, when that is a picture)."),
    loss_net: str = typer.Option("auto", "--loss-net", help="For --optimize: auto, torchvision, hed or a .safetensors path."),
    max_pixels: int = typer.Option(100_000_000, "--max-pixels", min=1, help="The largest picture read, in pixels "
                                   "(checked from its header before it is decoded): 100 megapixels by default."),
    overwrite: bool = typer.Option(False, "--overwrite/--no-overwrite", help="Replace existing output images (else an existing one stops the run before anything is painted). Never an input."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors (not the paths written)."),
    **options,
):
    """Stylize still images (files or folders) with the same options as `run`.

    Example: vidstyle image photos/ -o painted/ --style the_scream
    """
    from ..options import PaintOptions
    from ..stills import find_stills, optimize_images, paint_images

    say = None if quiet else (lambda path: typer.echo(str(path), err=True))
    with user_errors():
        # inputs, -o and the pictures' sizes checked before any style is loaded
        stills = find_stills(inputs, output_arg, max_pixels=max_pixels)
        if optimize:
            from ..models.picture_style import is_picture

            if style_image is None and is_picture(options.get("style")):  # --style my_painting.jpg --optimize
                style_image = options["style"]
            optimize_images(stills, style_image, steps=steps, loss_net=loss_net, device=options["device"],
                            max_side=options["max_side"], overwrite=overwrite, on_written=say,
                            progress=lambda f: Progress(quiet, f"optimising {f.name}"))
        else:
            paint_images(stills, PaintOptions.pick(options), overwrite=overwrite, on_written=say)
