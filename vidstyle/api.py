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
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from .errors import IncompleteInput, VidstyleError
from .io.atomic import check_target
from .io.images import read_alpha, read_image, write_image
from .io.reader import VideoReader
from .io.writer import VideoWriter
from .models.style_file import is_style_file, style_header
from .models import files, picture_style, registry
from .naming import default_image_output, default_output
from .options import EncodeOptions, PaintOptions, ReadOptions, TemporalOptions, gather
from .painters import light, new_painter, pick_device
from .pipeline import run_stages

if TYPE_CHECKING:
    from .stylizer import Stylizer

log = logging.getLogger("vidstyle")


def load_model(style: str | Path | files.StyleModel | None = None, device: str = "cpu",
               mix: str | dict | None = None, *, style_size: int = picture_style.STYLE_SIZE, allow_protocols=()):
    """A StyleModel from a style name, ``MODEL:STYLE``, a path, or a picture (``my_painting.jpg``: any picture
    is a style, ``picture_style``); ``mix`` blends styles of one model, or pictures.

    A StyleModel given is used as it is (``mix``, when given, selected in it). ``model.label`` names what it
    paints; ``model.inner`` the style named by ``MODEL:STYLE`` (None otherwise). ``style_size``: the short side
    a picture is read at for its style vector; ``allow_protocols``: what a picture's URL may use."""
    if isinstance(mix, str):
        mix = registry.parse_mix(mix)
    elif mix is not None:
        mix = registry.check_mix(mix)
    pictures = picture_styles(style, mix)
    if pictures is not None:
        model = picture_style.picture_model(pictures, style_size=style_size, device=pick_device(device),
                                            allow_protocols=allow_protocols, light=light())
        model.inner = None
        return model
    if style is None and mix:  # a style file in the mix: its model holds the bundled styles too
        style = registry.style_file_in(mix)
    if isinstance(style, files.StyleModel):
        model, inner = style, getattr(style, "inner", None)
    else:
        path, inner = registry.resolve(style)
        model = files.load_model(path, device=pick_device(device), light=light())
        if inner is None and not mix and is_style_file(path):  # a style file is its one style
            inner = style_header(Path(path))[0]
    if inner is not None or mix is not None or not getattr(model, "label", None):
        model.label = model.select(inner, mix)
    model.inner = inner  # the style of a multi-style file that ``style`` named (MODEL:STYLE), or None
    return model


def picture_styles(style, mix: dict | None) -> dict[str, float] | None:
    """{picture: weight} when ``style`` or ``mix`` names pictures (``--style a.jpg``, ``--mix a.jpg:0.5,b.png:0.5``),
    None when they name none; a VidstyleError when a picture and a bundled style are mixed (two networks)."""
    if isinstance(style, files.StyleModel):
        return None
    if mix:
        kinds = {name: picture_style.is_picture(name) for name in mix}
        if any(kinds.values()) and not all(kinds.values()):
            raise VidstyleError(f"--mix cannot blend pictures ({', '.join(n for n, k in kinds.items() if k)}) with "
                                f"trained styles ({', '.join(n for n, k in kinds.items() if not k)}): they are painted "
                                "by two different networks; blend pictures with pictures, or styles of one model")
        if all(kinds.values()):
            if style is not None and not picture_style.is_picture(style):
                raise VidstyleError(f"--mix blends pictures, and --style {style} is a trained style: they are "
                                    "painted by two different networks; leave out --style")
            return dict(mix)
        if picture_style.is_picture(style):
            raise VidstyleError(f"--style {style} is a picture, and --mix names trained styles: they are painted "
                                "by two different networks")
        return None
    return {str(style): 1.0} if picture_style.is_picture(style) else None


def painting_model(style=None, mix: str | dict | None = None, device: str = "cpu", *,
                   style_size: int = picture_style.STYLE_SIZE, allow_protocols=()):
    """``load_model`` for painting: a multi-style file named without a style paints its own (``own_style``), or
    is a VidstyleError that lists its styles. It painted its first style before, under the file's name."""
    model = load_model(style, device=device, mix=mix, style_size=style_size, allow_protocols=allow_protocols)
    if model.inner is None and mix is None and len(model.styles) > 1 and not isinstance(style, files.StyleModel):
        own = model.own_style()
        if own is None:
            raise VidstyleError(f"{model.path} holds {len(model.styles)} styles ({', '.join(model.styles)}); name one "
                                f"as --style {model.path}:STYLE, or blend them with --mix")
        model.label, model.inner = model.select(own), own
    return model


def make_stylizer(style=None, *, paint: PaintOptions | None = None, realtime: bool = False, allow_protocols=(),
                  **options) -> Stylizer:
    """A Stylizer for a style name, ``MODEL:STYLE``, path or picture, with ``paint`` (a PaintOptions) or its
    fields as keyword arguments (``device``, ``max_side``, ``strength``, ...); ``allow_protocols``: what a
    picture's URL may use."""
    if style is not None:
        options["style"] = style
    paint = PaintOptions.split(options, paint)
    if options:
        raise TypeError(f"make_stylizer() got unexpected options: {', '.join(sorted(options))}")
    model = painting_model(paint.style, mix=paint.mix, style_size=paint.style_size, allow_protocols=allow_protocols)
    return new_painter(model, options=paint, realtime=realtime)


