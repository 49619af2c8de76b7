"""Feed-forward style networks (Johnson et al. 2016) with conditional instance norm.

``TransformerNet`` is the image transformation network of "Perceptual Losses for
Real-Time Style Transfer and Super-Resolution" as in pytorch/examples, with
instance norm (Ulyanov et al.) instead of batch norm, nearest-upsample + conv
instead of transposed convolutions, and reflection padding.

Every norm layer holds one (gamma, beta) pair per style (Dumoulin et al. 2017,
"A learned representation for artistic style"), so one network can learn
several styles; a mix vector over the styles picks or blends them at run time.
With a single style it is the plain network.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ARCHS, ArchConfig, arch_config  # noqa: F401 - part of this module's API


class StyleNorm(nn.Module):
    """Instance norm with one affine (gamma, beta) per style.

    ``mix`` (n_styles,) weights the styles' affine parameters; a one-hot mix
    picks one style, any convex mix blends them.
    """

    def __init__(self, channels: int, n_styles: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_styles, channels))
        self.bias = nn.Parameter(torch.zeros(n_styles, channels))

    def forward(self, x: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        # x: (N, C, H, W); mix: (n_styles,) or (N, n_styles)
        x = F.instance_norm(x, eps=1e-5)
        gamma = mix.to(self.weight.dtype) @ self.weight  # (C,) or (N, C)
        beta = mix.to(self.bias.dtype) @ self.bias
        if gamma.dim() == 1:
            gamma, beta = gamma[None], beta[None]
        return x * gamma[:, :, None, None].to(x.dtype) + beta[:, :, None, None].to(x.dtype)


def _merge_taps(w: torch.Tensor) -> torch.Tensor:
    """(..., 3) taps of a conv after a 2x nearest upsample -> the (..., 4) taps of its transposed form."""
    return torch.stack([w[..., 2], w[..., 1] + w[..., 2], w[..., 0] + w[..., 1], w[..., 0]], -1)


def upsampled_conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(reflect_pad_1(upsample_nearest_2x(x)))`` for a 3x3 ``conv``, as one transposed convolution.

    (N, Cin, h, w) -> (N, Cout, 2h, 2w). Each output pixel sees 2x2 input pixels, whose weights are the sums
    of the 3x3 taps that fell on the same input pixel (a 4x4 kernel, stride 2); the reflected border of the
    upsampled picture is the replicated border of the small one. The same function with 2.25x fewer
    multiply-adds and no upsampled tensor.
    """
    w = conv.weight                                                      # (Cout, Cin, 3, 3)
    k = _merge_taps(_merge_taps(w).transpose(-1, -2)).transpose(-1, -2)  # (Cout, Cin, 4, 4)
    return F.conv_transpose2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.transpose(0, 1), conv.bias,
                              stride=2, padding=3)


def phased_conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """A stride-1 kxk ``conv`` of an already padded ``x``, computed per output phase: for few output channels.

    (N, Cin, H + k - 1, W + k - 1), H and W even -> (N, Cout, H, W). A conv with Cout = 3 fills 3 of a vector
    unit's 16 lanes; here it is one stride-2 conv with a (k+1)x(k+1) kernel and 4*Cout channels, one group per
    output phase (the kernel shifted by 0 or 1 row and column), then ``pixel_shuffle``: 23% more
    multiply-adds and 4 times the channels.
    """
    w = conv.weight                                                      # (Cout, Cin, k, k)
    cout, cin, k, _ = w.shape
    phases = torch.stack([F.pad(w, (q, 1 - q, p, 1 - p)) for p in range(2) for q in range(2)], 1)
    y = F.conv2d(x, phases.reshape(4 * cout, cin, k + 1, k + 1), conv.bias.repeat_interleave(4), stride=2)
    return F.pixel_shuffle(y, 2)                                         # (N, 4 Cout, H/2, W/2) -> (N, Cout, H, W)


