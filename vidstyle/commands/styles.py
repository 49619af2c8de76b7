"""``vidstyle styles``: list the bundled and user styles."""
from __future__ import annotations

import json

import typer

from ..errors import VidstyleError
from .common import user_errors


def styles(json_out: bool = typer.Option(False, "--json", help="Print a JSON list.")):
    """List the bundled and user styles (user models live in $VIDSTYLE_MODELS or ~/.local/share/vidstyle/models)."""
    from ..models import files, registry

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
