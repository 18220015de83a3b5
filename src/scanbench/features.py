"""The feature store: per backbone x layer x subset, F and G = dlogit_c/dF as float16, memory-mappable.

Layout: features/<backbone>/<layer alias>/<subset>/
    F.npy       N x (C x H x W | T x D)   float16   layer output
    G.npy       same shape                float16   d logit_c / d F, c = predicted class
    images.npy  N x 3 x R x R             uint8     the input images area-pooled to the reconstruction size R
                                                    (`reconstruction_size`): the decoder's target before the blur
    meta.json   {"indices": manifest rows, "labels", "classes" (predicted), "layer", "shape", ...}
Written by scanbench.feature_extraction with `numpy.lib.format.open_memmap` into a temp folder, renamed into
place when complete.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ScanbenchError
from .io import load_npy


@dataclass
class FeatureSet:
    F: np.ndarray          # memory-mapped float16
    G: np.ndarray
    images: np.ndarray     # uint8 N x 3 x S x S
    meta: dict

    def __len__(self) -> int:
        return self.F.shape[0]


# SCAN's target is blurred with sigma = S / (2 grid) (Eq. 7): at 8 px per feature cell that is 4 px, enough to
# carry the blurred image (its spectrum is ~0 beyond a quarter of that size's Nyquist frequency).
PIXELS_PER_CELL = 8


def reconstruction_size(input_size: int, grid: int, requested: int | None = None) -> int:
    """Side R of SCAN's reconstruction and confidence map: `scan.out_size` if set, else the blur's bandwidth
    (PIXELS_PER_CELL per feature cell: 56 for a 7 x 7 grid), never above the input size."""
    if grid < 1:
        raise ScanbenchError(f"feature grid must be >= 1 (got {grid})")
    if requested is None:
        return min(int(input_size), PIXELS_PER_CELL * int(grid))
    if isinstance(requested, bool) or not isinstance(requested, int) or not grid <= requested <= input_size:
        raise ScanbenchError(f"scan.out_size must be an integer in [feature grid {grid}, input size {input_size}] "
                             f"or null (got {requested!r})")
    return requested


def token_grid(n_tokens: int, fallback: int | None = None) -> int:
    """Side of the token grid: T = g^2 + 1 (CLS) or g^2 (no prefix token); else the backbone's grid."""
    for prefix in (1, 0):
        g = math.isqrt(max(n_tokens - prefix, 0))
        if g > 0 and g * g == n_tokens - prefix:
            return g
    if fallback is None:
        raise ScanbenchError(f"cannot infer a square token grid from {n_tokens} tokens")
    return fallback


def feature_grid(feat_shape: Sequence[int], family: str, fallback: int | None = None) -> int:
    """Side of one sample's feature grid: h of C x h x w (CNN), the token grid of T x D (ViT)."""
    feat_shape = tuple(int(s) for s in feat_shape)
    if family == "cnn":
        if len(feat_shape) != 3 or feat_shape[1] != feat_shape[2]:
            raise ScanbenchError(f"CNN features must be C x h x w with h == w (got {feat_shape})")
        return feat_shape[1]
    if family == "vit":
        if len(feat_shape) != 2:
            raise ScanbenchError(f"ViT features must be tokens x dim (got {feat_shape})")
        return token_grid(feat_shape[0], fallback)
    raise ScanbenchError(f"backbone family must be cnn or vit (got {family!r})")


def training_rows(n_total: int, n: int | None, seed: int) -> np.ndarray:
    """Rows of a feature set (sorted) that train a decoder on n of its n_total images: all when n is None or
    >= n_total, else a seeded random subset, nested in n (the first 1,000 lie inside the first 2,000). Never the
    first n rows: the store is in manifest order, i.e. sorted by class."""
    if n is None or int(n) >= n_total:
        return np.arange(n_total)
    if int(n) < 1:
        raise ScanbenchError(f"a decoder needs at least 1 training image (got n_train={n})")
    return np.sort(np.random.default_rng(seed).permutation(n_total)[: int(n)])


def training_sizes(values: Sequence, n_total: int) -> list[int]:
    """scaling.n_train entries as image counts (null: all), each in [1, n_total], ascending, no repeats."""
    out = []
    for v in values:
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ScanbenchError(f"scaling.n_train entries must be positive integers or null (got {v!r})")
        out.append(n_total if v is None else min(v, n_total))
    if not out:
        raise ScanbenchError("scaling.n_train is empty: give at least one size")
    return sorted(set(out))


def feature_layers(backbone: str, params: dict) -> list[str]:
    """The layer aliases whose features the pipeline needs for `backbone`: `scan.layers` (the main decoders),
    then `ablation.layers` if the backbone is in `ablation.backbones` (the layer ablation); no repeats."""
    layers = list(params["scan"]["layers"])
    if backbone in params["ablation"]["backbones"]:
        layers += [layer for layer in params["ablation"]["layers"] if layer not in layers]
    return layers


def load_features(path: str | Path) -> FeatureSet:
    path = Path(path)
    if not (path / "meta.json").exists():
        raise ScanbenchError(f"no feature set at {path}: run `dvc repro features` first")
    meta = json.loads((path / "meta.json").read_text())
    arrays = [load_npy(path / name, "features", mmap_mode="r") for name in ("F.npy", "G.npy", "images.npy")]
    return FeatureSet(*arrays, meta)
