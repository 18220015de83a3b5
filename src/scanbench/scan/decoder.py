"""The analysis network (SPEC 3.2, paper Sec. III.E / Fig. 2): features -> 4 channels at input resolution.

Channel 0 is the confidence logit y_c; channels 1..3 the reconstruction, tanh'd into [-1, 1].
- CNN features (B x C x h x w): 1x1 projection to widths[0], then per x2 stage 2 residual pre-activation
  bottleneck modules and a transposed conv (k3, s2) to the next width.
- ViT tokens (B x T x D): prefix tokens (CLS) dropped, linear to widths[0] + learned position embedding,
  `vit_blocks` timm transformer blocks, reshape to the token grid, then the same upsampling stages.
Each decoder keeps its constructor kwargs in `.kwargs` (plain ints/lists/strings) so a checkpoint loaded
with weights_only=True can rebuild it (`decoder_from_kwargs`).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as Fn

from ..errors import ScanbenchError


class Bottleneck(nn.Module):
    """Pre-activation residual bottleneck: BN-ReLU-1x1 (F -> F/2), BN-ReLU-3x3, BN-ReLU-1x1 (-> F), + x."""

    def __init__(self, width: int):
        super().__init__()
        mid = max(width // 2, 1)
        self.body = nn.Sequential(
            nn.BatchNorm2d(width), nn.ReLU(inplace=True), nn.Conv2d(width, mid, 1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, width, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def n_stages(input_size: int, grid: int) -> int:
    """Number of x2 stages from the feature grid to the input size (224/7 -> 5, 224/14 -> 4, 64/8 -> 3)."""
    if grid < 1 or input_size < grid:
        raise ScanbenchError(f"feature grid {grid} must lie in [1, input size {input_size}]")
    return max(int(round(math.log2(input_size / grid))), 0)


class Upsampler(nn.Module):
    """Per stage: 2 bottlenecks at widths[i], transposed conv to widths[i+1] (x2); then BN-ReLU-3x3 to 4 ch.

    If grid * 2**stages misses the input size (a non power-of-two ratio), the output is bilinearly resized
    to it; for every backbone in the registry the ratio is a power of two and this never happens.
    """

    def __init__(self, widths: Sequence[int], stages: int, input_size: int):
        super().__init__()
        self.input_size = input_size
        layers: list[nn.Module] = []
        for i in range(stages):
            layers += [Bottleneck(widths[i]), Bottleneck(widths[i]),
                       nn.ConvTranspose2d(widths[i], widths[i + 1], 3, stride=2, padding=1, output_padding=1)]
        self.stages = nn.Sequential(*layers)
        last = widths[stages]
        self.head = nn.Sequential(nn.BatchNorm2d(last), nn.ReLU(inplace=True), nn.Conv2d(last, 4, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(self.stages(x))
        if y.shape[-1] != self.input_size or y.shape[-2] != self.input_size:
            y = Fn.interpolate(y, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        # channel 0: confidence logit y_c (Eq. 3); channels 1..3: reconstruction in [-1, 1]
        return torch.cat([y[:, :1], torch.tanh(y[:, 1:])], dim=1)


def _stage_widths(widths: Sequence[int], stages: int, name: str) -> list[int]:
    widths = [int(w) for w in widths]
    if len(widths) < stages + 1:
        raise ScanbenchError(f"{name} needs at least {stages + 1} widths for {stages} x2 stages (got {widths})")
    if any(w < 1 for w in widths):
        raise ScanbenchError(f"{name} must be positive integers (got {widths})")
    return widths[:stages + 1]


class CNNDecoder(nn.Module):
    def __init__(self, in_channels: int, grid: int, input_size: int, widths: Sequence[int]):
        super().__init__()
        stages = n_stages(input_size, grid)
        widths = _stage_widths(widths, stages, "scan.widths.cnn")
        self.kwargs: dict[str, Any] = {"family": "cnn", "in_channels": int(in_channels), "grid": int(grid),
                                       "input_size": int(input_size), "widths": widths}
        self.proj = nn.Conv2d(in_channels, widths[0], 1)
        self.up = Upsampler(widths, stages, input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.proj(x))


class ViTDecoder(nn.Module):
    def __init__(self, n_tokens: int, in_dim: int, grid: int, input_size: int, widths: Sequence[int],
                 blocks: int = 4, heads: int = 4):
        super().__init__()
        from timm.models.vision_transformer import Block

        stages = n_stages(input_size, grid)
        widths = _stage_widths(widths, stages, "scan.widths.vit")
        if widths[0] % heads:
            raise ScanbenchError(f"scan.widths.vit[0] ({widths[0]}) must be divisible by scan.vit_heads ({heads})")
        n_prefix = n_tokens - grid * grid
        if n_prefix < 0:
            raise ScanbenchError(f"{n_tokens} tokens cannot hold a {grid}x{grid} token grid")
        self.kwargs = {"family": "vit", "n_tokens": int(n_tokens), "in_dim": int(in_dim), "grid": int(grid),
                       "input_size": int(input_size), "widths": widths, "blocks": int(blocks), "heads": int(heads)}
        self.n_prefix = n_prefix
        self.grid = grid
        self.embed = nn.Linear(in_dim, widths[0])
        self.pos = nn.Parameter(torch.zeros(1, grid * grid, widths[0]))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.Sequential(*[Block(widths[0], heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(blocks)])
        self.norm = nn.LayerNorm(widths[0])
        self.up = Upsampler(widths, stages, input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, self.n_prefix:]                       # drop CLS (and any other prefix tokens)
        x = self.norm(self.blocks(self.embed(x) + self.pos))
        b, t, d = x.shape
        x = x.transpose(1, 2).reshape(b, d, self.grid, self.grid)
        return self.up(x)


def token_grid(n_tokens: int, fallback: int | None = None) -> int:
    """Side of the token grid: T = g^2 + 1 (CLS) or g^2 (no prefix token); else the backbone's grid."""
    for prefix in (1, 0):
        g = math.isqrt(max(n_tokens - prefix, 0))
        if g > 0 and g * g == n_tokens - prefix:
            return g
    if fallback is None:
        raise ScanbenchError(f"cannot infer a square token grid from {n_tokens} tokens")
    return fallback


