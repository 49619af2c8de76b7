"""The Python API: what the command line calls, usable on its own.

    import vidstyle
    vidstyle.stylize_video("in.mp4", "out.mp4", style="starry_night")
    vidstyle.stylize_image("photo.jpg", "painted.png", style="udnie")
    model = vidstyle.load_model("starry_night")
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from glob import escape as glob_escape
from pathlib import Path
from typing import Callable

from .batch import Source, output_name, safe_label
from .errors import IncompleteInput, VidstyleError
from .io.images import is_image, read_alpha, read_image, write_image
from .io.reader import VideoReader, is_url, local_path
from .io.writer import VideoWriter, check_target
from .models import files, registry
from .pipeline import run_stages
from .stylizer import Stylizer, check_size, pick_device

log = logging.getLogger("vidstyle")


def load_model(style: str | Path | files.StyleModel | None = None, device: str = "cpu",
               mix: str | dict | None = None):
    """A StyleModel from a style name, ``MODEL:STYLE``, or a path; ``mix`` blends styles of one model.

    A StyleModel given is used as it is (``mix``, when given, selected in it)."""
    if isinstance(style, files.StyleModel):
        model, inner = style, None
    else:
        path, inner = registry.resolve(style)
        model = files.load_model(path, device=pick_device(device))
    if isinstance(mix, str):
        mix = registry.parse_mix(mix)
    elif mix is not None:
        mix = registry.check_mix(mix)
    if inner is not None or mix is not None or not getattr(model, "label", None):
        model.label = model.select(inner, mix)
    return model


def make_stylizer(style=None, *, mix=None, device="auto", max_side=None, out_size=None, strength=1.0,
                  preserve_color=False, engine="auto", precision="auto", brush=1.0) -> Stylizer:
    """A Stylizer for a style name, ``MODEL:STYLE`` or path (see ``Stylizer`` for the options)."""
    model = load_model(style, mix=mix)
    return Stylizer(model, device, max_side=max_side, out_size=out_size, strength=strength,
                    preserve_color=preserve_color, engine=engine, precision=precision, brush=brush)


def _one_painter(stylizer, style, mix) -> None:
    """``stylizer=`` paints with its own style: a ``style`` or ``mix`` given too would be ignored."""
    if stylizer is not None and (style is not None or mix is not None):
        raise VidstyleError("give style= (and mix=) or stylizer=, not both: a Stylizer paints its own style")


@dataclass
class RunResult:
    output: str
    frames: int
    seconds: float
    fps: float
    style: str
    device: str
    width: int
    height: int
    complete: bool = True
    notes: list[str] = field(default_factory=list)
    temporal_strength: float | None = None  # the stabiliser's strength, with --temporal

    def to_dict(self) -> dict:
        return asdict(self)


def default_output(src: str, style_label: str) -> Path:
    """``<input stem>.<style>.mp4`` (``batch.output_name``, the batch's names) beside a local input, or in the
    current folder for a URL."""
    folder = Path.cwd() if is_url(src) else Path(local_path(src)).parent
    return folder / output_name(Source(src), style_label)


def painted_images(files: list[Path], labels: set[str] = frozenset()) -> set[Path]:
    """Those of ``files`` that an earlier ``vidstyle image`` wrote beside their photo: ``<stem>.<style>.png``
    where ``<stem>.*`` is an image of the same folder and ``<style>`` a style's name as written in file
    names (a known style, ``gatys``, a blend, or one of ``labels``). Folders are searched again on a second
    run: these are outputs, not photos."""
    labels = {"gatys", *labels}
    for e in registry.list_styles():
        labels |= {safe_label(e.name), *map(safe_label, e.styles)}  # an inner style is one of its model's styles
    out = set()
    for f in files:
        base, _, label = f.stem.rpartition(".")
        if f.suffix.lower() != ".png" or not base or not (label in labels or "+" in label):
            continue
        if any(g != f and g.stem == base and is_image(g) for g in f.parent.glob(f"{glob_escape(base)}.*")):
            out.add(f)
    return out


def default_image_output(src: str | Path, style_label: str) -> Path:
    """``<stem>.<style>.png`` beside the picture ``src``, the style written as in video names (``batch.safe_label``)."""
    src = Path(src)
    return src.with_name(f"{src.stem}.{safe_label(style_label)}.png")


def stylize_video(src: str | Path, dst: str | Path | None = None, style: str | Path | None = None, *,
                  mix: str | dict | None = None, batch_size: int | None = None, device: str = "auto",
                  max_side: int | None = None, out_size: tuple[int, int] | None = None, strength: float = 1.0,
                  preserve_color: bool = False, engine: str = "auto", precision: str = "auto", brush: float = 1.0,
                  codec: str | None = None, crf: int | None = None,
                  preset: str | None = None, overwrite: bool = False, stabilizer=None, chroma: str = "420",
                  deinterlace: bool = True, allow_protocols: tuple[str, ...] | list[str] = (),
                  progress: Callable[[int, int], None] | None = None, stylizer: Stylizer | None = None
                  ) -> RunResult:
    """Stylize a video file or URL; audio, subtitles, timestamps, rotation and metadata are kept.

    Raises VidstyleError for bad input, and IncompleteInput (after writing what could be
    decoded) when the input ends early.
    """
    src = str(src)
    _one_painter(stylizer, style, mix)
    out_size = check_size(out_size) or (stylizer.out_size if stylizer is not None else None)
    if isinstance(allow_protocols, str):
        allow_protocols = [allow_protocols]
    stylizer = stylizer or make_stylizer(style, mix=mix, device=device, max_side=max_side, out_size=out_size,
                                         strength=strength, preserve_color=preserve_color, engine=engine,
                                         precision=precision, brush=brush)
    label = getattr(stylizer.model, "label", stylizer.name)
    dst = Path(dst) if dst is not None else default_output(src, label)
    check_target(dst, overwrite, src)
    t0 = time.perf_counter()
    with VideoReader(src, deinterlace=deinterlace, allow_protocols=allow_protocols) as reader:
        info = reader.info
        size = info.stored_size(out_size) if out_size else (info.width, info.height)
        writer = VideoWriter(dst, info, size=size, codec=codec, crf=crf, preset=preset,
                             copy_streams=reader.other_streams, overwrite=overwrite, src=src, chroma=chroma)
        bs = batch_size or stylizer.auto_batch(info.height, info.width)

        def paint(batch):
            return stylizer.paint_batch([f.rgb for f in batch], stabilizer, size if out_size else None)

        try:
            frames = reader.frames(on_packet=writer.queue_packet)
            for frame, rgb in run_stages(frames, paint, batch_size=bs):
                writer.write(rgb, frame.pts)
                if progress:
                    progress(writer.frames_written, info.frames)
            if writer.frames_written == 0:
                raise VidstyleError(f"{src}: no video frame could be decoded")
            writer.close()
        except BaseException:
            writer.abort()
            raise
    seconds = time.perf_counter() - t0
    n = writer.frames_written
    result = RunResult(str(dst), n, round(seconds, 3), round(n / seconds, 3) if seconds else 0.0, label,
                       str(stylizer.device), writer.size[0], writer.size[1], reader.incomplete is None,
                       writer.notes, getattr(stabilizer, "weight", None))
    if reader.incomplete:
        err = IncompleteInput(f"{src} is incomplete: {reader.incomplete}; wrote the {n} decodable frames to {dst}")
        err.result = result
        raise err
    return result


def stylize_image(src: str | Path, dst: str | Path | None = None, style: str | Path | None = None, *,
                  overwrite: bool = False, stylizer: Stylizer | None = None, **options) -> Path:
    """Stylize one still image; returns the path written (default ``default_image_output``).

    An existing ``dst`` is refused unless ``overwrite`` (as in ``stylize_video``). A picture's transparency
    is kept when ``dst`` is a PNG or WebP: only the colour is painted.
    """
    _one_painter(stylizer, style, options.get("mix"))
    stylizer = stylizer or make_stylizer(style, **options)
    src = Path(src)
    rgb = read_image(src)
    label = getattr(stylizer.model, "label", stylizer.name)
    dst = Path(dst) if dst is not None else default_image_output(src, label)
    check_target(dst, overwrite, str(src))
    return write_image(dst, stylizer(rgb[None])[0], overwrite=overwrite, alpha=read_alpha(src, rgb.shape))
