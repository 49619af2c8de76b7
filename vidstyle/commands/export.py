"""``vidstyle export``: the style network as ONNX or OpenVINO IR, for other tools."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import MixOpt, user_errors


def export(
    style: Optional[str] = typer.Argument(None, help="Style name, MODEL:STYLE or .safetensors path (default: the default style)."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write: FILE.onnx, FILE.xml (OpenVINO IR, with FILE.bin beside it), or FILE.safetensors (a vidstyle model, from a training checkpoint)."),
    format: Optional[str] = typer.Option(None, "--format", help="onnx or openvino (default: from the output's suffix)."),
    mix: Optional[str] = MixOpt,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing .safetensors model."),
):
    """Write the style network as ONNX or OpenVINO IR, for OBS filters, mobile apps, C++ and other runtimes.

    Inputs: `image`, float32 (N, 3, H, W) RGB in [0, 1] (any N, H, W of at least 5); `mix`, float32 with one
    weight per style of the model (one-hot picks a style). Output: `stylized`, float32 (N, 3, H, W), to be
    clamped to [0, 1]. The style names and the architecture are in the file's metadata.

    A training checkpoint (`vidstyle train`'s RUN_DIR/checkpoint.safetensors) exported to FILE.safetensors
    gives the model file the training would write at that step, while the training goes on.

    Examples: vidstyle export the_scream -o scream.onnx;
    vidstyle export runs/six/checkpoint.safetensors -o six.safetensors
    """
    from ..api import load_model
    from ..errors import VidstyleError
    from ..export import export_model

    with user_errors():
        if output.suffix.lower() == ".safetensors":
            from ..train.loop import model_from_checkpoint

            if style is None or not Path(style).is_file():
                raise VidstyleError("a .safetensors output is a model made from a training checkpoint: "
                                    "vidstyle export RUN_DIR/checkpoint.safetensors -o MODEL.safetensors")
            typer.echo(str(model_from_checkpoint(style, output, overwrite=overwrite)))
            return
        written = export_model(load_model(style, mix=mix), output, format)
        typer.echo(str(written))