class ConvNorm(nn.Module):
    """Reflection-padded conv, optional style norm, optional ReLU.

    Two layers are computed in a form laid out for the hardware (the same function; about 25% less time
    for the whole network on the CPU, docs/PERFORMANCE.md): a 3x3 conv after a 2x upsample as one transposed
    conv (``upsampled_conv``), and a stride-1 conv with at most 4 output channels (the RGB output layer) per
    output phase (``phased_conv``; it needs even H and W, which ``TransformerNet`` guarantees inside).
    """

    def __init__(self, cin, cout, k, stride=1, n_styles=1, norm=True, relu=True, upsample=1):
        super().__init__()
        self.upsample = upsample
        self.pad = nn.ReflectionPad2d(k // 2)
        self.conv = nn.Conv2d(cin, cout, k, stride)
        self.norm = StyleNorm(cout, n_styles) if norm else None
        self.relu = relu

    def forward(self, x, mix):
        if self.upsample == 2 and self.conv.kernel_size == (3, 3):
            x = upsampled_conv(x, self.conv)
        elif self.upsample == 1 and self.conv.stride == (1, 1) and self.conv.out_channels <= 4:
            x = phased_conv(self.pad(x), self.conv)
        else:
            if self.upsample > 1:
                x = F.interpolate(x, scale_factor=self.upsample, mode="nearest")
            x = self.conv(self.pad(x))
        if self.norm is not None:
            x = self.norm(x, mix)
        return F.relu(x) if self.relu else x


class ResidualBlock(nn.Module):
    def __init__(self, c, n_styles):
        super().__init__()
        self.a = ConvNorm(c, c, 3, n_styles=n_styles)
        self.b = ConvNorm(c, c, 3, n_styles=n_styles, relu=False)

    def forward(self, x, mix):
        return x + self.b(self.a(x, mix), mix)


class TransformerNet(nn.Module):
    """Image transformation network.

    Input:  (N, 3, H, W) float RGB in [0, 1], any H and W (>= 4).
    Output: (N, 3, H, W) float RGB, roughly in [0, 1] (not clamped: the losses
            see the raw output; callers clamp for display).

    Inside, H and W are padded (reflect) up to multiples of 4 so the two
    stride-2 stages and two 2x upsamples give back the same size, then cropped.
    """

    INPUT_SCALE = 255.0  # the network was designed for 0..255 inputs (as in pytorch/examples)

    def __init__(self, config: ArchConfig = ARCHS["transformer"], *, encoder_norm: bool = True,
                 output_norm: bool = False):
        super().__init__()
        self.config = config
        c1, c2, c3 = config.channels
        n = config.n_styles
        self.encoder = nn.ModuleList([
            ConvNorm(3, c1, 9, n_styles=n, norm=encoder_norm),            # (N, c1, H, W)
            ConvNorm(c1, c2, 3, stride=2, n_styles=n, norm=encoder_norm),  # (N, c2, H/2, W/2)
            ConvNorm(c2, c3, 3, stride=2, n_styles=n, norm=encoder_norm),  # (N, c3, H/4, W/4)
        ])
        self.residuals = nn.ModuleList([ResidualBlock(c3, n) for _ in range(config.res_blocks)])
        self.decoder = nn.ModuleList([
            ConvNorm(c3, c2, 3, n_styles=n, upsample=2),                # (N, c2, H/2, W/2)
            ConvNorm(c2, c1, 3, n_styles=n, upsample=2),                # (N, c1, H, W)
            ConvNorm(c1, 3, 9, n_styles=n, norm=output_norm, relu=False),  # (N, 3, H, W)
        ])
        # Start at mid-grey rather than black: training converges in far fewer steps.
        nn.init.constant_(self.decoder[-1].conv.bias, 127.5)
        # One-hot on style 0 by default; set_mix changes it.
        mix = torch.zeros(n)
        mix[0] = 1.0
        self.register_buffer("mix", mix, persistent=False)

    def set_mix(self, weights) -> None:
        """Choose the style(s): a sequence of n_styles non-negative weights (normalised here)."""
        w = torch.as_tensor(weights, dtype=torch.float32, device=self.mix.device).flatten()
        if w.numel() != self.config.n_styles or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"style mix needs {self.config.n_styles} non-negative weights, got {weights}")
        self.mix = w / w.sum()

    def encode(self, x: torch.Tensor, mix: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> encoder features (N, c3, H/4, W/4); H, W multiples of 4."""
        mix = self.mix if mix is None else mix
        if self.INPUT_SCALE != 1.0:
            x = x * self.INPUT_SCALE
        for layer in self.encoder:
            x = layer(x, mix)
        return x

    def decode(self, f: torch.Tensor, mix: torch.Tensor | None = None) -> torch.Tensor:
        mix = self.mix if mix is None else mix
        for block in self.residuals:
            f = block(f, mix)
        for layer in self.decoder:
            f = layer(f, mix)
        return self.output(f)

    def output(self, f: torch.Tensor) -> torch.Tensor:
        """The last layer's (N, 3, H, W) -> RGB, roughly in [0, 1]."""
        return f / 255.0

    def forward(self, x: torch.Tensor, mix: torch.Tensor | None = None, return_features: bool = False):
        h, w = x.shape[-2:]
        ph, pw = (-h) % 4, (-w) % 4
        if ph or pw:
            # reflect needs pad < size; replicate covers the tiniest inputs
            mode = "reflect" if (ph < h and pw < w) else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        feats = self.encode(x, mix)
        y = self.decode(feats, mix)[..., :h, :w]
        return (y, feats) if return_features else y
