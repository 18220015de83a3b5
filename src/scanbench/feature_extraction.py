"""Feature extraction for the store described in scanbench.features: one hooked forward/backward per batch.

Kept apart from the store's reader so that decoder training (which only reads) does not depend on the hooks.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as Fn
from tqdm import tqdm

from .data import load_images, to_uint8
from .distributed import DistContext, gather_to_rank0, shard
from .features import feature_grid, reconstruction_size
from .hooks import features_and_grads


def extract_features(model: torch.nn.Module, layer: str, root: Path, rel_paths: Sequence[str],
                     labels: Sequence[int], size: int, out_dir: Path, batch_size: int = 32,
                     extra_meta: dict | None = None, indices: Sequence[int] | None = None,
                     out_size: int | None = None, grid: int | None = None, ctx: DistContext | None = None
                     ) -> Path | None:
    """Features, gradients and images (area-pooled to the reconstruction size: `out_size`, i.e. scan.out_size,
    or the default for the layer's feature grid) of `rel_paths`; `grid` is the fallback token grid of a ViT.
    The forward/backward runs on the model's device; the images are pooled on the CPU (the same bytes anywhere).

    Data-parallel (`ctx` of world > 1): each rank extracts its block of whole batches; round by round, rank 0
    gathers every rank's next batch and writes it at its rows (memory: one batch per rank), and returns the
    folder (the other ranks return None)."""
    ctx = ctx or DistContext()
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    n = len(rel_paths)
    rows = shard(n, ctx, align=batch_size)
    starts = list(range(rows.start, rows.stop, batch_size))
    # rounds: the most batches any rank has (every rank joins every gather, with None when it has run out)
    rounds = max(-(-len(shard(n, DistContext(r, ctx.world), batch_size)) // batch_size) for r in range(ctx.world))
    if ctx.is_main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    F_mm = G_mm = img_mm = None
    recon = size
    classes = np.zeros(n, dtype=np.int64)
    for k in tqdm(range(rounds), desc=f"features {layer}", unit="batch", disable=not ctx.is_main):
        part = None
        if k < len(starts):
            start = starts[k]
            x = load_images(root, rel_paths[start:min(start + batch_size, rows.stop)], size)
            logits, F, G = features_and_grads(model, layer, x)
            recon = reconstruction_size(size, feature_grid(F.shape[1:], "cnn" if F.ndim == 4 else "vit", grid),
                                        out_size)
            part = (start, F.cpu().numpy().astype(np.float16), G.cpu().numpy().astype(np.float16),
                    to_uint8(x if recon == size else Fn.adaptive_avg_pool2d(x, recon)),   # x: on the CPU
                    logits.argmax(1).cpu().numpy())
        for got in gather_to_rank0(part, ctx) or []:
            if got is None:
                continue
            start, F16, G16, img8, cls = got
            if F_mm is None:
                shape = (n, *F16.shape[1:])
                F_mm = np.lib.format.open_memmap(tmp / "F.npy", mode="w+", dtype=np.float16, shape=shape)
                G_mm = np.lib.format.open_memmap(tmp / "G.npy", mode="w+", dtype=np.float16, shape=shape)
                recon = img8.shape[-1]
                img_mm = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8,
                                                   shape=(n, 3, recon, recon))
            end = start + F16.shape[0]
            F_mm[start:end] = F16
            G_mm[start:end] = G16
            img_mm[start:end] = img8
            classes[start:end] = cls
    if not ctx.is_main:
        return None
    for mm in (F_mm, G_mm, img_mm):
        mm.flush()
    del F_mm, G_mm, img_mm
    meta = {"layer": layer, "n": n, "image_size": size, "reconstruction_size": recon,
            "labels": [int(v) for v in labels],
            "classes": classes.tolist(), "indices": [int(i) for i in (indices if indices is not None else range(n))],
            "accuracy": float(np.mean(classes == np.asarray(labels))) if n else 0.0}
    meta.update(extra_meta or {})
    (tmp / "meta.json").write_text(json.dumps(meta))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir
