"""Options as values: what a run paints, how it reads and encodes, and how it stabilises, each checked once.

    paint = PaintOptions(style="udnie", max_side=720, strength=0.8)
    encode = EncodeOptions(crf=20)
    stylize_video("in.mp4", "out.mp4", paint=paint, encode=encode, temporal=TemporalOptions(temporal=True))

Each is a frozen dataclass: made (and validated, in ``__post_init__``) once, where the user's words come in
(the command line, ``api`` keyword arguments), then passed on as it is to the ``Stylizer``, the batch job,
segment workers (it pickles) and live mode. Field names are the command line's option names (``--max-side``
is ``max_side``), so a command builds its options with ``PaintOptions.pick(locals())``.

A field whose metadata says ``fingerprint=False`` (where and how fast it runs) does not change the output;
the others are the options a batch manifest records with each output (``fingerprint()``), so that a run
with other options does not take it as done.

Adding a painting option: its field here (checked in ``__post_init__``), its ``typer.Option`` in the command,
and the one place that uses it (``Stylizer`` for the pixels).
"""
from __future__ import annotations

import dataclasses
import numbers
import os
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from .errors import VidstyleError

ENGINES = ("auto", "torch", "openvino")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
FLOWS = ("auto", "dis", "raft")
CHROMAS = ("420", "444")
NOT_IN_FINGERPRINT = {"fingerprint": False}


def _plain(value: Any) -> Any:
    """An enum member (typer's choices) as its value; anything else as it is."""
    return getattr(value, "value", value)


def parse_size(text: str | None, option: str = "--out-size") -> tuple[int, int] | None:
    """``WIDTHxHEIGHT`` (the command line's way) -> (width, height); None for nothing; a VidstyleError naming
    ``option`` otherwise."""
    if not text:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        w = h = 0
    if w > 0 and h > 0:
        return w, h
    raise VidstyleError(f"{option} wants WIDTHxHEIGHT, e.g. 1280x720, not {text!r}")


def check_size(size: Any) -> tuple[int, int] | None:
    """An output size (w, h) of two whole numbers above 0 (or None), checked: a VidstyleError otherwise."""
    if size is None:
        return None
    try:
        w, h = size
        ok = not isinstance(size, str) and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in (w, h))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise VidstyleError(f"out_size must be (width, height), two whole numbers above 0, not {size!r}")
    return int(w), int(h)


