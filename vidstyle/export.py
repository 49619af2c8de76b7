"""A style network as a standalone graph: ONNX or OpenVINO IR, for other runtimes and for the OpenVINO engine.

Exported graphs (``export_model``)
----------------------------------
Inputs
  ``image``  float32 (N, 3, H, W): RGB in [0, 1]; N, H and W are dynamic (H, W >= 5).
  ``mix``    float32 (S,): one non-negative weight per style of the model (S = n_styles),
             summing to 1; one-hot picks a style, anything else blends the styles.
Output
  ``stylized`` float32 (N, 3, H, W): RGB, roughly in [0, 1], not clamped (clamp for display).

Inside, H and W are padded (reflect) up to multiples of 4 and the result is cropped back, as
``TransformerNet.forward`` does. Tiny frames (a side under 5) must be padded by the caller
(the Stylizer pads them with edge pixels to 8).

The OpenVINO engine (``vidstyle.engines``) converts the same network without the padding step
(``StyleGraph(net, pad=False)``): the Stylizer hands it sizes that are already multiples of 4.
"""
from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path


from .errors import VidstyleError
from .graphio import GRAPH_VERSION, INPUTS, ONNX_OPSET, OUTPUT  # noqa: F401 - this module's API too
from .ovcache import require_openvino  # noqa: F401 - where the engines and export import it from
from .io.atomic import AtomicPath, check_target
from .models.files import model_scale

log = logging.getLogger("vidstyle")

FORMATS = ("onnx", "openvino")

IO_DOC = ("inputs: image float32 (N,3,H,W) RGB in [0,1], N/H/W dynamic (H,W >= 5); "
          "mix float32 (S,) style weights summing to 1, one per style (vidstyle.mix: the style exported). "
          "output: stylized float32 (N,3,H,W) RGB roughly in [0,1], not clamped. "
          "For the look vidstyle gives, resize frames so their short side is vidstyle.scale px first, "
          "then the output back (full-size frames get strokes too small).")


BAKED_IO_DOC = ("input: image float32 (N,3,H,W) RGB in [0,1], N/H/W dynamic (H,W >= 5); the style (a picture's "
                "style vector, vidstyle.picture names it) is baked in. output: stylized float32 (N,3,H,W) RGB in "
                "[0,1]. For the look vidstyle gives, resize frames so their short side is vidstyle.scale px first.")


def _baked(model):
    """The mix an export bakes in: a picture's style vector (101 numbers no user would type); None otherwise."""
    return model.net.mix if getattr(model, "is_picture", False) else None


def _describe(model) -> dict[str, str]:
    """Metadata stored in an exported file: what the inputs are and which styles the mix weights."""
    net = model.net
    if _baked(model) is not None:
        return {"producer": "vidstyle", "vidstyle.graph_version": str(GRAPH_VERSION),
                "vidstyle.arch": json.dumps(net.config.to_dict()), "vidstyle.styles": json.dumps(list(model.styles)),
                "vidstyle.name": model.name, "vidstyle.picture": json.dumps(model.sources),
                "vidstyle.scale": str(model_scale(model.training) or 0), "vidstyle.io": BAKED_IO_DOC}
    return {
        "producer": "vidstyle",
        "vidstyle.graph_version": str(GRAPH_VERSION),
        "vidstyle.arch": json.dumps(net.config.to_dict()),
        "vidstyle.styles": json.dumps(list(model.styles)),
        "vidstyle.mix": json.dumps([round(float(w), 6) for w in model.mix_array()]),
        "vidstyle.name": model.name,
        # the short side the network learnt at, which vidstyle paints at (--brush 1): 0 when the file does not say
        "vidstyle.scale": str(model_scale(model.training) or 0),
        "vidstyle.io": IO_DOC,
    }


def export_model(model, path: str | os.PathLike, format: str | None = None,  # noqa: A002 - API name
                 overwrite: bool = False) -> Path:
    """Write ``model`` (a StyleModel) as a standalone graph; returns the path written.

    ``format``: ``"onnx"`` (one ``.onnx`` file, opset 17) or ``"openvino"`` (IR: ``.xml`` plus
    ``.bin`` beside it, fp32 weights); default from the suffix of ``path`` (.onnx / .xml).

    The graph:

    * input ``image``: float32 (N, 3, H, W), RGB in [0, 1]; N, H, W dynamic (H and W at least 5);
    * input ``mix``: float32 (n_styles,), one weight per style in ``model.styles`` order, summing to 1;
    * output ``stylized``: float32 (N, 3, H, W), RGB roughly in [0, 1]; clamp it for display.

    The style names, architecture and this description are stored in the file: ONNX
    ``doc_string`` and ``metadata_props`` (keys ``vidstyle.styles``, ``vidstyle.arch``,
    ``vidstyle.io``, ...); OpenVINO ``rt_info`` under ``vidstyle``.
    Writes are atomic (a temporary file beside the target, then a rename). An existing file (for
    OpenVINO the ``.xml`` or the ``.bin``) is only replaced with ``overwrite``.
    """
    if not hasattr(model, "net") or not hasattr(model.net, "config"):
        raise VidstyleError("export_model needs a loaded vidstyle model (vidstyle.load_model)")
    path = Path(path).expanduser()
    fmt = (format or {".onnx": "onnx", ".xml": "openvino"}.get(path.suffix.lower(), "")).lower()
    if fmt in ("ir", "ov"):
        fmt = "openvino"
    if fmt not in FORMATS:
        raise VidstyleError(f"export format must be onnx or openvino, not {format!r}" if format else
                            f"cannot tell the export format of {path}: name it .onnx or .xml, or give the format")
    want = ".onnx" if fmt == "onnx" else ".xml"
    if path.suffix.lower() != want:
        raise VidstyleError(f"a {fmt} export must be named *{want}, not {path.name}")
    check_target(path, overwrite)  # not a folder; the folder exists and is writable
    if fmt == "openvino":
        check_target(path.with_suffix(".bin"), overwrite)  # the weights beside it are replaced too
    try:
        if fmt == "onnx":
            _export_onnx(model, path)
        else:
            _export_openvino(model, path)
    except VidstyleError:
        raise
    except OSError as e:
        raise VidstyleError(f"cannot write {path}: {e.strerror or e}") from None
    log.info("exported %s to %s (%s)", model.name, path, fmt)
    return path


def _export_onnx(model, path: Path) -> None:
    from .extras import need_torch

    need_torch("ONNX export")  # before importing it, for one line where it is missing
    from .torch_export import to_onnx_bytes

    try:
        import onnx
    except ImportError:
        raise VidstyleError("ONNX export needs the onnx package: pip install onnx") from None
    net = model.net
    with AtomicPath(path) as atomic:  # written 0644 (as a new file would be), renamed at the end
        proto = onnx.load_from_string(to_onnx_bytes(net, pad=True, baked=_baked(model)))
        meta = _describe(model)
        proto.doc_string = f"vidstyle style network {model.name!r} ({net.config.arch}); {meta['vidstyle.io']}"
        proto.producer_name = "vidstyle"
        del proto.metadata_props[:]
        for k, v in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        docs = {"image": "RGB in [0, 1], (N, 3, H, W)",
                "mix": f"style weights summing to 1, in this order: {', '.join(model.styles)}",
                OUTPUT: "stylized RGB, roughly in [0, 1] (clamp for display)"}
        for v in list(proto.graph.input) + list(proto.graph.output):
            v.doc_string = docs.get(v.name, "")
        onnx.save(proto, str(atomic.tmp))


def _export_openvino(model, path: Path) -> None:
    ov = require_openvino()
    baked = _baked(model)
    from .models.weights import WeightsNet

    if isinstance(model.net, WeightsNet):  # built from the weights: no PyTorch
        from .light.graph import net_graph

        om = net_graph(model.net.config.to_dict(), model.net.weights, pad=True,
                       baked=None if baked is None else model.mix_array())
    elif baked is None:
        from .torch_export import to_openvino

        om = to_openvino(model.net, pad=True)
    else:
        from .torch_export import to_onnx_bytes

        om = ov.convert_model(io.BytesIO(to_onnx_bytes(model.net, pad=True, baked=baked)))
    for k, v in _describe(model).items():
        om.set_rt_info(v, ["vidstyle", k.removeprefix("vidstyle.")])
    save_ir_atomic(ov, om, path)


def save_ir_atomic(ov, om, xml: Path) -> None:
    """``ov.save_model`` (fp32 weights) to ``xml`` and its ``.bin``, both written in a folder beside, then moved.

    Two files cannot be replaced at once, and an old ``.xml`` read with new weights of the same size
    would paint with the wrong weights without a word. So an old ``.xml`` is removed first, then the
    ``.bin`` and the ``.xml`` are moved in: a crash, or a reader that opens the ``.xml`` in between,
    finds no ``.xml``, never a mismatched pair (a reader that opened the old ``.xml`` just before can
    still meet the new ``.bin``: replace an export while nothing loads it).
    """
    stage = Path(tempfile.mkdtemp(prefix=f".{xml.stem}.partial-", dir=xml.parent))
    try:
        ov.save_model(om, str(stage / "model.xml"), compress_to_fp16=False)  # it wants a lower-case .xml
        xml.unlink(missing_ok=True)
        os.replace(stage / "model.bin", xml.with_suffix(".bin"))
        os.replace(stage / "model.xml", xml)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
