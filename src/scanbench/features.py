"""The feature store: per backbone x layer x subset, F and G = dlogit_c/dF as float16, memory-mappable.

Layout: features/<backbone>/<layer alias>/<subset>/
    F.npy       N x (C x H x W | T x D)   float16   layer output
    G.npy       same shape                float16   d logit_c / d F, c = predicted class
    images.npy  N x 3 x S x S             uint8     the input images (the decoder's reconstruction target)
    meta.json   {"indices": manifest rows, "labels", "classes" (predicted), "layer", "shape", ...}
Written by scanbench.feature_extraction with `numpy.lib.format.open_memmap` into a temp folder, renamed into
place when complete.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ScanbenchError


@dataclass
class FeatureSet:
    F: np.ndarray          # memory-mapped float16
    G: np.ndarray
    images: np.ndarray     # uint8 N x 3 x S x S
    meta: dict

    def __len__(self) -> int:
        return self.F.shape[0]


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
    return FeatureSet(np.load(path / "F.npy", mmap_mode="r"), np.load(path / "G.npy", mmap_mode="r"),
                      np.load(path / "images.npy", mmap_mode="r"), meta)
