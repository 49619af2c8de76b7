"""A style file: one style as the norm rows it adds to a multi-style model (kilobytes, not megabytes).

In a conditional-instance-norm network a style is its (gamma, beta) rows in the norm layers (Dumoulin et al.
2017); the convolutions are shared. ``vidstyle train --style PICTURE`` learns those rows alone, on a copy of the
bundled network, and writes them here with the sha256 of the network they belong to:

  tensors   ``rows.<norm key>`` (C,) float32 for every ``*.norm.weight`` / ``*.norm.bias`` of the base network,
            ``style_image.0`` the painting (H, W, 3) uint8
  metadata  format "vidstyle-style"; style (its name); base (the base model's file name, e.g. "paintings");
            base_sha256 (of the base network's shared weights: ``network_sha256``); arch (the base's ArchConfig JSON); training (the recipe);
            temporal_strength (optional JSON {style: strength})

``read_style_file`` (with the base that ``registry.find_base`` finds; ``files.read_any`` does both) gives the base network with the row appended (or, for a style of the base's own name, put in
place of that style's row) as a ``weights.ModelFile``: every engine, live mode, export and worker paints it as they
paint the base model, and ``--mix`` blends it with the base's styles. A base of other weights is refused in one
line: rows only mean something with the convolutions they were trained with. The base's other styles may change
(a style added or retuned in it): the file still paints. NumPy only (the light install).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from ..errors import VidstyleError, one_line
from .config import NORM_KEYS, ArchConfig
from .metadata import read_metadata
from .weights import STYLE_IMAGE, ModelFile, check_temporal_strengths, read_model_file

STYLE_FORMAT = "vidstyle-style"
ROWS = "rows."
MAX_PICTURE_SIDE = 4096

def network_sha256(base: ModelFile) -> str:
    """The sha256 of what a style's rows depend on in a model file: its architecture and every tensor but the norm
    rows (float32, in name order). Adding, retuning or removing a style of the base leaves it as it is; retraining
    its convolutions changes it."""
    c = base.config
    h = hashlib.sha256(json.dumps([c.arch, list(c.channels), c.res_blocks]).encode())
    for k in sorted(base.weights):
        if not k.endswith(NORM_KEYS):
            h.update(k.encode())
            h.update(np.ascontiguousarray(base.weights[k], np.float32).tobytes())
    return h.hexdigest()


def is_style_file(path: str | Path) -> bool:
    """Whether ``path`` is a style file (its metadata says so); False for model files and anything unreadable."""
    try:
        return read_metadata(path).get("format") == STYLE_FORMAT
    except VidstyleError:
        return False


def norm_rows(weights: dict, index: int) -> dict[str, np.ndarray]:
    """Style ``index``'s rows {norm key: (C,)} of a model's weights {name: array}."""
    return {k: np.array(v[index], np.float32) for k, v in weights.items() if k.endswith(NORM_KEYS)}


def write_style_file(path: str | Path, model: str | Path, style: str, base: str | Path, *,
                     training: dict | None = None, temporal_strength: float | None = None) -> Path:
    """Write ``style`` of the model file ``model`` as a style file for the model file ``base``, atomically.

    ``model`` must be ``base`` with ``style`` added (or retuned) and nothing else changed: every other tensor
    bit for bit, which is checked (a VidstyleError names the first that differs). Returns ``path``.
    """
    path, model, base = Path(path), Path(model), Path(base)
    trained, held = read_model_file(model), read_model_file(base)
    if style not in trained.styles:
        raise VidstyleError(f"{model} has no style {style!r}")
    if trained.config.channels != held.config.channels or trained.config.res_blocks != held.config.res_blocks:
        raise VidstyleError(f"{model} is not a {base.name} network")
    others = [i for i, s in enumerate(held.styles) if s != style]  # the base's rows that must stay as they are
    in_trained = [trained.styles.index(held.styles[i]) for i in others]
    for k, v in held.weights.items():
        mine = trained.weights[k]
        if k.endswith(NORM_KEYS):
            same = np.array_equal(mine[in_trained], v[others])
        else:
            same = np.array_equal(mine, v)
        if not same:
            raise VidstyleError(f"{model} differs from {base} in {k} beyond the style {style}: not a style of it")
    return save_rows(path, norm_rows(trained.weights, trained.styles.index(style)), style, base,
                     picture=trained.pictures.get(style), training=training, temporal_strength=temporal_strength)


def save_rows(path: str | Path, rows: dict[str, np.ndarray], style: str, base: str | Path, *,
              picture: np.ndarray | None = None, training: dict | None = None,
              temporal_strength: float | None = None) -> Path:
    """Write the norm rows ``rows`` ({norm key: (C,)}) of ``style`` as a style file for the model file ``base``,
    atomically; ``picture``: the painting, (H, W, 3) uint8. Returns ``path``."""
    from ..io.atomic import write_safetensors

    path, base = Path(path), Path(base)
    held = read_model_file(base)
    tensors = {ROWS + k: np.ascontiguousarray(v, np.float32) for k, v in rows.items()}
    if picture is not None:
        tensors[STYLE_IMAGE + "0"] = np.ascontiguousarray(picture, np.uint8)
    meta = {"format": STYLE_FORMAT, "style": style, "base": base.stem, "base_sha256": network_sha256(held),
            "arch": json.dumps(held.config.to_dict()), "training": json.dumps(training or {}, default=str)}
    if temporal_strength is not None:
        meta["temporal_strength"] = json.dumps(check_temporal_strengths({style: temporal_strength}, [style], str(path)))
    return write_safetensors(path, tensors, meta)


def style_header(path: Path) -> tuple[str, str, str, dict]:
    """(style name, base name, base sha256, metadata) of a style file; a one-line VidstyleError when broken."""
    meta = read_metadata(path)
    if meta.get("format") != STYLE_FORMAT:
        raise VidstyleError(f"{path} is not a vidstyle style file")
    style, base, sha = meta.get("style", ""), meta.get("base", ""), meta.get("base_sha256", "")
    if not style or not base or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise VidstyleError(f"{path} has broken metadata: a style file names its style, its base model and the "
                            "base's sha256")
    try:
        check_style_name(style)
    except VidstyleError:
        raise VidstyleError(f"{path} has broken metadata: style name {style[:60]!r}") from None
    return style, base, sha, meta


def check_style_name(name: str, taken: list[str] = ()) -> str:
    """A style's name as ``--style NAME`` and ``--mix NAME:W`` take it and as a file name in the user models folder:
    letters, digits, ``-``, ``_``, ``.``, ``+`` and spaces, not a model file's name (``taken``); else a VidstyleError."""
    ok = 0 < len(name) <= 120 and name.strip() == name and not name.startswith(".") and all(
        c.isalnum() or c in "-_.+ " for c in name)
    if not ok:
        raise VidstyleError(f"a style name is letters, digits, '-', '_', '.', '+' and spaces, not {name[:60]!r}: "
                            "give --name")
    if name in taken:
        raise VidstyleError(f"{name} is the name of a model file (it would hide it): give another --name")
    return name


