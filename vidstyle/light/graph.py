"""The style networks as OpenVINO graphs built straight from their weights: no PyTorch, no conversion.

* ``net_graph``: ``TransformerNet`` (bundled and user-trained models) or ``PictureNet`` (the picture network),
  with the inputs and output of ``torch_export.to_openvino``: ``image`` (N, 3, H, W) and ``mix`` -> ``stylized``.
* ``frame_graph``: the whole per-frame painting of ``Stylizer.paint`` and ``Stylizer.download`` in one graph,
  uint8 frame in, uint8 painting out (resize, padding, the network, resize back, colour, strength).
* ``predictor_graph``: the ``StylePredictor`` (a picture -> its style vector).
* ``load_weights``: a ``.safetensors`` file as NumPy arrays.

Every op is one of OpenVINO's opsets (13 or older); the graphs compute what the torch modules compute, in the
same order, so that fp32 results agree to float rounding (tests/test_light_graph.py measures how closely).
"""
from __future__ import annotations

import numpy as np

from ..errors import VidstyleError, one_line
from ..models.config import LUMA, MIN_SIDE, NORM_EPS, PREDICTOR_STAGES
from ..ovcache import require_openvino

ov = require_openvino()  # without its usage telemetry
import openvino.opset13 as ops  # noqa: E402
# Layout of two layers, timed with the bundled network (32, 64, 128 channels, 5 blocks) at 640x360, one frame,
# f32, LATENCY, OpenVINO 2026.4 CPU plugin on a shared 2-core AVX2 EPYC (15 runs each, interleaved; median / min):
#   transposed-conv upsampling + phased RGB conv   457 / 399 ms   (as fast as torch_export.to_openvino graph)
#   nearest upsample + reflect pad + conv, phased  536 / 456 ms
#   transposed-conv upsampling, plain 9x9 RGB conv 482 / 428 ms
#   both plain                                     568 / 495 ms
# The same order in three runs (the machine was loaded): both layers keep the torch module's layout.


def load_weights(path) -> dict[str, np.ndarray]:
    """A ``.safetensors`` file -> {name: array}: float tensors as float32 copies, others (a model file's uint8
    style pictures) copied as they are. A file that cannot be read is a one-line VidstyleError."""
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - missing, truncated, not safetensors, bf16: one line
        raise VidstyleError(f"cannot read the weights in {path} ({one_line(e, 160)})") from None
    return {k: np.array(v, np.float32 if v.dtype.kind == "f" else v.dtype) for k, v in tensors.items()}


# --------------------------------------------------------------------------- small helpers
def _f32(a) -> ov.Node:
    return ops.constant(np.ascontiguousarray(a, np.float32))


def _i64(a) -> ov.Node:
    return ops.constant(np.asarray(a, np.int64))


def _param(name: str, shape, dtype) -> ov.Node:
    p = ops.parameter(ov.PartialShape(shape), dtype, name=name)
    p.output(0).get_tensor().set_names({name})
    return p


def _model(out: ov.Node, name: str, params: list, model_name: str) -> ov.Model:
    out.output(0).get_tensor().set_names({name})
    return ov.Model([out], params, model_name)


class _Weights:
    """The state dict, read by key: a missing tensor or one of the wrong rank is a one-line VidstyleError."""

    def __init__(self, weights: dict[str, np.ndarray], what: str):
        self.weights, self.what = weights, what

    def __call__(self, key: str, ndim: int) -> np.ndarray:
        if key not in self.weights:
            raise VidstyleError(f"the {self.what} weights have no {key}")
        a = np.asarray(self.weights[key], np.float32)
        if a.ndim != ndim:
            raise VidstyleError(f"the {self.what} weight {key} has shape {a.shape}, expected {ndim} dimensions")
        return a


def _conv(x: ov.Node, w: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 0, mode: str = "reflect"):
    """``conv(pad(x))``: (N, Cin, H, W) -> (N, Cout, H', W'); ``w`` (Cout, Cin, k, k), ``b`` (Cout,)."""
    if pad:
        x = ops.pad(x, _i64([0, 0, pad, pad]), _i64([0, 0, pad, pad]), mode)
    y = ops.convolution(x, _f32(w), [stride, stride], [0, 0], [0, 0], [1, 1])
    return ops.add(y, _f32(b.reshape(1, -1, 1, 1)))


