"""Still pictures by the file and the folder: what ``vidstyle image`` does, as a library.

    found = find_stills(["photos/", "cat.jpg"], "painted/")   # inputs and -o checked, no style loaded yet
    written = paint_images(found, PaintOptions(style="udnie"))  # [Path("painted/a.udnie.png"), ...]
    written = optimize_images(found, "starry.jpg", steps=300)   # Gatys et al., <stem>.gatys.png

Three steps, each usable on its own:

* ``find_stills``: the pictures named and those found in folders (recursively), and where their outputs go:
  ``<stem>.<style>.png`` beside each picture, or under an output folder keeping each searched folder's layout,
  or one output file for one picture. What an earlier run wrote into an output folder inside a searched
  folder is not an input.
* ``plan_images``: once the style's label is known, each picture's output, checked before anything is
  painted: pictures an earlier run painted beside their photos are left out, no two pictures write one file,
  no output is an input (by file identity: links count), and none exists unless ``overwrite``.
* ``paint_images`` (a trained network) and ``optimize_images`` (the slow optimisation): plan, then paint and
  write each picture (atomically; transparency kept in PNG and WebP).

Every problem a user can fix is a ``VidstyleError`` with a one-line message.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager, Iterable, Mapping, Union

from .errors import VidstyleError, overwrite_switch
from .io.images import check_image_suffix, check_pixels, find_images, read_alpha, read_image, write_image
from .naming import default_image_output, names_folder, painted_images, safe_label
from .options import PaintOptions

GATYS = "gatys"  # the style label of ``optimize_images``' outputs: ``<stem>.gatys.png``

Paths = Union[str, os.PathLike, Iterable[Union[str, os.PathLike]]]  # a picture or folder, or several


@dataclass(frozen=True)
class Stills:
    """The pictures of one ``vidstyle image`` run and where their outputs go (``find_stills``).

    ``files``: every picture, in order; ``searched``: those found in folders (not named by the user);
    ``layout``: each picture's path under an output folder (a searched folder's layout is kept); ``output``:
    the ``-o`` file or folder (None: beside each picture); ``many``: ``output`` is a folder.
    """

    files: tuple[Path, ...]
    searched: frozenset[Path] = frozenset()
    layout: Mapping[Path, Path] = field(default_factory=dict)
    output: Path | None = None
    many: bool = False
    max_pixels: int | None = None  # the largest picture decoded (None: ``io.images.MAX_PIXELS``)

    def target(self, picture: Path, label: str) -> Path:
        """Where ``picture`` painted in the style ``label`` is written."""
        if self.output is None:
            return default_image_output(picture, label)
        if self.many:
            return self.output / self.layout[picture].parent / default_image_output(picture, label).name
        return self.output


def find_stills(inputs: Paths, output: str | os.PathLike | None = None, *, max_pixels: int | None = None) -> Stills:
    """Pictures and folders of pictures (searched recursively) -> a ``Stills``, checked before any style loads.

    ``output``: None (``<stem>.<style>.png`` beside each picture), an output file for one picture, or a folder
    (several pictures, a folder among the inputs, or a name that ``names_folder``: a ``str`` ending in ``/``
    or an existing folder); that folder is made here. An output file's suffix must be one OpenCV writes.

    Every picture's size is read from its header: one over ``max_pixels`` (default ``io.images.MAX_PIXELS``)
    is refused here, before a style loads or a pixel is decoded.

    Raises VidstyleError: ``input not found: P``, ``no images in folder P``, ``cannot write .X images; ...``,
    ``with several inputs or a folder, --output must be a folder: O``, ``P is WxH (N megapixels), over the
    limit ...``.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = [Path(p) for p in inputs]
    out = Path(output) if output is not None and output != "" else None
    files: list[Path] = []
    searched: list[Path] = []  # the pictures found in folders (not named by the user)
    layout: dict[Path, Path] = {}  # where each output goes under an output folder: a folder's layout is kept
    for p in inputs:
        if p.is_dir():
            found = find_images(p)
            # a second run: what an earlier run wrote in an output folder inside this one is output, not photos
            found = [f for f in found if not (out is not None and out.resolve() in f.resolve().parents)]
            if not found:
                raise VidstyleError(f"no images in folder {p}")
            files += found
            searched += found
            layout.update({f: f.relative_to(p) for f in found})
        elif not p.exists():
            raise VidstyleError(f"input not found: {p}")
        else:
            files.append(p)
            layout[p] = Path(p.name)
    many = len(files) > 1 or any(p.is_dir() for p in inputs) or names_folder(output)
    if out is not None and not many:
        check_image_suffix(out)  # before painting
    if many and out is not None:
        if out.exists() and not out.is_dir() or not out.exists() and out.suffix:
            raise VidstyleError(f"with several inputs or a folder, --output must be a folder: {out}")
        out.mkdir(parents=True, exist_ok=True)
    for f in files:
        check_pixels(f, max_pixels=max_pixels)
    return Stills(tuple(files), frozenset(searched), layout, out, many, max_pixels)


