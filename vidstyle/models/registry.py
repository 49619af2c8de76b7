"""Where style models live, and how a ``--style`` value becomes a model file.

* bundled styles: ``vidstyle/models/bundled/*.safetensors``, shipped inside the package;
* user styles: ``$VIDSTYLE_MODELS`` if set, else ``models`` in the user data folder of
  platformdirs: ``$XDG_DATA_HOME/vidstyle/models`` (``~/.local/share/vidstyle/models``) on
  Linux, ``~/Library/Application Support/vidstyle/models`` on macOS,
  ``%LOCALAPPDATA%\\vidstyle\\models`` on Windows.

``--style`` takes a name (``starry_night``), a path to a ``.safetensors`` file,
or ``MODEL:STYLE`` to pick one style of a multi-style model. A name is looked up in
this order, the first match wins:

1. a model file name (the file name without ``.safetensors``) in the user folder,
2. a model file name in the bundled folder,
3. a style inside a multi-style model (its metadata ``styles`` lists several names):
   user models before bundled ones, files in name order.

So a user model shadows a bundled one of the same name, and a single-style file
wins over a style of the same name inside a multi-style model; that one stays
reachable as ``MODEL:STYLE`` and is listed under that name.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import VidstyleError

if TYPE_CHECKING:
    from .weights import ModelFile

DEFAULT_STYLE = "vangogh_night_cafe"  # the best-looking bundled style (docs/MODELS.md), as make demo shows
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"


def user_dir() -> Path:
    """The user's model folder: ``$VIDSTYLE_MODELS``, else the platform's user data folder + ``models``."""
    if os.environ.get("VIDSTYLE_MODELS"):
        return Path(os.environ["VIDSTYLE_MODELS"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("vidstyle", appauthor=False)) / "models"


@dataclass
class StyleEntry:
    """One style: the name ``--style`` takes, the model file holding it and which of its styles it is."""

    name: str
    path: Path
    source: str  # "bundled" or "user"
    inner: str | None = None  # the style inside a multi-style model; None: the whole (single-style) file
    arch: str = "?"
    styles: list[str] = field(default_factory=list)  # every style of the model file
    error: str | None = None  # why the file's metadata could not be read
    temporal_strength: float | None = None  # the ``--temporal`` strength its file records for it
    base: str | None = None  # for a style file (``style_file``): the model whose network it paints with

    @property
    def model(self) -> str:
        """The model file's name, without ``.safetensors``."""
        return self.path.stem


@dataclass
class _ModelFile:
    path: Path
    source: str
    arch: str = "?"
    styles: list[str] = field(default_factory=list)
    error: str | None = None
    strengths: dict = field(default_factory=dict)  # style -> recorded --temporal strength
    base: str | None = None  # a style file's base model

    @property
    def multi(self) -> bool:
        return len(self.styles) > 1


def _read(path: Path, source: str) -> _ModelFile:
    from .metadata import read_metadata

    try:
        meta = read_metadata(path)
        from .style_file import STYLE_FORMAT, style_header

        base = None
        if meta.get("format") == STYLE_FORMAT:  # one style, painted with a base network
            style, base, _, meta = style_header(path)
            meta["styles"] = json.dumps([style])
        arch = json.loads(meta.get("arch", "{}"))
        styles = [str(s) for s in json.loads(meta.get("styles", "[]"))]
        n = int(arch.get("n_styles", len(styles) or 1))
        strengths = dict(json.loads(meta.get("temporal_strength", "{}")))
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in strengths.values()):
            raise ValueError(f"temporal_strength holds a value that is not a number: {strengths}")
    except (VidstyleError, ValueError, TypeError, AttributeError) as e:
        return _ModelFile(path, source, "unreadable", [], str(e))
    if base is not None:
        return _ModelFile(path, source, str(arch.get("arch", "?")), styles, None, strengths, base)
    if not styles:
        styles = [path.stem]
    if len(styles) != n:  # as load_model names them
        styles = [f"style{i}" for i in range(n)]
    return _ModelFile(path, source, str(arch.get("arch", "?")), styles, None, strengths)


