"""``vidstyle styles``: list the bundled and user styles, one row per style."""
from __future__ import annotations

import json

import typer

from .common import user_errors


def styles(json_out: bool = typer.Option(False, "--json", help="Print a JSON list.")):
    """List the styles, one per row, each style of a multi-style model too.

    User models live in $VIDSTYLE_MODELS, or in the user data folder (see the footer). `temporal` is the
    strength `--temporal` stabilises the style with when no --temporal-strength is given. Any picture is a
    style too (--style my_painting.jpg): it is not listed here.
    """
    from ..models import registry
    from ..models.metadata import DEFAULT_STRENGTH

    with user_errors():
        rows = [{"name": e.name, "source": e.source, "arch": e.arch, "model": e.model, "style": e.inner,
                 "styles": e.styles, "path": str(e.path), "default": e.name == registry.DEFAULT_STYLE, "base": e.base,
                 "temporal_strength": DEFAULT_STRENGTH if e.temporal_strength is None else e.temporal_strength}
                for e in registry.list_styles()]
        if json_out:
            typer.echo(json.dumps(rows))
            return
        if not rows:
            typer.echo(f"no styles found; bundled: {registry.BUNDLED_DIR}, user: {registry.user_dir()}")
        width = max([28] + [len(r["name"]) + 1 for r in rows])
        if rows:
            typer.echo(f"{'style':<{width}} {'source':<8} {'arch':<12} {'temporal':<8} model file")
        for r in rows:
            typer.echo(f"{r['name']:<{width}} {r['source']:<8} {r['arch']:<12} {r['temporal_strength']:<8g} "
                       f"{r['model']}.safetensors"
                       f"{' (default)' if r['default'] else ''}"
                       f"{' (your style, for the ' + r['base'] + ' network)' if r['base'] else ''}")
        typer.echo(f"\nuser models folder: {registry.user_dir()}")
        typer.echo("any picture is a style too, with no training: --style my_painting.jpg (jpg, png, webp, bmp, "
                   "tiff, gif),\n--mix a.jpg:0.5,b.jpg:0.5 to blend pictures, --style-size PX for the stroke scale "
                   "(default 256)")