def _one_painter(stylizer, style, options) -> None:
    """``stylizer=`` paints with its own style: a ``style`` or ``mix`` given too would be ignored."""
    if stylizer is not None and (style is not None or options.get("mix") is not None):
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


def paint_stream(frames: Iterable, writer: VideoWriter, stylizer: Stylizer, *, stabilizer=None,
                 out_size: tuple[int, int] | None = None, batch_size: int = 1, start_pts: int | None = None,
                 progress: Callable[[int, int], None] | None = None, total: int = 0,
                 check: Callable[[int], None] | None = None) -> int:
    """The one paint loop, for whole videos and segment parts: ``frames`` (decoded ``Frame``s, in order) ->
    ``stylizer`` (-> ``stabilizer``) -> ``writer``, with decoding, painting and encoding overlapped
    (``pipeline.run_stages``); returns how many frames were painted but not written.

    ``out_size``: (w, h) the paintings are scaled to (None: the input's); ``batch_size``: frames per network
    call. ``start_pts``: frames before it are painted (the stabiliser's history) but not written.
    ``progress(frames written, total)``. ``check(n)`` may raise about the count written before the file is
    finished. The writer is closed at the end, or aborted (its partial file removed) on any error, Ctrl-C or
    signal.
    """
    def paint(batch):
        return stylizer.paint_batch([f.rgb for f in batch], stabilizer, out_size)

    skipped = 0
    try:
        for frame, rgb in run_stages(frames, paint, batch_size=batch_size):
            if start_pts is not None and frame.pts < start_pts:
                skipped += 1
                continue
            writer.write(rgb, frame.pts)
            if progress:
                progress(writer.frames_written, total)
        if check is not None:
            check(writer.frames_written)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return skipped


def stylize_video(src: str | Path, dst: str | Path | None = None, style: str | Path | None = None, *,
                  paint: PaintOptions | None = None, encode: EncodeOptions | None = None,
                  read: ReadOptions | None = None, temporal: TemporalOptions | bool | None = None,
                  batch_size: int | None = None, overwrite: bool = False,
                  progress: Callable[[int, int], None] | None = None, stylizer: Stylizer | None = None,
                  stabilizer=None, **options) -> RunResult:
    """Stylize a video file or URL; audio, subtitles, timestamps, rotation and metadata are kept.

    The options come as values (``paint``, ``encode``, ``read``, ``temporal``: see ``vidstyle.options``) or as
    their fields by name (``max_side=720``, ``crf=20``, ``deinterlace=False``, ``temporal=True``,
    ``temporal_strength=0.5`` ...). ``stylizer``: paint with this Stylizer (its own style and options, but
    ``out_size`` may be given); ``stabilizer``: a stabiliser object of the caller's instead of ``temporal``'s.
    ``progress(frames_done, frames_total)``. Raises VidstyleError for bad input, and IncompleteInput (after
    writing what could be decoded) when the input ends early.
    """
    src = str(src)
    _one_painter(stylizer, style, options)
    paint, encode, read, temporal = gather(options, style, paint=paint, encode=encode, read=read,
                                           temporal=temporal, caller="stylize_video")
    if stylizer is None:
        stylizer = make_stylizer(paint=paint, allow_protocols=read.allow_protocol)
        out_size = stylizer.out_size
    else:
        out_size = paint.out_size or stylizer.out_size
    stabilizer = stabilizer if stabilizer is not None else temporal.stabilizer()
    label = getattr(stylizer.model, "label", stylizer.name)
    dst = Path(dst) if dst is not None else default_output(src, label)
    check_target(dst, overwrite, src)
    t0 = time.perf_counter()
    with VideoReader(src, deinterlace=read.deinterlace, allow_protocols=read.allow_protocol) as reader:
        info = reader.info
        size = info.stored_size(out_size) if out_size else (info.width, info.height)
        writer = VideoWriter(dst, info, size=size, codec=encode.codec, crf=encode.crf, preset=encode.preset,
                             copy_streams=reader.other_streams, overwrite=overwrite, src=src, chroma=encode.chroma)

        def no_frames(n: int) -> None:
            if n == 0:
                raise VidstyleError(f"{src}: no video frame could be decoded")

        paint_stream(reader.frames(on_packet=writer.queue_packet), writer, stylizer, stabilizer=stabilizer,
                     out_size=size if out_size else None,
                     batch_size=batch_size or stylizer.auto_batch(info.height, info.width),
                     progress=progress, total=info.frames, check=no_frames)
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
                  paint: PaintOptions | None = None, overwrite: bool = False, stylizer: Stylizer | None = None,
                  max_pixels: int | None = None, **options) -> Path:
    """Stylize one still image; returns the path written (default ``default_image_output``).

    An existing ``dst`` is refused unless ``overwrite`` (as in ``stylize_video``). A picture's transparency
    is kept when ``dst`` is a PNG or WebP: only the colour is painted. A picture of more than ``max_pixels``
    (default ``io.images.MAX_PIXELS``, 100 megapixels) is refused before it is decoded.
    """
    _one_painter(stylizer, style, options)
    stylizer = stylizer or make_stylizer(style, paint=paint, **options)
    src = Path(src)
    rgb = read_image(src, max_pixels)
    label = getattr(stylizer.model, "label", stylizer.name)
    dst = Path(dst) if dst is not None else default_image_output(src, label)
    check_target(dst, overwrite, str(src))
    return write_image(dst, stylizer(rgb[None])[0], overwrite=overwrite, alpha=read_alpha(src, rgb.shape))
