"""What every command shares: the typer app, error handling, option declarations, the progress bar."""
from __future__ import annotations

import contextlib
import inspect
from enum import Enum
from typing import Optional

import typer

from ..errors import BatchInterrupted, IncompleteInput, Terminated, VidstyleError, overwrite_switch


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def _err(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)


@contextlib.contextmanager
def user_errors(quiet: bool = False):
    """VidstyleError -> one line on stderr and exit 2; Ctrl-C -> exit 130. No tracebacks. Error lines name the
    command line's --overwrite (the library's say overwrite=True).

    ``quiet``: the exit codes only (a training rank other than 0, whose error rank 0 prints)."""
    say = (lambda msg: None) if quiet else _err
    switch = overwrite_switch.set("--overwrite")
    try:
        yield
    except IncompleteInput as e:
        if not quiet:
            typer.echo(f"warning: {e}", err=True)
        raise typer.Exit(3)
    except VidstyleError as e:
        say(str(e))
        raise typer.Exit(2)
    except BatchInterrupted as e:  # its message says which videos are done
        say(str(e))
        raise typer.Exit(e.exit_code)
    except Terminated as e:
        say(f"{e}; nothing was written at the target")
        raise typer.Exit(e.exit_code)
    except KeyboardInterrupt:
        say("interrupted; nothing was written at the target")
        raise typer.Exit(130)
    finally:
        overwrite_switch.reset(switch)


# Shared option declarations (typer reads the defaults as the option definitions).
StyleOpt = typer.Option(None, "--style", "-s", help="Style name (see `vidstyle styles`), MODEL:STYLE, a "
                        ".safetensors path, or any picture (my_painting.jpg: jpg, png, webp, bmp, tiff, gif) to paint "
                        "in its style, with no training. Default: the bundled default style.")
MixOpt = typer.Option(None, "--mix", help="Blend the styles of a multi-style model, e.g. udnie:0.7,the_scream:0.3 (or "
                      "udnie=0.7,...), or pictures, e.g. a.jpg:0.5,b.png:0.5 (a picture and a trained style cannot blend).")
StyleSizeOpt = typer.Option(256, "--style-size", metavar="PX", help="With a picture as the style: the short side, in "
                            "pixels, the picture is read at (64 to 2048; 256 is what the network learnt at). Smaller "
                            "gives blockier strokes; larger gives paler colours and finer strokes.")
DeviceOpt = typer.Option(Device.auto, "--device", help="Where the network runs.")
class Engine(str, Enum):
    auto = "auto"
    torch = "torch"
    openvino = "openvino"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
    int8 = "int8"


EngineOpt = typer.Option(Engine.auto, "--engine", help="What runs the network: auto = OpenVINO on the CPU (built "
                         "from the weights in the plain install, converted from PyTorch with vidstyle[torch]), "
                         "PyTorch on CUDA; torch needs vidstyle[torch]; openvino runs on the CPU only.")
PrecisionOpt = typer.Option(Precision.auto, "--precision", help="Network precision: auto = fp16 on CUDA, bf16 on "
                            "CPUs with native bf16 (AVX-512 BF16, AMX), else fp32; in live mode int8 on x86 CPUs with "
                            "AVX2 when NNCF is installed (vidstyle[torch]). int8 (CPU, OpenVINO): the network quantized once "
                            "with NNCF, about 1.5x bf16's (1.65x fp32's) speed, the finest strokes a little softer.")
BrushOpt = typer.Option(1.0, "--brush", min=0.05, help="Brush size: 1 paints strokes as large, relative to the "
                        "picture, as the model learnt them, whatever the resolution (the frame is painted at the "
                        "model's scale and scaled back); 2 = strokes twice as large, 0.5 = half. --max-side overrides it.")
MaxSideOpt = typer.Option(None, "--max-side", min=16, help="Stylize at this longer side (px), "
                          "then scale back: larger strokes and faster.")
StrengthOpt = typer.Option(1.0, "--strength", min=0.0, max=1.0, help="Blend with the original: 0 = input, 1 = full style.")
TemporalStrengthOpt = typer.Option(None, "--temporal-strength", min=0.0, max=1.0, help="With --temporal: how much of "
                                   "the warped previous output to keep where it is visible (0 to 1). Default: the "
                                   "style's own, recorded in its model file (0.7 when it has none); fine, strong "
                                   "brushwork gets less, as blending softens strokes that move.")
ColorOpt = typer.Option(False, "--preserve-color", help="Keep the input's colours; take only luminance from the style.")


TemporalOpt = typer.Option(False, "--temporal/--no-temporal", help="Flow-guided stabilisation against flicker (in "
                           "live mode the t key toggles it; eval measures with it).")
FlowOpt = typer.Option("auto", "--flow", help="Optical flow for --temporal: dis, raft or auto.")

# The options of ``vidstyle.options`` that several commands take, declared once: ``with_options`` adds them to a
# command (``PaintOptions.pick(options)`` then builds the value). Name -> (type, declaration).
PAINT_OPTIONS = {
    "style": (Optional[str], StyleOpt),
    "mix": (Optional[str], MixOpt),
    "style_size": (int, StyleSizeOpt),
    "device": (Device, DeviceOpt),
    "max_side": (Optional[int], MaxSideOpt),
    "brush": (float, BrushOpt),
    "engine": (Engine, EngineOpt),
    "precision": (Precision, PrecisionOpt),
    "strength": (float, StrengthOpt),
    "preserve_color": (bool, ColorOpt),
}
TEMPORAL_OPTIONS = {
    "temporal": (bool, TemporalOpt),
    "temporal_strength": (Optional[float], TemporalStrengthOpt),
    "flow": (str, FlowOpt),
}


def require_torch(what: str, extra: str = "torch") -> None:
    """Stop with one line (exit code 2) when ``what`` needs PyTorch and this install has none (the light install)."""
    from ..extras import need_torch

    with user_errors():
        need_torch(what, extra)


def with_options(*groups: dict, after: str, skip: tuple[str, ...] = ()):
    """Add the options of ``groups`` (``PAINT_OPTIONS``, ...) to a command, after its parameter ``after``.

    The command takes them in its ``**options`` (typer reads the signature this sets); ``skip`` names those
    it declares itself, or does not take.
    """
    def add(fn):
        sig = inspect.signature(fn, eval_str=True)
        params = list(sig.parameters.values())
        if not params or params[-1].kind is not inspect.Parameter.VAR_KEYWORD:
            raise TypeError(f"{fn.__name__} must take **options to get the shared options")
        own = params[:-1]
        extra = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=decl, annotation=kind)
                 for group in groups for name, (kind, decl) in group.items() if name not in skip and name not in sig.parameters]
        at = [p.name for p in own].index(after) + 1
        fn.__signature__ = sig.replace(parameters=own[:at] + extra + own[at:])
        return fn

    return add


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
            self.task = self.bar.add_task(label, total=None, fps="-", start=False)  # timed from the first frame
        self.shown = False
        self.first = 0  # frames done when the bar appeared: the rate counts the ones after

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.shown:
            self.bar.__exit__(*exc)

    def __call__(self, done: int, total: int) -> None:
        if self.bar:
            if not self.shown:      # shown from the first frame on: an input that fails earlier leaves no trace
                self.bar.__enter__()
                self.bar.start_task(self.task)
                self.shown, self.first = True, done
            t = self.bar.tasks[0]
            fps = f"{(done - self.first) / t.elapsed:.1f}" if t.elapsed and done > self.first else "-"
            self.bar.update(self.task, completed=done, total=total or None, fps=fps)