def _style_norm(x: ov.Node, mix_row: ov.Node, weight: np.ndarray, bias: np.ndarray) -> ov.Node:
    """``StyleNorm``: instance norm of (N, C, H, W), then times ``mix @ weight`` plus ``mix @ bias`` ((S, C) each)."""
    x = ops.mvn(x, _i64([2, 3]), True, NORM_EPS, "inside_sqrt")
    to_4d = _i64([1, -1, 1, 1])
    gamma = ops.reshape(ops.matmul(mix_row, _f32(weight), False, False), to_4d, False)  # (1, C, 1, 1)
    beta = ops.reshape(ops.matmul(mix_row, _f32(bias), False, False), to_4d, False)
    return ops.add(ops.multiply(x, gamma), beta)


def _merge_taps(w: np.ndarray) -> np.ndarray:
    """(..., 3) taps of a conv after a 2x nearest upsample -> the (..., 4) taps of its transposed form."""
    return np.stack([w[..., 2], w[..., 1] + w[..., 2], w[..., 0] + w[..., 1], w[..., 0]], -1)


def _upsampled_conv(x: ov.Node, w: np.ndarray, b: np.ndarray) -> ov.Node:
    """``conv(reflect_pad_1(upsample_nearest_2x(x)))``, 3x3: (N, Cin, h, w) -> (N, Cout, 2h, 2w), as
    ``transformer.upsampled_conv`` does it: one stride-2 transposed conv with the merged 4x4 kernel on the
    edge-padded small picture, cropped by 3 each side.
    """
    k = _merge_taps(_merge_taps(w).swapaxes(-1, -2)).swapaxes(-1, -2)  # (Cout, Cin, 4, 4)
    x = ops.pad(x, _i64([0, 0, 1, 1]), _i64([0, 0, 1, 1]), "edge")
    y = ops.convolution_backprop_data(x, _f32(k.transpose(1, 0, 2, 3)), [2, 2], pads_begin=[3, 3],
                                      pads_end=[3, 3], dilations=[1, 1])
    return ops.add(y, _f32(b.reshape(1, -1, 1, 1)))