def model_paths() -> list[Path]:
    """Every model file (not style files), user ones first; a user file hides a bundled file of the same name."""
    return [m.path for m in _model_files() if m.base is None and m.error is None]


def _model_files() -> list[_ModelFile]:
    """Every model file, user ones first; a user file hides a bundled file of the same name."""
    out: dict[str, _ModelFile] = {}
    for source, folder in (("user", user_dir()), ("bundled", BUNDLED_DIR)):
        if folder.is_dir():
            for p in sorted(folder.glob("*.safetensors")):
                if p.stem not in out:
                    out[p.stem] = _read(p, source)
    return list(out.values())


def _index() -> tuple[dict[str, StyleEntry], list[StyleEntry]]:
    """(every name ``--style`` accepts -> its entry, the styles to list: one per style, each once)."""
    models = _model_files()
    names: dict[str, StyleEntry] = {}
    listed: list[StyleEntry] = []
    for m in models:  # 1 and 2: file names
        e = StyleEntry(m.path.stem, m.path, m.source, None, m.arch, m.styles, m.error,
                       None if m.multi else m.strengths.get(m.styles[0]) if m.styles else None, m.base)
        names[e.name] = e
        if not m.multi:
            listed.append(e)
    for m in models:  # 3: styles inside multi-style models
        if not m.multi:
            continue
        for s in m.styles:
            name = s if s not in names else f"{m.path.stem}:{s}"
            e = StyleEntry(name, m.path, m.source, s, m.arch, m.styles, temporal_strength=m.strengths.get(s))
            names.setdefault(name, e)
            listed.append(e)
    listed.sort(key=lambda e: (e.name != DEFAULT_STYLE, e.name))
    return names, listed


def list_styles() -> list[StyleEntry]:
    """Every style, once: the default first, then by name.

    A single-style file is one entry; a multi-style model gives one entry per style,
    named by the style, or ``MODEL:STYLE`` where that name is taken by an earlier match.
    """
    return _index()[1]


def default_style() -> str:
    names, listed = _index()
    if DEFAULT_STYLE in names:
        return DEFAULT_STYLE
    if not listed:
        raise VidstyleError(f"no style models found (looked in {user_dir()} and {BUNDLED_DIR}); "
                            "pass --style PATH.safetensors or train one with `vidstyle train`")
    return listed[0].name


def _known(listed: list[StyleEntry]) -> str:
    return ", ".join(e.name for e in listed) or "none"


def resolve(spec: str | os.PathLike | None) -> tuple[Path, str | None]:
    """``--style`` value -> (model file, style inside it or None)."""
    spec = str(spec) if spec is not None else default_style()
    p = Path(spec).expanduser()
    if ":" in spec and not p.is_file() and not _pathlike(spec.rsplit(":", 1)[1]):  # not C:\dir\m.safetensors
        model, inner = spec.rsplit(":", 1)
        if not model or not inner:
            raise VidstyleError(f"--style wants NAME, PATH or MODEL:STYLE, not {spec!r}")
        return model_file(model), inner
    if _pathlike(spec) or p.is_file():
        if not p.is_file():
            raise VidstyleError(f"model file not found: {spec}")
        return p, None
    names, listed = _index()
    if spec in names:
        e = names[spec]
        return e.path, e.inner
    raise VidstyleError(f"unknown style {spec!r}; known styles: {_known(listed)}")


def style_file_in(mix: dict[str, float]) -> str | None:
    """The first name of a ``--mix`` that is a style file (``style_file``): its model holds the base network's
    styles as well, so a mix of it and bundled styles paints with it. None when the mix names none."""
    names, _ = _index()
    return next((n for n in mix if n in names and names[n].base is not None), None)


def _pathlike(s: str) -> bool:
    return s.endswith(".safetensors") or os.sep in s or bool(os.altsep and os.altsep in s)


