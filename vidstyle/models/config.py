"""A style network's architecture, as its model file records it, and the weights it holds, without PyTorch.

``ArchConfig`` is stored in every model file (``arch`` metadata); ``state_shapes`` lists the tensors a network of
that architecture has (the keys and shapes of ``TransformerNet(config).state_dict()``), so a file can be checked
before anything is built, by the PyTorch path (``models.files``) and the light one (``models.weights``) alike.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class ArchConfig:
    """Hyper-parameters of a TransformerNet; stored in every model file."""

    arch: str = "transformer"
    channels: tuple[int, int, int] = (32, 64, 128)
    res_blocks: int = 5
    n_styles: int = 1

    def to_dict(self) -> dict:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, d: dict) -> "ArchConfig":
        return cls(
            arch=str(d.get("arch", "transformer")),
            channels=tuple(int(c) for c in d.get("channels", (32, 64, 128))),
            res_blocks=int(d.get("res_blocks", 5)),
            n_styles=int(d.get("n_styles", 1)),
        )


ARCHS = {
    # Johnson et al. / pytorch/examples: about 1.7 M parameters.
    "transformer": ArchConfig("transformer", (32, 64, 128), 5),
    # For CPUs and laptops: about 8x fewer multiply-adds.
    "lite": ArchConfig("lite", (16, 32, 64), 3),
}


def arch_config(name: str, n_styles: int = 1) -> ArchConfig:
    base = ARCHS[name]
    return ArchConfig(base.arch, base.channels, base.res_blocks, n_styles)


NORM_KEYS = (".norm.weight", ".norm.bias")  # a style's (gamma, beta) rows: (n_styles, C) tensors of every norm layer


def state_shapes(config: ArchConfig, *, encoder_norm: bool = True, output_norm: bool = False) -> dict[str, tuple]:
    """{tensor name: shape} of a ``TransformerNet(config, encoder_norm=..., output_norm=...)``: what its file holds."""
    c1, c2, c3 = config.channels
    n = config.n_styles
    shapes: dict[str, tuple] = {}

    def layer(name: str, cin: int, cout: int, k: int, norm: bool = True) -> None:
        shapes[f"{name}.conv.weight"], shapes[f"{name}.conv.bias"] = (cout, cin, k, k), (cout,)
        if norm:
            shapes[f"{name}.norm.weight"] = shapes[f"{name}.norm.bias"] = (n, cout)

    for i, (cin, cout, k) in enumerate(((3, c1, 9), (c1, c2, 3), (c2, c3, 3))):
        layer(f"encoder.{i}", cin, cout, k, encoder_norm)
    for b in range(config.res_blocks):
        layer(f"residuals.{b}.a", c3, c3, 3)
        layer(f"residuals.{b}.b", c3, c3, 3)
    for i, (cin, cout, k) in enumerate(((c3, c2, 3), (c2, c1, 3), (c1, 3, 9))):
        layer(f"decoder.{i}", cin, cout, k, output_norm if i == 2 else True)
    return shapes


# The picture network and its style predictor (``models.arbitrary``; Magenta's weights, converted once)
NETWORKS = Path(__file__).resolve().parent / "networks"
PICTURE_WEIGHTS = NETWORKS / "arbitrary.safetensors"
# style vectors of 16 well-known paintings (scripts/convert_arbitrary.py --calibration): what int8 quantisation
# calibrates the transform network on, whichever picture is painted, so that one int8 network serves all
PICTURE_CALIBRATION = NETWORKS / "calibration_vectors.npy"
PREDICTOR_PREFIX = "predictor."  # prefix of the predictor's tensors in PICTURE_WEIGHTS; the rest are PictureNet's
VECTOR = 100  # numbers in a style vector
PICTURE_CONFIG = ArchConfig("picture", (8, 16, 32), 5, VECTOR + 1)
# MobileNet-v2's stages in the style predictor: (expansion, channels, blocks, stride of the first block)
PREDICTOR_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                    (6, 320, 1, 1))

# What every painter of these networks needs to know
NORM_EPS = 1e-5  # the instance norms' epsilon, inside the square root (StyleNorm; Magenta's graph too)
MIN_SIDE = 8  # the 9x9 reflection pads need more than 4 pixels; multiples of 4 for the two stride-2 stages
LUMA = (0.299, 0.587, 0.114)  # BT.601 luma weights of RGB (--preserve-color)