def _rgb_conv(x: ov.Node, w: np.ndarray, b: np.ndarray) -> ov.Node:
    """The kxk stride-1 output conv (reflect pad k//2): (N, Cin, H, W) -> (N, Cout, H, W), H and W even, as
    ``transformer.phased_conv``: one stride-2 conv with a (k+1)x(k+1) kernel and 4 Cout channels (one group per
    output phase), then DepthToSpace ("depth_first" is ``pixel_shuffle``).
    """
    k = w.shape[-1]
    cout, cin = w.shape[:2]
    phases = np.stack([np.pad(w, ((0, 0), (0, 0), (p, 1 - p), (q, 1 - q))) for p in range(2) for q in range(2)], 1)
    y = _conv(x, phases.reshape(4 * cout, cin, k + 1, k + 1), np.repeat(b, 4), stride=2, pad=k // 2)
    return ops.depth_to_space(y, "depth_first", 2)


# --------------------------------------------------------------------------- the style network
def _network(x: ov.Node, mix: ov.Node, config: dict, weights: dict[str, np.ndarray]) -> ov.Node:
    """``TransformerNet.decode(encode(x))`` or ``PictureNet``'s: (N, 3, H, W) in [0, 1], H and W multiples of 4
    -> the raw output (N, 3, H, W); ``mix`` (S,)."""
    picture = config.get("arch") == "picture"
    w = _Weights(weights, f"{config.get('arch', 'transformer')} network")
    mix_row = ops.unsqueeze(mix, _i64([0]))  # (1, S)
    c3 = int(list(config.get("channels", (32, 64, 128)))[2])

    def layer(x, name, *, stride=1, norm=True, relu=True, upsample=False, rgb=False, scale=1.0):
        cw, cb = w(f"{name}.conv.weight", 4) * scale, w(f"{name}.conv.bias", 1) * scale
        if upsample:
            x = _upsampled_conv(x, cw, cb)
        elif rgb:
            x = _rgb_conv(x, cw, cb)
        else:
            x = _conv(x, cw, cb, stride, cw.shape[-1] // 2)
        if norm:
            x = _style_norm(x, mix_row, w(f"{name}.norm.weight", 2), w(f"{name}.norm.bias", 2))
        return ops.relu(x) if relu else x

    if w("decoder.2.conv.weight", 4).shape[0] != 3 or w("encoder.2.conv.weight", 4).shape[0] != c3:
        raise VidstyleError(f"the weights do not match the architecture {config}")
    try:
        return _layers(x, layer, picture, int(config.get("res_blocks", 5)))
    except RuntimeError as e:  # OpenVINO's shape check of a node: weights of another architecture
        raise VidstyleError(f"the weights do not match the architecture {config} ({one_line(e, 160)})") from None


def _layers(x: ov.Node, layer, picture: bool, res_blocks: int) -> ov.Node:
    """The layers of ``TransformerNet`` (or ``PictureNet``), each ``layer(x, name, ...)`` of ``_network``."""
    # TransformerNet takes 0..255 (INPUT_SCALE), gives 0..255 / 255: both scales folded into the conv weights
    x = layer(x, "encoder.0", norm=not picture, scale=1.0 if picture else 255.0)   # (N, c1, H, W)
    x = layer(x, "encoder.1", stride=2, norm=not picture)                          # (N, c2, H/2, W/2)
    x = layer(x, "encoder.2", stride=2, norm=not picture)                          # (N, c3, H/4, W/4)
    for i in range(res_blocks):
        x = ops.add(x, layer(layer(x, f"residuals.{i}.a"), f"residuals.{i}.b", relu=False))
    x = layer(x, "decoder.0", upsample=True)                                       # (N, c2, H/2, W/2)
    x = layer(x, "decoder.1", upsample=True)                                       # (N, c1, H, W)
    if picture:  # norm on the RGB layer too, then a sigmoid
        return ops.sigmoid(layer(x, "decoder.2", relu=False, rgb=True))
    return layer(x, "decoder.2", norm=False, relu=False, rgb=True, scale=1 / 255.0)


def _mix_param(config: dict) -> ov.Node:
    return _param("mix", [int(config.get("n_styles", 1))], ov.Type.f32)


def net_graph(config: dict, weights: dict[str, np.ndarray], *, pad: bool = True, baked: np.ndarray | None = None):
    """The style network as an ``openvino.Model`` (fp32 weights).

    ``config``: the ArchConfig dict of a model file ({"arch", "channels", "res_blocks", "n_styles"}); arch
    "picture" is ``PictureNet``, any other ``TransformerNet``. ``weights``: the network's state dict as float32
    arrays (for the picture network, arbitrary.safetensors without the "predictor." tensors).

    Inputs:
        image (Tensor): f32 (N, 3, H, W) RGB in [0, 1]; N, H, W dynamic. With ``pad`` H and W (at least 5) are
            padded by reflection to multiples of 4 inside and the output cropped back (``torch_export.StyleGraph``);
            without it they must be multiples of 4 (at least 8).
        mix (Tensor): f32 (n_styles,): the style weights (the picture network: its style vector with a 1 appended).
    Output:
        stylized (Tensor): f32 (N, 3, H, W), the raw network output: roughly [0, 1], not clamped (the picture
            network's is a sigmoid).

    ``baked``: a mix (n_styles,) made a constant of the graph (a picture's vector, as ``torch_export.BakedGraph``):
    then ``image`` is the only input.
    """
    image = _param("image", [-1, 3, -1, -1], ov.Type.f32)
    mix = _mix_param(config) if baked is None else _f32(np.asarray(baked, np.float32).reshape(-1))
    x, hw = image, None
    if pad:
        hw = ops.gather(ops.shape_of(image), _i64([2, 3]), _i64(0))                # (2,) i64: H, W
        extra = ops.floor_mod(ops.negative(hw), _i64([4, 4]))                        # (-H) mod 4, (-W) mod 4
        x = ops.pad(image, _i64([0, 0, 0, 0]), ops.concat([_i64([0, 0]), extra], 0), "reflect")
    y = _network(x, mix, config, weights)
    if pad:
        y = ops.slice(y, _i64([0, 0]), hw, _i64([1, 1]), _i64([2, 3]))
    return _model(y, "stylized", [image, mix] if baked is None else [image], "vidstyle_net")


# --------------------------------------------------------------------------- the painting of one frame
def antialias_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float32: torch's antialiased bilinear resampling of one axis (``F.interpolate(mode="bilinear",
    align_corners=False, antialias=True)``, PIL's triangle filter widened by the shrink factor), as a matrix."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    inv = 1.0 / scale if scale > 1 else 1.0
    a = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):
        center = (i + 0.5) * scale
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), n_in)
        w = np.maximum(0.0, 1.0 - np.abs((np.arange(lo, hi) - center + 0.5) * inv))
        a[i, lo:hi] = w / w.sum()
    return a.astype(np.float32)