def build_decoder(spec, feat_shape: Sequence[int], params: dict) -> nn.Module:
    """The decoder for a backbone (`spec.family`, `spec.input_size`) and one sample's feature shape
    (C x h x w for a CNN, T x D for a ViT); widths etc. from params["scan"]."""
    scan = params.get("scan", params)
    feat_shape = tuple(int(s) for s in feat_shape)
    if spec.family == "cnn":
        if len(feat_shape) != 3 or feat_shape[1] != feat_shape[2]:
            raise ScanbenchError(f"CNN features must be C x h x w with h == w (got {feat_shape})")
        return CNNDecoder(feat_shape[0], feat_shape[1], spec.input_size, scan["widths"]["cnn"])
    if spec.family == "vit":
        if len(feat_shape) != 2:
            raise ScanbenchError(f"ViT features must be tokens x dim (got {feat_shape})")
        grid = token_grid(feat_shape[0], spec.grid)
        return ViTDecoder(feat_shape[0], feat_shape[1], grid, spec.input_size, scan["widths"]["vit"],
                          blocks=scan.get("vit_blocks", 4), heads=scan.get("vit_heads", 4))
    raise ScanbenchError(f"backbone family must be cnn or vit (got {spec.family!r})")


def decoder_from_kwargs(kwargs: dict) -> nn.Module:
    kw = dict(kwargs)
    family = kw.pop("family", None)
    if family == "cnn":
        return CNNDecoder(**kw)
    if family == "vit":
        return ViTDecoder(**kw)
    raise ScanbenchError(f"decoder kwargs name no known family (got {family!r})")