class _Options:
    """What the three option classes share: building from a mapping, and the fingerprint."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def pick(cls, values: Mapping[str, Any], **more):
        """The options named in ``values`` (e.g. a command's ``locals()``: other keys are left), and ``more``."""
        return cls(**{k: values[k] for k in cls.names() if k in values}, **more)

    @classmethod
    def split(cls, kwargs: dict, base: "_Options | None" = None) -> "_Options":
        """Take this class's fields out of ``kwargs`` (an API call's ``**options``): ``base`` (default: the
        defaults) with those fields changed."""
        mine = {k: kwargs.pop(k) for k in cls.names() if k in kwargs}
        return base.replace(**mine) if base is not None else cls(**mine)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def fingerprint(self) -> dict:
        """The fields that change the output, as JSON values (``dataclasses.asdict``)."""
        d = dataclasses.asdict(self)
        return {f.name: _jsonable(d[f.name]) for f in fields(self) if f.metadata.get("fingerprint", True)}


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


@dataclass(frozen=True)
class PaintOptions(_Options):
    """What changes the pixels: the style, and how the network paints it.

    ``style``: a style name, ``MODEL:STYLE``, a model path or a picture (``my_painting.jpg``; None: the default
    style). ``mix``: weights of a multi-style model's styles, or of pictures (``"a:0.5,b:0.5"`` or a dict), kept
    as a dict. ``style_size``: the short side, in pixels, a picture is read at for its style vector (larger:
    finer strokes). ``brush``: stroke size relative
    to the model's training scale; ``max_side``: paint at this longer side instead. ``out_size``: (w, h) of the
    output (``parse_size`` reads the command line's ``WxH``). ``strength``: 0 gives back the input, 1 the full painting.
    ``preserve_color``: the input's colours with the painting's luminance. ``engine``/``precision``: what runs
    the network and in which precision; ``device``: auto, cpu or cuda[:N].
    """

    style: str | None = None
    mix: dict | None = None
    style_size: int = 256
    max_side: int | None = None
    brush: float = 1.0
    out_size: tuple[int, int] | None = None
    strength: float = 1.0
    preserve_color: bool = False
    precision: str = "auto"
    engine: str = field(default="auto", metadata=NOT_IN_FINGERPRINT)
    device: str = field(default="auto", metadata=NOT_IN_FINGERPRINT)

    def __post_init__(self):
        from .models import registry

        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen: normalised once, here
        if isinstance(self.style, os.PathLike):
            set_("style", os.fspath(self.style))
        if isinstance(self.mix, str):
            set_("mix", registry.parse_mix(self.mix))
        elif self.mix is not None:
            set_("mix", registry.check_mix(dict(self.mix)))
        if self.style_size != 256:  # the default needs no check, and no import of the networks
            from .models.picture_style import check_style_size

            set_("style_size", check_style_size(self.style_size))
        if self.max_side is not None and (isinstance(self.max_side, bool) or not isinstance(self.max_side, int)
                                          or self.max_side <= 0):
            raise VidstyleError(f"max_side must be a whole number of pixels above 0, not {self.max_side!r}")
        try:
            brush = float(self.brush)
        except (TypeError, ValueError):
            brush = float("nan")
        if not brush > 0:
            raise VidstyleError(f"--brush must be above 0, not {self.brush}")
        set_("brush", brush)
        set_("out_size", check_size(self.out_size))
        try:
            strength = float(self.strength)
        except (TypeError, ValueError):
            strength = float("nan")
        if not 0.0 <= strength <= 1.0:
            raise VidstyleError(f"--strength must be between 0 and 1, not {self.strength}")
        set_("strength", strength)
        set_("preserve_color", bool(self.preserve_color))
        engine = str(_plain(self.engine) or "auto").lower()
        if engine not in ENGINES:
            raise VidstyleError(f"--engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        set_("engine", engine)
        precision = str(_plain(self.precision) or "auto").lower()
        if precision not in PRECISIONS:
            raise VidstyleError(f"--precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        set_("precision", precision)
        device = _plain(self.device)
        device = "auto" if device is None else str(device).lower()
        if device not in ("auto", "cpu") and not device.startswith("cuda"):
            raise VidstyleError(f"--device must be auto, cpu or cuda, not {device!r}")
        if engine == "openvino" and device == "auto":
            device = "cpu"  # OpenVINO asked for: the CPU even where a GPU is present
        set_("device", device)


@dataclass(frozen=True)
class ReadOptions(_Options):
    """How the input is read: ``deinterlace`` interlaced video first (bwdif); ``allow_protocol``: FFmpeg
    protocols allowed beyond files and the streaming ones (a tuple)."""

    deinterlace: bool = True
    allow_protocol: tuple[str, ...] = field(default=(), metadata=NOT_IN_FINGERPRINT)

    def __post_init__(self):
        protos = self.allow_protocol
        if isinstance(protos, str):
            protos = (protos,)
        object.__setattr__(self, "allow_protocol", tuple(protos or ()))
        object.__setattr__(self, "deinterlace", bool(self.deinterlace))


@dataclass(frozen=True)
class EncodeOptions(_Options):
    """How the video is encoded: ``codec`` (None: the container's default), ``crf`` and ``preset`` (None: the
    encoder's defaults here), ``chroma`` 420 or 444."""

    codec: str | None = None
    crf: int | None = None
    preset: str | None = None
    chroma: str = "420"

    def __post_init__(self):
        chroma = str(_plain(self.chroma))
        if chroma not in CHROMAS:
            raise VidstyleError(f"chroma must be 420 or 444, not {self.chroma!r}")
        object.__setattr__(self, "chroma", chroma)
        if self.crf is not None and (isinstance(self.crf, bool) or not isinstance(self.crf, int)
                                     or not 0 <= self.crf <= 63):
            raise VidstyleError(f"--crf must be a whole number from 0 to 63, not {self.crf!r}")


@dataclass(frozen=True)
class TemporalOptions(_Options):
    """The stabiliser against flicker: on with ``temporal``; ``temporal_strength`` (None: the style's own,
    from its model file); ``flow``: dis, raft or auto. ``stabilizer()`` makes a fresh one per video."""

    temporal: bool = False
    temporal_strength: float | None = None
    flow: str = "auto"

    def __post_init__(self):
        object.__setattr__(self, "temporal", bool(self.temporal))
        flow = str(_plain(self.flow) or "auto").lower()
        if flow not in FLOWS:
            raise VidstyleError(f"--flow must be dis, raft or auto, not {self.flow!r}")
        object.__setattr__(self, "flow", flow)
        s = self.temporal_strength
        if s is not None:
            try:
                s = float(s)
            except (TypeError, ValueError):
                s = float("nan")
            if not 0.0 <= s <= 1.0:
                raise VidstyleError(f"--temporal-strength must be between 0 and 1, not {self.temporal_strength}")
            object.__setattr__(self, "temporal_strength", s)

    def fingerprint(self) -> dict:
        """Off, the strength and flow change nothing."""
        if not self.temporal:
            return {"temporal": False, "temporal_strength": None, "flow": None}
        return super().fingerprint()

    def stabilizer(self):
        """A fresh stabiliser for one video, or None when off: ``temporal.Stabilizer`` (PyTorch), or
        ``light.stabilizer.Stabilizer`` where this process paints without it (``painters.light``)."""
        if not self.temporal:
            return None
        from .extras import has_torch

        if not has_torch():  # painters.light(): this process paints without PyTorch
            from .light.stabilizer import Stabilizer
        else:
            from .temporal import Stabilizer
        return Stabilizer(strength=self.temporal_strength, flow=self.flow)


def gather(options: dict, style=None, *, paint: PaintOptions | None = None, encode: EncodeOptions | None = None,
           read: ReadOptions | None = None, temporal: TemporalOptions | bool | None = None,
           caller: str = "vidstyle") -> tuple[PaintOptions, EncodeOptions, ReadOptions, TemporalOptions]:
    """The four values of a run from keyword arguments (an API call's ``**options``) by field name, each starting
    from the value given (``temporal`` may be a bool: on or off); a TypeError names any other keyword."""
    options = dict(options)
    if isinstance(temporal, bool):
        options["temporal"], temporal = temporal, None
    if style is not None:
        options["style"] = style
    values = (PaintOptions.split(options, paint), EncodeOptions.split(options, encode),
              ReadOptions.split(options, read), TemporalOptions.split(options, temporal))
    if options:
        raise TypeError(f"{caller}() got unexpected options: {', '.join(sorted(options))}")
    return values