def model_file(model: str) -> Path:
    """A model file by path or by its name among the bundled and user models (`paintings`), as the model
    part of ``MODEL:STYLE`` names it (not a style inside a model). One-line errors."""
    p = Path(model).expanduser()
    if _pathlike(model) or p.is_file():
        if not p.is_file():
            raise VidstyleError(f"model file not found: {model}")
        return p
    files = _model_files()
    for m in files:
        if m.path.stem == model:
            return m.path
    known = ", ".join(m.path.stem for m in files) or "none"
    raise VidstyleError(f"unknown model {model!r}; known models: {known}")


def find_base(path: Path) -> ModelFile:
    """The model file the style file ``path`` was trained on, read: the model its header names when that model's
    network sha256 is the one recorded, else any bundled or user model file with that sha256; a one-line
    VidstyleError when there is none."""
    from .style_file import is_style_file, network_sha256, style_header
    from .weights import read_model_file

    _, base, sha, _ = style_header(path)
    named = None
    try:
        named = model_file(base)
    except VidstyleError:
        pass
    if named is not None and is_style_file(named):
        named = None
    held = read_model_file(named) if named is not None else None
    if held is not None and network_sha256(held) == sha:
        return held
    for candidate in model_paths():
        try:
            other = read_model_file(candidate) if candidate != named else None
        except VidstyleError:  # a broken model file in the folder is not this style's base
            continue
        if other is not None and network_sha256(other) == sha:
            return other
    now = (f"the installed {base} is another network (sha256 {network_sha256(held)[:12]})" if held is not None
           else f"no model {base} is installed")
    raise VidstyleError(f"{path} is a style for the {base} network (sha256 {sha[:12]}), and {now}: its norm rows "
                        "only paint with the weights they were trained with; train the style again on this one")


def parse_mix(text: str | None) -> dict[str, float] | None:
    """``"a:0.5,b:0.5"`` (or ``"a=0.5,b=0.5"``, as ``--style-scale`` and ``--temporal-strength`` are written)
    -> {"a": 0.5, "b": 0.5}, checked by ``check_mix``."""
    if not text:
        return None
    out = {}
    for part in text.split(","):
        name, sep, w = part.strip().rpartition("=" if "=" in part else ":")
        if not sep:
            name, w = w, "1"
        if not name:
            raise VidstyleError(f"--mix wants NAME:WEIGHT pairs (e.g. udnie:0.7,the_scream:0.3), "
                                f"and {text!r} has an empty style name")
        if name in out:
            raise VidstyleError(f"--mix names {name} twice ({text!r}); give each style once")
        try:
            out[name] = float(w)
        except ValueError:
            raise VidstyleError(f"--mix wants NAME:WEIGHT pairs, got {part!r}") from None
        if not math.isfinite(out[name]):
            raise VidstyleError(f"--mix weights must be finite numbers, not {w!r} (in {part!r})")
    return check_mix(out)


def _short(x) -> str:
    """``repr(x)`` on one line, at most 60 characters."""
    return " ".join(repr(x).split())[:60]


def check_mix(mix: dict) -> dict[str, float]:
    """{style: weight} from the command line or the Python API -> the same with float weights.

    Weights must be finite, non-negative and not all zero (VidstyleError otherwise).
    """
    out = {}
    for name, w in mix.items():
        if not isinstance(name, str) or not name:
            raise VidstyleError(f"--mix style names must be non-empty strings, not {_short(name)}")
        try:
            out[name] = float(w)
        except (TypeError, ValueError):
            raise VidstyleError(f"--mix weight of {name!r} must be a number, not {_short(w)}") from None
        if not math.isfinite(out[name]):
            raise VidstyleError(f"--mix weights must be finite numbers, not {w!r} (for {name!r})")
    if not out:
        raise VidstyleError("--mix names no style")
    if not math.isfinite(sum(out.values())):
        raise VidstyleError("--mix weights are too large to add up; give weights like udnie:0.7,the_scream:0.3")
    if any(v < 0 for v in out.values()) or sum(out.values()) <= 0:
        raise VidstyleError("--mix weights must be non-negative and not all zero")
    return out
