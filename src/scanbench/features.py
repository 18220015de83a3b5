"""The feature store: per backbone x layer x subset, F and G = dlogit_c/dF as float16, memory-mappable.

Layout: features/<backbone>/<layer alias>/<subset>/
    F.npy       N x (C x H x W | T x D)   float16   layer output
    G.npy       same shape                float16   d logit_c / d F, c = predicted class
    images.npy  N x 3 x S x S             uint8     the input images (the decoder's reconstruction target)
    meta.json   {"indices": manifest rows, "labels", "classes" (predicted), "layer", "shape", ...}
Written with `numpy.lib.format.open_memmap` into a temp folder, renamed into place when complete.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from .data import load_images, to_uint8
from .errors import ScanbenchError
from .hooks import features_and_grads


@dataclass
class FeatureSet:
    F: np.ndarray          # memory-mapped float16
    G: np.ndarray
    images: np.ndarray     # uint8 N x 3 x S x S
    meta: dict

    def __len__(self) -> int:
        return self.F.shape[0]


def extract_features(model: torch.nn.Module, layer: str, root: Path, rel_paths: Sequence[str],
                     labels: Sequence[int], size: int, out_dir: Path, batch_size: int = 32,
                     extra_meta: dict | None = None, indices: Sequence[int] | None = None) -> Path:
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    n = len(rel_paths)
    F_mm = G_mm = None
    img_mm = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(n, 3, size, size))
    classes = np.zeros(n, dtype=np.int64)
    for start in tqdm(range(0, n, batch_size), desc=f"features {layer}", unit="batch"):
        x = load_images(root, rel_paths[start:start + batch_size], size)
        logits, F, G = features_and_grads(model, layer, x)
        if F_mm is None:
            shape = (n, *F.shape[1:])
            F_mm = np.lib.format.open_memmap(tmp / "F.npy", mode="w+", dtype=np.float16, shape=shape)
            G_mm = np.lib.format.open_memmap(tmp / "G.npy", mode="w+", dtype=np.float16, shape=shape)
        end = start + x.shape[0]
        F_mm[start:end] = F.numpy().astype(np.float16)
        G_mm[start:end] = G.numpy().astype(np.float16)
        img_mm[start:end] = to_uint8(x)
        classes[start:end] = logits.argmax(1).numpy()
    for mm in (F_mm, G_mm, img_mm):
        mm.flush()
    del F_mm, G_mm, img_mm
    meta = {"layer": layer, "n": n, "image_size": size, "labels": [int(v) for v in labels],
            "classes": classes.tolist(), "indices": [int(i) for i in (indices if indices is not None else range(n))],
            "accuracy": float(np.mean(classes == np.asarray(labels))) if n else 0.0}
    meta.update(extra_meta or {})
    (tmp / "meta.json").write_text(json.dumps(meta))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


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
