"""How inputs are named and outputs are named after them: one rule for videos and pictures, one video and a batch.

* ``Source``: one input video as found (and the sub-folder it keeps under a batch's output folder);
* ``safe_label``: a style or mix label as written in file names;
* ``output_name``/``default_output``: ``<input stem>.<style>.mp4``; ``dedupe``: ``-2``, ``-3`` ... when taken;
* ``default_image_output``, ``painted_images``: ``<stem>.<style>.png`` beside a picture, and which files of a
  folder an earlier ``vidstyle image`` wrote;
* ``names_folder``, ``is_many``, ``run_kind``: whether ``vidstyle run``'s inputs and ``-o`` make one video, one
  video in segments, or a batch into a folder.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from glob import escape as glob_escape
from pathlib import Path, PurePosixPath

from .io.protocols import is_url, local_path


@dataclass(frozen=True)
class Source:
    """One input video: ``input`` as found, ``folder`` its place below the folder it was found in."""

    input: str
    folder: PurePosixPath = PurePosixPath()  # relative folder kept in the output layout ("" for files)

    @property
    def key(self) -> str:
        """The manifest key, also the path painted: a local file's real path (``file:`` dropped, links followed:
        one file reached by two names is one input, and ``link/..`` means what the file system says), a URL
        unchanged."""
        return self.input if is_url(self.input) else os.path.realpath(local_path(self.input))

    @property
    def old_key(self) -> str:
        """The key manifests written before links were followed hold: the absolute path as written."""
        return self.input if is_url(self.input) else os.path.abspath(local_path(self.input))


def safe_label(label: str) -> str:
    """A style or mix label as it appears in file names (``udnie:0.5+scream:0.5`` -> ``udnie_0_5+scream_0_5``):
    the one rule for videos and images."""
    return "".join(c if c.isalnum() or c in "-_+" else "_" for c in label)


def input_stem(src: str) -> str:
    """The input's name without its extension, for output names: a file's stem (``file:`` dropped), a URL's
    last path part without the query (``talk`` for ``https://h/p/talk.m3u8?x=1``); ``video`` when empty."""
    path = src.split("?")[0].rstrip("/") if is_url(src) else local_path(src)
    return Path(path).stem or "video"


def output_name(source: Source, label: str, suffix: str = ".mp4") -> PurePosixPath:
    """``<folder>/<input stem>.<style><suffix>``, relative to the output folder (a batch's names, and
    ``default_output``'s for one video)."""
    return source.folder / f"{input_stem(source.input)}.{safe_label(label)}{suffix}"


def dedupe(name: PurePosixPath, taken: set[str]) -> PurePosixPath:
    """``clip.style.mp4`` -> ``clip-2.style.mp4`` ... when the name is taken already."""
    if name.as_posix() not in taken:
        return name
    stem, _, rest = name.name.partition(".")
    k = 2
    while True:
        cand = name.with_name(f"{stem}-{k}.{rest}" if rest else f"{stem}-{k}")
        if cand.as_posix() not in taken:
            return cand
        k += 1


def default_output(src: str, style_label: str) -> Path:
    """``<input stem>.<style>.mp4`` (``output_name``) beside a local input, or in the current folder for a URL."""
    folder = Path.cwd() if is_url(src) else Path(local_path(src)).parent
    return folder / output_name(Source(src), style_label)


def default_image_output(src: str | Path, style_label: str) -> Path:
    """``<stem>.<style>.png`` beside the picture ``src``, the style written as in video names (``safe_label``)."""
    src = Path(src)
    return src.with_name(f"{src.stem}.{safe_label(style_label)}.png")


def painted_images(files: list[Path], labels: set[str] = frozenset()) -> set[Path]:
    """Those of ``files`` that an earlier ``vidstyle image`` wrote beside their photo: ``<stem>.<style>.png``
    where ``<stem>.*`` is an image of the same folder and ``<style>`` a style's name as written in file
    names (a known style, ``gatys``, a blend, or one of ``labels``). Folders are searched again on a second
    run: these are outputs, not photos."""
    from .io.images import is_image
    from .models import registry

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


def names_folder(output: str | os.PathLike | None) -> bool:
    """Whether ``-o`` names a folder: one that exists, or a name ending in a separator (``-o painted/``, made
    if need be: give it as a ``str``, a ``Path`` drops the separator)."""
    if output is None or output == "":
        return False
    text = os.fspath(output)
    return Path(text).is_dir() or text.endswith(("/", os.sep))


def is_many(spec: str) -> bool:
    """A folder or a glob (not an existing file, not a URL: ``is_url``; ``file:`` names a local path)."""
    if is_url(spec):
        return False
    path = Path(local_path(spec))
    if path.is_file():
        return False
    return path.is_dir() or any(c in spec for c in "*?[")


def run_kind(inputs: list[str], output_arg: str | None, segments: int = 1) -> str:
    """``"one"``, ``"segments"`` or ``"batch"``: what ``vidstyle run INPUTS -o OUTPUT --segments N`` paints;
    a VidstyleError for the combinations that cannot be painted (a batch without a folder to paint into,
    segments of several videos)."""
    from .errors import VidstyleError

    one = len(inputs) == 1 and not is_many(inputs[0]) and not names_folder(output_arg)
    if one:
        return "segments" if segments > 1 else "one"
    output = Path(output_arg) if output_arg else None
    if segments > 1:
        if len(inputs) == 1 and not is_many(inputs[0]):
            raise VidstyleError(f"--segments writes one video: -o must name a file, not the folder {output}")
        raise VidstyleError("--segments splits one video; give one input")
    if output is None:
        raise VidstyleError("several inputs need an output folder: -o DIR")
    if output.suffix and not output.is_dir():
        what = "a directory needs" if len(inputs) == 1 and Path(inputs[0]).is_dir() else "several inputs need"
        raise VidstyleError(f"{what} an output folder (-o DIR), not the file name {output}")
    return "batch"