def read_style_file(path: str | Path, base: ModelFile) -> ModelFile:
    """The base network (the model file ``base``, as ``registry.find_base`` read it) with this file's style in it,
    checked; every problem is a one-line VidstyleError."""
    path = Path(path)
    if not path.is_file():
        raise VidstyleError(f"style file not found: {path}")
    style, base_name, _, meta = style_header(path)
    try:
        training = json.loads(meta.get("training", "{}"))
        strengths = json.loads(meta.get("temporal_strength", "{}"))
        if not isinstance(training, dict):
            raise ValueError("training is not a JSON object")
    except (ValueError, TypeError) as e:
        raise VidstyleError(f"{path} has broken metadata ({one_line(e, 160)})") from None
    strengths = check_temporal_strengths(strengths, [style], str(path))
    rows, picture = _read_rows(path, base)
    n = base.config.n_styles
    index = base.styles.index(style) if style in base.styles else n
    weights = dict(base.weights)
    for k, row in rows.items():
        table = base.weights[k]
        table = np.concatenate([table, row[None]]) if index == n else table.copy()
        table[index] = row
        weights[k] = table
    styles = base.styles + ([style] if index == n else [])
    config: ArchConfig = dataclasses.replace(base.config, n_styles=len(styles))
    pictures = {**base.pictures, **({style: picture} if picture is not None else {})}
    training = {**base.training, **training, "trained_styles": [style], "base": base_name}  # the base's scale
    return ModelFile(path, config, weights, styles, training, pictures, {**base.strengths, **strengths})


def _read_rows(path: Path, base: ModelFile) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The file's norm rows {norm key: (C,) float32}, checked against ``base``, and its picture (or None)."""
    from safetensors import safe_open

    want = {k: (v.shape[1],) for k, v in base.weights.items() if k.endswith(NORM_KEYS)}
    try:
        with safe_open(str(path), framework="numpy") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            keys = {k[len(ROWS):]: k for k in shapes if k.startswith(ROWS)}
            if set(keys) != set(want) or any(shapes[keys[k]] != want[k] for k in want):
                wrong = sorted(set(want) ^ set(keys)) or [k for k in want if shapes[keys[k]] != want[k]]
                raise VidstyleError(f"{path} does not fit its base network ({wrong[0]})")
            extra = [k for k in shapes if not k.startswith(ROWS) and k != STYLE_IMAGE + "0"]
            if extra:
                raise VidstyleError(f"{path} holds a tensor a style file does not have ({extra[0][:60]})")
            picture = None
            if STYLE_IMAGE + "0" in shapes:
                s = shapes[STYLE_IMAGE + "0"]
                if len(s) != 3 or s[2] != 3 or not all(0 < d <= MAX_PICTURE_SIDE for d in s[:2]):
                    raise VidstyleError(f"{path} holds a broken picture (shape {s})")
                picture = np.ascontiguousarray(f.get_tensor(STYLE_IMAGE + "0"), np.uint8)
            rows = {k: np.ascontiguousarray(f.get_tensor(name), np.float32) for k, name in keys.items()}
    except VidstyleError:
        raise
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError, a dtype NumPy lacks ...: one line
        raise VidstyleError(f"{path} is not a readable style file ({one_line(e, 160)})") from None
    broken = next((k for k, v in rows.items() if not np.isfinite(v).all()), None)
    if broken is not None:
        raise VidstyleError(f"{path} is broken: its rows hold NaN or infinite numbers ({broken})")
    return rows, picture