def _resize(x: ov.Node, src: tuple[int, int], dst: tuple[int, int]) -> ov.Node:
    """``stylizer.resize`` of (N, C, *src) to (N, C, *dst): bilinear, half-pixel centres, antialiased when either
    side shrinks.

    Shrinking is two MatMuls with ``antialias_matrix`` (within 3e-5 of torch on [0, 1] noise). OpenVINO's own
    "bilinear_pillow" gives the same numbers but took 1.5 s to compile (every run: a cached blob loads no faster)
    and 17 ms a frame at 640x360 -> 455x256, against 20 ms and about 5 ms for the MatMuls; its "linear" with
    antialias is another filter (0.3 to 0.4 off), so it is not used. Enlarging is "linear_onnx" (fast to compile).
    """
    if tuple(src) == tuple(dst):
        return x
    if dst[0] < src[0] or dst[1] < src[1]:
        x = ops.matmul(x, _f32(antialias_matrix(src[1], dst[1]).T), False, False)   # (N, C, H, w)
        return ops.matmul(_f32(antialias_matrix(src[0], dst[0])), x, False, False)  # (N, C, h, w)
    return ops.interpolate(x, _i64(dst), "linear_onnx", "sizes", coordinate_transformation_mode="half_pixel",
                           axes=_i64([2, 3]))


def _lerp(a: ov.Node, b: ov.Node, t: ov.Node) -> ov.Node:
    """``torch.lerp(a, b, t)`` with its two formulas: a + t (b - a) for t < 0.5, else b - (b - a)(1 - t)."""
    d = ops.subtract(b, a)
    low = ops.add(a, ops.multiply(t, d))
    high = ops.subtract(b, ops.multiply(d, ops.subtract(_f32(1.0), t)))
    return ops.select(ops.less(t, _f32(0.5)), low, high)


