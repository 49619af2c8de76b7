"""The ``vidstyle`` command line: a thin typer layer over the library, one module per command.

Every command is registered here, explicitly and once; no library module imports this package.
"""
from __future__ import annotations

import logging

import typer

from . import bench, evaluate, export, image, live, paint, styles, train

app = typer.Typer(
    help="Turn videos and webcam feeds into moving paintings.\n\n"
         "Start with `vidstyle styles` to see the styles, then `vidstyle run VIDEO`.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    # Click's plain help: it wraps at any width (rich's tables cut option names and examples at 80 columns)
    rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]},
)


app.command("run")(paint.run)
app.command("image")(image.image)
app.command("styles")(styles.styles)
app.command("train")(train.train)
app.command("export-loss-net")(train.export_loss_net)
app.command("eval")(evaluate.eval_cmd)
app.command("live")(live.live)
app.command("bench")(bench.bench)
app.command("export")(export.export)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    app()