def plan_images(stills: Stills, label: str, *, overwrite: bool = False) -> list[tuple[Path, Path]]:
    """``stills`` painted in the style ``label`` -> [(picture, output)], checked before anything is painted
    (``--optimize`` takes minutes a picture: it must not fail at the end).

    Pictures of searched folders that an earlier run painted beside their photo (``naming.painted_images``)
    are left out. Raises VidstyleError: ``no images to paint: ...`` (only such pictures), ``A and B would both
    be written to O; ...``, ``the output would overwrite the input: O`` (by file identity, even with
    ``overwrite``), ``O exists (and N more); pass --overwrite to replace it``.
    """
    tag = safe_label(label)
    earlier = painted_images(sorted(stills.searched), {tag})
    files = [f for f in stills.files if f not in earlier]
    if not files:
        raise VidstyleError(f"no images to paint: the folders hold only pictures painted before ({tag})")
    seen: dict[Path, Path] = {}  # output -> picture
    for f in files:
        dst = stills.target(f, tag)
        if dst in seen:
            raise VidstyleError(f"{seen[dst]} and {f} would both be written to {dst}; rename one, give "
                                "their folders (when they are in two) or paint them separately")
        seen[dst] = f
    existing = [d for d in seen if d.exists()]
    inputs = {(st.st_dev, st.st_ino) for st in (g.stat() for g in files)}
    for dst in existing:  # by file identity: another name or a link of an input counts
        st = dst.stat()
        if (st.st_dev, st.st_ino) in inputs:
            raise VidstyleError(f"the output would overwrite the input: {dst}")
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise VidstyleError(f"{existing[0]} exists{more}; pass {overwrite_switch.get()} to replace it")
    return [(f, dst) for dst, f in seen.items()]


def _stills(inputs: Stills | Paths, output) -> Stills:
    if isinstance(inputs, Stills):
        if output is not None:
            raise TypeError("output= goes with paths; a Stills has its own (find_stills(inputs, output))")
        return inputs
    return find_stills(inputs, output)


def paint_images(inputs: Stills | Paths, paint: PaintOptions | None = None, *, output: str | os.PathLike | None = None,
                 overwrite: bool = False, stylizer=None,
                 on_written: Callable[[Path], None] | None = None) -> list[Path]:
    """Paint pictures with a trained network; returns the paths written, in order.

    ``inputs``: a ``Stills`` (``find_stills``), or pictures and folders found with ``output`` (see
    ``find_stills``). ``paint``: the style and how it is painted (None: the defaults), or ``stylizer``: an
    ``api.make_stylizer`` Stylizer to paint with instead. The style is loaded, then every output planned and
    checked (``plan_images``), then each picture painted and written; ``on_written(path)`` after each.
    """
    from .api import make_stylizer, stylize_image

    stills = _stills(inputs, output)
    if stylizer is None:
        stylizer = make_stylizer(paint=paint)
    elif paint is not None:
        raise TypeError("give paint= or stylizer=, not both: a Stylizer paints with its own options")
    plan = plan_images(stills, getattr(stylizer.model, "label", stylizer.name), overwrite=overwrite)
    written = []
    for src, dst in plan:
        dst.parent.mkdir(parents=True, exist_ok=True)
        written.append(stylize_image(src, dst, stylizer=stylizer, overwrite=overwrite, max_pixels=stills.max_pixels))
        if on_written is not None:
            on_written(written[-1])
    return written


def optimize_images(inputs: Stills | Paths, style_image: str | os.PathLike | None, *,
                    output: str | os.PathLike | None = None, steps: int = 300, loss_net: str = "auto",
                    device: str = "auto", max_side: int | None = None, overwrite: bool = False,
                    progress: Callable[[Path], ContextManager[Callable[[int, int], None] | None]] | None = None,
                    on_written: Callable[[Path], None] | None = None) -> list[Path]:
    """Paint pictures by the optimisation of Gatys et al. (slow, highest quality) in the style of the picture
    ``style_image``; returns the paths written (``<stem>.gatys.png`` by default), in order.

    ``inputs``/``output``: as in ``paint_images``. ``steps``: L-BFGS steps; ``loss_net``: auto, torchvision,
    hed or a .safetensors path; ``device``: auto, cpu or cuda[:N]; ``max_side``: the painting's longer side
    (default 512). Every output is planned and checked first (``plan_images``). ``progress(picture)``: a
    context manager around each picture's optimisation whose value (a ``callable(step, steps)`` or None)
    follows it; ``on_written(path)`` after each picture. Transparency is kept, resized to the painting.
    A VidstyleError when ``style_image`` is None.
    """
    from .extras import need_torch

    need_torch("--optimize (Gatys et al.)")
    from .train.gatys import optimize_image

    stills = _stills(inputs, output)
    if style_image is None:
        raise VidstyleError("--optimize needs a style picture: --style-image PICTURE, or --style PICTURE")
    device = str(getattr(device, "value", device))  # typer's choice, as in PaintOptions
    plan = plan_images(stills, GATYS, overwrite=overwrite)
    style_rgb = None
    written = []
    for src, dst in plan:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with (progress(src) if progress is not None else contextlib.nullcontext()) as bar:
            rgb = read_image(src, stills.max_pixels)
            if style_rgb is None:  # read once, after the first picture (whose error comes first)
                style_rgb = read_image(style_image)
            out = optimize_image(rgb, style_rgb, steps=steps, loss_net=loss_net, device=device,
                                 max_side=max_side or 512, progress=bar)
        written.append(write_image(dst, out, overwrite=overwrite, alpha=read_alpha(src, rgb.shape, size=out.shape)))
        if on_written is not None:
            on_written(written[-1])
    return written