def frame_graph(config: dict, weights: dict[str, np.ndarray], frame_hw: tuple[int, int], work_hw: tuple[int, int],
                *, preserve_color: bool = False):
    """One frame painted as ``Stylizer.paint`` then ``Stylizer.download`` do it, uint8 in and out.

    ``config``, ``weights``: as for ``net_graph``. ``frame_hw``: (H, W) of the frames (static); ``work_hw``: the
    size painted at (``Stylizer.work_size``); ``preserve_color``: the frame's colours with the painting's luminance.

    Inputs:
        frames (Tensor): u8 (1, H, W, 3) RGB.
        mix (Tensor): f32 (n_styles,): the style weights (the picture network: vector with a 1 appended).
        strength (Tensor): f32 (1,): 1 paints fully; below 1 the painting is blended linearly toward the frame
            (``torch.lerp``), after colour preservation. The picture network takes its strength through its
            vector: give it 1.
    Output:
        painted (Tensor): u8 (1, H, W, 3) RGB.

    Inside: /255 -> (1, 3, H, W) -> resize to work_hw (``_resize``) -> padded at the bottom and right to
    multiples of 4, at least 8 (reflect, or edge where the frame is too small to reflect, as
    ``Stylizer.run_net``) -> the network -> cropped -> resized back -> clamped -> [keep_colour, clamped] ->
    lerp -> x255, rounded half to even (``torch.round``) -> u8 (1, H, W, 3).
    """
    (h, w), (sh, sw) = (int(frame_hw[0]), int(frame_hw[1])), (int(work_hw[0]), int(work_hw[1]))
    if min(h, w, sh, sw) < 1:
        raise VidstyleError(f"cannot paint a {w}x{h} frame at {sw}x{sh}")
    frames = _param("frames", [1, h, w, 3], ov.Type.u8)
    mix = _mix_param(config)
    strength = _param("strength", [1], ov.Type.f32)
    x = ops.transpose(ops.divide(ops.convert(frames, ov.Type.f32), _f32(255.0)), _i64([0, 3, 1, 2]))
    small = _resize(x, (h, w), (sh, sw))
    th, tw = max(MIN_SIDE, -(-sh // 4) * 4), max(MIN_SIDE, -(-sw // 4) * 4)
    if (th, tw) != (sh, sw):
        mode = "reflect" if (th - sh < sh and tw - sw < sw) else "edge"
        small = ops.pad(small, _i64([0, 0, 0, 0]), _i64([0, 0, th - sh, tw - sw]), mode)
    y = _network(small, mix, config, weights)
    if (th, tw) != (sh, sw):
        y = ops.slice(y, _i64([0, 0]), _i64([sh, sw]), _i64([1, 1]), _i64([2, 3]))
    y = ops.clamp(_resize(y, (sh, sw), (h, w)), 0.0, 1.0)
    if preserve_color:  # stylizer.keep_colour: the frame plus the change in luminance
        luma = _f32(np.array(LUMA, np.float32).reshape(1, 3, 1, 1))

        def lum(t):
            return ops.reduce_sum(ops.multiply(t, luma), _i64([1]), True)

        y = ops.clamp(ops.add(x, ops.subtract(lum(y), lum(x))), 0.0, 1.0)
    y = _lerp(x, y, ops.reshape(strength, _i64([1, 1, 1, 1]), False))
    y = ops.round(ops.multiply(ops.clamp(y, 0.0, 1.0), _f32(255.0)), "half_to_even")
    out = ops.transpose(ops.convert(y, ov.Type.u8), _i64([0, 2, 3, 1]))
    return _model(out, "painted", [frames, mix, strength], "vidstyle_frame")


# --------------------------------------------------------------------------- the style predictor
def predictor_graph(weights: dict[str, np.ndarray]):
    """``arbitrary.StylePredictor`` (MobileNet-v2 to 1280 channels, mean, 1x1 conv) as an ``openvino.Model``.

    ``weights``: the predictor's tensors with the "predictor." prefix stripped (``StylePredictor().state_dict()``).

    Input:
        picture (Tensor): f32 (1, 3, H, W) RGB in [0, 1]; H, W dynamic (the predictor was trained at 256x256).
    Output:
        vector (Tensor): f32 (1, 100): the picture's style vector.

    TensorFlow's "SAME" padding (``arbitrary.same_pad``: zeros, for stride 2 the odd one at the bottom and right)
    is the convolutions' own ``auto_pad="same_upper"``, computed from the actual H and W at run time, so the model
    stays dynamic and may also be reshaped to a static (1, 3, h, w) before compiling.
    """
    w = _Weights(weights, "style predictor")

    def conv(x, name, stride=1, groups=1, relu6=True):
        k, b = w(f"{name}.conv.weight", 4), w(f"{name}.conv.bias", 1)
        if groups > 1:  # depthwise: (C, 1, k, k) -> (C, 1, 1, k, k)
            y = ops.group_convolution(x, _f32(k[:, None]), [stride] * 2, [0, 0], [0, 0], [1, 1], "same_upper")
        else:
            y = ops.convolution(x, _f32(k), [stride] * 2, [0, 0], [0, 0], [1, 1], "same_upper")
        y = ops.add(y, _f32(b.reshape(1, -1, 1, 1)))
        return ops.clamp(y, 0.0, 6.0) if relu6 else y

    picture = _param("picture", [1, 3, -1, -1], ov.Type.f32)
    x = conv(picture, "features.0", stride=2)                                   # (1, 32, H/2, W/2)
    i, cin = 1, 32
    for expand, cout, n, first_stride in PREDICTOR_STAGES:
        for j in range(n):
            name, stride = f"features.{i}.layers", first_stride if j == 0 else 1
            mid = cin * expand
            y, li = x, 0
            if expand != 1:
                y, li = conv(y, f"{name}.0"), 1
            y = conv(y, f"{name}.{li}", stride=stride, groups=mid)
            y = conv(y, f"{name}.{li + 1}", relu6=False)
            x = ops.add(x, y) if stride == 1 and cin == cout else y
            i, cin = i + 1, cout
    x = conv(x, f"features.{i}")                                                # (1, 1280, H/32, W/32)
    x = ops.reduce_mean(x, _i64([2, 3]), True)                                  # (1, 1280, 1, 1)
    bw, bb = w("bottleneck.weight", 4), w("bottleneck.bias", 1)
    x = ops.add(ops.convolution(x, _f32(bw), [1, 1], [0, 0], [0, 0], [1, 1]), _f32(bb.reshape(1, -1, 1, 1)))
    return _model(ops.reshape(x, _i64([1, bw.shape[0]]), False), "vector", [picture], "vidstyle_predictor")
