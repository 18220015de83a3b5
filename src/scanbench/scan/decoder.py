"""The analysis network (docs/METHODS.md §1.2, paper Sec. III.E / Fig. 2): features -> 4 channels at the
reconstruction size.

Channel 0 is the confidence logit y_c; channels 1..3 the reconstruction, tanh'd into [-1, 1].
The output side is `out_size` (scanbench.features.reconstruction_size: `scan.out_size`, by default the blur's
bandwidth, 8 px per feature cell, e.g. 56 for a 7 x 7 grid); the explainer upsamples C to the input bilinearly.
- CNN features (B x C x h x w): 1x1 projection to widths[0], then per x2 stage 2 residual pre-activation
  bottleneck modules, a 3x3 conv to the next width and a bilinear x2 upsampling (the paper's transposed conv,
  k3 s2, painted a checkerboard grid into the maps; conv before the upsampling costs a quarter of conv after it:
  docs/DECISIONS.md).
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
from ..features import feature_grid, reconstruction_size


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


def n_stages(out_size: int, grid: int) -> int:
    """Number of x2 stages from the feature grid to the output size (56/7 -> 3, 224/7 -> 5, 64/8 -> 3)."""
    if grid < 1 or out_size < grid:
        raise ScanbenchError(f"feature grid {grid} must lie in [1, output size {out_size}]")
    return max(int(round(math.log2(out_size / grid))), 0)


class Upsampler(nn.Module):
    """Per stage: 2 bottlenecks at widths[i], a 3x3 conv to widths[i+1] and bilinear x2; then BN-ReLU-3x3 to 4 ch.

    If grid * 2**stages misses the output size (a non power-of-two ratio), the output is bilinearly resized
    to it; for every backbone in the registry at the default size the ratio is a power of two.
    """

    def __init__(self, widths: Sequence[int], stages: int, out_size: int):
        super().__init__()
        self.out_size = out_size
        layers: list[nn.Module] = []
        for i in range(stages):
            layers += [Bottleneck(widths[i]), Bottleneck(widths[i]),
                       nn.Conv2d(widths[i], widths[i + 1], 3, padding=1),
                       nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)]
        self.stages = nn.Sequential(*layers)
        last = widths[stages]
        self.head = nn.Sequential(nn.BatchNorm2d(last), nn.ReLU(inplace=True), nn.Conv2d(last, 4, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(self.stages(x))
        if y.shape[-1] != self.out_size or y.shape[-2] != self.out_size:
            y = Fn.interpolate(y, size=(self.out_size, self.out_size), mode="bilinear", align_corners=False)
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
    def __init__(self, in_channels: int, grid: int, out_size: int, widths: Sequence[int]):
        super().__init__()
        stages = n_stages(out_size, grid)
        widths = _stage_widths(widths, stages, "scan.widths.cnn")
        self.kwargs: dict[str, Any] = {"family": "cnn", "in_channels": int(in_channels), "grid": int(grid),
                                       "out_size": int(out_size), "widths": widths}
        self.proj = nn.Conv2d(in_channels, widths[0], 1)
        self.up = Upsampler(widths, stages, out_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.proj(x))


class ViTDecoder(nn.Module):
    def __init__(self, n_tokens: int, in_dim: int, grid: int, out_size: int, widths: Sequence[int],
                 blocks: int = 4, heads: int = 4):
        super().__init__()
        from timm.models.vision_transformer import Block

        stages = n_stages(out_size, grid)
        widths = _stage_widths(widths, stages, "scan.widths.vit")
        if widths[0] % heads:
            raise ScanbenchError(f"scan.widths.vit[0] ({widths[0]}) must be divisible by scan.vit_heads ({heads})")
        n_prefix = n_tokens - grid * grid
        if n_prefix < 0:
            raise ScanbenchError(f"{n_tokens} tokens cannot hold a {grid}x{grid} token grid")
        self.kwargs = {"family": "vit", "n_tokens": int(n_tokens), "in_dim": int(in_dim), "grid": int(grid),
                       "out_size": int(out_size), "widths": widths, "blocks": int(blocks), "heads": int(heads)}
        self.n_prefix = n_prefix
        self.grid = grid
        self.embed = nn.Linear(in_dim, widths[0])
        self.pos = nn.Parameter(torch.zeros(1, grid * grid, widths[0]))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.Sequential(*[Block(widths[0], heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(blocks)])
        self.norm = nn.LayerNorm(widths[0])
        self.up = Upsampler(widths, stages, out_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, self.n_prefix:]                       # drop CLS (and any other prefix tokens)
        x = self.norm(self.blocks(self.embed(x) + self.pos))
        b, t, d = x.shape
        x = x.transpose(1, 2).reshape(b, d, self.grid, self.grid)
        return self.up(x)


def build_decoder(spec, feat_shape: Sequence[int], params: dict, out_size: int | None = None) -> nn.Module:
    """The decoder for a backbone (`spec.family`, `spec.input_size`) and one sample's feature shape
    (C x h x w for a CNN, T x D for a ViT); widths etc. from params["scan"]. `out_size`: the side of the
    reconstruction (a feature set's image side); default reconstruction_size(spec.input_size, grid, scan.out_size)."""
    scan = params.get("scan", params)
    feat_shape = tuple(int(s) for s in feat_shape)
    grid = feature_grid(feat_shape, spec.family, spec.grid)
    if out_size is None:
        out_size = reconstruction_size(spec.input_size, grid, scan.get("out_size"))
    if spec.family == "cnn":
        return CNNDecoder(feat_shape[0], grid, out_size, scan["widths"]["cnn"])
    if spec.family == "vit":
        return ViTDecoder(feat_shape[0], feat_shape[1], grid, out_size, scan["widths"]["vit"],
                          blocks=scan.get("vit_blocks", 4), heads=scan.get("vit_heads", 4))
    raise ScanbenchError(f"backbone family must be cnn or vit (got {spec.family!r})")


def decoder_from_kwargs(kwargs: dict) -> nn.Module:
    kw = dict(kwargs)
    family = kw.pop("family", None)
    if family not in ("cnn", "vit"):
        raise ScanbenchError(f"decoder kwargs name no known family (got {family!r})")
    if "out_size" not in kw:
        raise ScanbenchError("decoder checkpoint has no out_size (saved before the decoders had one): re-train it "
                             "(`dvc repro -f train_scan`)")
    return (CNNDecoder if family == "cnn" else ViTDecoder)(**kw)
