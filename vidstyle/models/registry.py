"""Where style models live, and how a ``--style`` value becomes a model file.

* bundled styles: ``samples/models/*.safetensors`` in the vidstyle checkout;
* user styles: ``$VIDSTYLE_MODELS`` if set, else ``$XDG_DATA_HOME/vidstyle/models``
  (``~/.local/share/vidstyle/models``). A user model with a bundled name wins.

``--style`` takes a name (``starry_night``), a path to a ``.safetensors`` file,
or ``MODEL:STYLE`` to pick one style of a multi-style model.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import VidstyleError

DEFAULT_STYLE = "starry_night"
BUNDLED_DIR = Path(__file__).resolve().parents[2] / "samples" / "models"


def user_dir() -> Path:
    if os.environ.get("VIDSTYLE_MODELS"):
        return Path(os.environ["VIDSTYLE_MODELS"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "vidstyle" / "models"


@dataclass
class StyleEntry:
    name: str
    path: Path
    source: str  # "bundled" or "user"


def list_styles() -> list[StyleEntry]:
    """Every known model, user models first shadowing bundled ones of the same name."""
    found: dict[str, StyleEntry] = {}
    for source, folder in (("bundled", BUNDLED_DIR), ("user", user_dir())):
        if folder.is_dir():
            for p in sorted(folder.glob("*.safetensors")):
                found[p.stem] = StyleEntry(p.stem, p, source)
    return sorted(found.values(), key=lambda e: (e.name != DEFAULT_STYLE, e.name))


def default_style() -> str:
    styles = list_styles()
    if not styles:
        raise VidstyleError(f"no style models found (looked in {BUNDLED_DIR} and {user_dir()}); "
                            "pass --style PATH.safetensors or train one with `vidstyle train`")
    return styles[0].name


def resolve(spec: str | os.PathLike | None) -> tuple[Path, str | None]:
    """``--style`` value -> (model file, style inside it or None)."""
    spec = str(spec) if spec is not None else default_style()
    p = Path(spec).expanduser()
    if ":" in spec and not p.is_file():
        model, inner = spec.rsplit(":", 1)
        path, _ = resolve(model)
        return path, inner
    if p.suffix == ".safetensors" or os.sep in spec or p.is_file():
        if not p.is_file():
            raise VidstyleError(f"model file not found: {spec}")
        return p, None
    for e in list_styles():
        if e.name == spec:
            return e.path, None
    known = ", ".join(e.name for e in list_styles()) or "none"
    raise VidstyleError(f"unknown style {spec!r}; known styles: {known}")


def parse_mix(text: str | None) -> dict[str, float] | None:
    """``"a:0.5,b:0.5"`` -> {"a": 0.5, "b": 0.5}."""
    if not text:
        return None
    out = {}
    for part in text.split(","):
        name, _, w = part.strip().rpartition(":")
        try:
            out[name or w] = float(w) if name else 1.0
        except ValueError:
            raise VidstyleError(f"--mix wants NAME:WEIGHT pairs, got {part!r}") from None
    if any(v < 0 for v in out.values()) or sum(out.values()) <= 0:
        raise VidstyleError("--mix weights must be non-negative and not all zero")
    return out
