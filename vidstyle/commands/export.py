"""``vidstyle export``: the style network as ONNX or OpenVINO IR, for other tools."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .common import MixOpt, StyleSizeOpt, user_errors


def export(
    style: Optional[str] = typer.Argument(None, help="Style name, MODEL:STYLE or .safetensors path (default: the default style)."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write: FILE.onnx, FILE.xml (OpenVINO IR, with FILE.bin beside it), or FILE.safetensors (a vidstyle model, from a training checkpoint)."),
    format: Optional[str] = typer.Option(None, "--format", help="onnx or openvino (default: from the output's suffix)."),
    style_option: Optional[str] = typer.Option(None, "--style", "-s", help="The same as STYLE; also any picture "
                                               "(my_painting.jpg), whose style vector is then baked into the graph."),
    mix: Optional[str] = MixOpt,
    style_size: int = StyleSizeOpt,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file (with FILE.xml, "
                                   "FILE.bin too)."),
    temporal_strength: Optional[List[str]] = typer.Option(None, "--temporal-strength", help="With a .safetensors output: "
        "record STYLE=S (or S for every style), S from 0 to 1, as the style's default `--temporal-strength` in the "
        "model file. Repeat for several styles. The input may also be a model file: its weights are copied untouched."),
):
    """Write the style network as ONNX or OpenVINO IR, for OBS filters, mobile apps, C++ and other runtimes.

    Inputs: `image`, float32 (N, 3, H, W) RGB in [0, 1] (any N, H, W of at least 5); `mix`, float32 with one
    weight per style of the model (one-hot picks a style). Output: `stylized`, float32 (N, 3, H, W), to be
    clamped to [0, 1]. The style names, the architecture and the `mix` of the style exported (STYLE, or --mix;
    `vidstyle.mix`) are in the file's metadata.

    A training checkpoint (`vidstyle train`'s RUN_DIR/checkpoint.safetensors) exported to FILE.safetensors
    gives the model file the training would write at that step, while the training goes on.

    A model file exported to FILE.safetensors with --temporal-strength is a copy with those strengths recorded.

    With a picture as the style (--style my_painting.jpg, or --mix of pictures), the picture's style vector is
    baked into the graph: `image` is its only input.

    Examples: vidstyle export the_scream -o scream.onnx; vidstyle export --style my_painting.jpg -o mine.onnx;
    vidstyle export runs/six/checkpoint.safetensors -o six.safetensors;
    vidstyle export six.safetensors -o six.safetensors --overwrite --temporal-strength udnie=0.5
    """
    from ..api import load_model
    from ..errors import VidstyleError
    from ..export import export_model

    with user_errors():
        if style is not None and style_option is not None and style != style_option:
            raise VidstyleError(f"give the style once: {style} or --style {style_option}")
        style = style if style is not None else style_option
        if output.suffix.lower() == ".safetensors":
            from ..models.files import FORMAT, read_metadata, with_temporal_strengths

            if style is None or not Path(style).is_file():
                raise VidstyleError("a .safetensors output is a model made from a training checkpoint "
                                    "(vidstyle export RUN_DIR/checkpoint.safetensors -o MODEL.safetensors) "
                                    "or a model file with --temporal-strength")
            meta = read_metadata(style)
            strengths = _strengths(temporal_strength or [], json.loads(meta.get("styles") or "[]"))
            if meta.get("format") == FORMAT:
                if not strengths:
                    raise VidstyleError(f"{style} is already a model file; give --temporal-strength to record "
                                        "strengths in a copy, or -o FILE.onnx / FILE.xml to convert it")
                typer.echo(str(with_temporal_strengths(style, output, strengths, overwrite=overwrite)))
                return
            from ..extras import need_torch

            need_torch("a model from a training checkpoint", "train")
            from ..train.checkpoint import model_from_checkpoint

            typer.echo(str(model_from_checkpoint(style, output, overwrite=overwrite, temporal_strengths=strengths)))
            return
        if temporal_strength:
            raise VidstyleError("--temporal-strength is recorded in a .safetensors model; ONNX and OpenVINO files "
                                "hold only the network")
        written = export_model(load_model(style, mix=mix, style_size=style_size), output, format, overwrite=overwrite)
        typer.echo(str(written))


def _strengths(items: list[str], names: list[str]) -> dict[str, float]:
    """``--temporal-strength`` values (``STYLE=S`` or ``S`` for every style) -> {style: S}."""
    from ..errors import VidstyleError

    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        try:
            v = float(value)
        except ValueError:
            raise VidstyleError(f"--temporal-strength takes STYLE=S or S (e.g. udnie=0.5), not {item!r}") from None
        for n in ([name] if sep else names):
            out[n] = v  # names and ranges are checked where the file is written
    return out
