"""Perturbation test (Chefer et al. 2021), vectorised, plus the "fair resolution" map pooling.

For each fraction f of the pixels, the floor(f * H * W) pixels that come first in the map's order are set
to black (0 in [0, 1] image space, all channels): most relevant first ("positive") or least relevant
first ("negative"). Score = top-1 correctness against the label. All perturbed copies of a chunk of
images (all steps, both orders) go through the forward function together, so the engine sees large
batches instead of one image at a time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ScanbenchError

Forward = Callable[[torch.Tensor], torch.Tensor]   # [0, 1] images -> logits (e.g. a ForwardEngine)
ORDERS = ("pos", "neg")
PER_IMAGE_DECIMALS = 9   # per-image AUC-D as stored in results/evaluate/B/M.json


def fair_resolution(maps: torch.Tensor, grid: int) -> torch.Tensor:
    """Average-pool each map (B x H x W) to grid x grid, then upsample bilinearly back to H x W.

    The paper does this before the perturbation test so that full-resolution maps (SCAN, LIME) compete
    with grid-resolution ones (CAMs, attention) on the same footing.
    """
    maps = torch.as_tensor(maps).float()
    if maps.ndim != 3:
        raise ScanbenchError(f"maps must be B x H x W (got shape {tuple(maps.shape)})")
    h, w = maps.shape[-2:]
    pooled = F.adaptive_avg_pool2d(maps.unsqueeze(1), (grid, grid))
    return F.interpolate(pooled, size=(h, w), mode="bilinear", align_corners=False).squeeze(1)


def removal_counts(fractions: Sequence[float], n_pixels: int) -> list[int]:
    """Pixels removed at each fraction: floor(f * n), with a tolerance for float error
    (0.3 * 10 = 3.0000000000000004)."""
    for f in fractions:
        if not 0.0 <= f <= 1.0:
            raise ScanbenchError(f"evaluate.fractions must lie in [0, 1] (got {f!r})")
    return [int(math.floor(f * n_pixels + 1e-6)) for f in fractions]


def removal_rank(maps: torch.Tensor, order: str) -> torch.Tensor:
    """rank[b, p] = position at which pixel p is removed (0 = first). Ties keep raster order (stable sort)."""
    if order not in ORDERS:
        raise ScanbenchError(f"order must be one of {ORDERS} (got {order!r})")
    flat = maps.reshape(maps.shape[0], -1).float()
    perm = torch.sort(flat, dim=1, descending=(order == "pos"), stable=True).indices
    rank = torch.empty_like(perm)
    rank.scatter_(1, perm, torch.arange(flat.shape[1], device=perm.device).expand_as(perm).contiguous())
    return rank


@dataclass
class PerturbationResult:
    """Per-image, per-step top-1 correctness (N x S, bool) for both orders."""
    fractions: np.ndarray
    pos: np.ndarray
    neg: np.ndarray


def perturbation_correct(forward: Forward, images01: torch.Tensor, maps: torch.Tensor, labels: torch.Tensor,
                         fractions: Sequence[float], max_chunk_bytes: int = 256 * 2**20) -> PerturbationResult:
    """Run the perturbation test; returns correctness per image and step for both orders.

    Images are processed in chunks whose perturbed copies (float32) stay under `max_chunk_bytes`.
    The unperturbed image (a fraction whose count is 0) is evaluated once and shared by both orders.
    The perturbed copies are built on the images' device (maps and labels are moved there).
    """
    images01 = torch.as_tensor(images01, dtype=torch.float32)
    device = images01.device
    maps = torch.as_tensor(maps).float().to(device)
    labels = torch.as_tensor(labels, dtype=torch.long).view(-1).to(device)
    n, c, h, w = images01.shape
    if maps.shape != (n, h, w):
        raise ScanbenchError(f"maps must be N x H x W matching the images {n} x {h} x {w} (got {tuple(maps.shape)})")
    if labels.shape[0] != n:
        raise ScanbenchError(f"need one label per image ({n}), got {labels.shape[0]}")
    counts = removal_counts(fractions, h * w)
    steps = [i for i, k in enumerate(counts) if k > 0]            # steps that need a perturbed copy
    ks = torch.tensor([counts[i] for i in steps], dtype=torch.long, device=device)
    copies_per_image = 1 + 2 * len(steps)
    chunk = max(1, int(max_chunk_bytes // (copies_per_image * c * h * w * 4)))
    out = {o: np.zeros((n, len(counts)), dtype=bool) for o in ORDERS}
    for s in range(0, n, chunk):
        x = images01[s:s + chunk]
        m = maps[s:s + chunk]
        b = x.shape[0]
        # one buffer for the chunk: [originals | pos copies (image-major, step-minor) | neg copies]
        batch = torch.empty(b * copies_per_image, c, h, w, device=device)
        batch[:b] = x
        for j, order in enumerate(ORDERS):
            rank = removal_rank(m, order)                                  # b x HW
            keep = (rank.unsqueeze(1) >= ks.view(1, -1, 1)).view(b, len(steps), 1, h, w)
            start = b + j * b * len(steps)
            torch.mul(x.unsqueeze(1), keep, out=batch[start:start + b * len(steps)].view(b, len(steps), c, h, w))
        pred = forward(batch).argmax(1).to(device)
        del batch
        y = labels[s:s + chunk]
        orig_ok = (pred[:b] == y).cpu().numpy()
        for j, order in enumerate(ORDERS):
            start = b + j * b * len(steps)
            ok = (pred[start:start + b * len(steps)].view(b, len(steps)) == y.view(-1, 1)).cpu().numpy()
            res = out[order][s:s + b]
            for col, i in enumerate(steps):
                res[:, i] = ok[:, col]
            for i, k in enumerate(counts):
                if k == 0:
                    res[:, i] = orig_ok
    return PerturbationResult(np.asarray(fractions, dtype=np.float64), out["pos"], out["neg"])


def auc(acc_percent: np.ndarray, fractions: Sequence[float]) -> np.ndarray:
    """Trapezoid area under accuracy (percent) over x = fractions; works on the last axis.

    A constant 100 % curve over [0, 0.9] gives 90 (the x axis is the fraction, not a percentage).
    """
    return np.trapezoid(np.asarray(acc_percent, dtype=np.float64), np.asarray(fractions, dtype=np.float64), axis=-1)


def curve(correct: np.ndarray) -> np.ndarray:
    """Mean accuracy per step, in percent (N x S correctness, bool or fractional -> S)."""
    return np.asarray(correct, dtype=np.float64).mean(0) * 100.0


def per_image_auc(correct: np.ndarray, fractions: Sequence[float]) -> np.ndarray:
    """AUC of each image's own 0/100 curve; their mean equals the AUC of the mean curve (linearity)."""
    return auc(np.asarray(correct, dtype=np.float64) * 100.0, fractions)


def summarize(fractions: Sequence[float], pos: np.ndarray, neg: np.ndarray, n_resamples: int,
              seed: int, per_image: bool = False) -> dict:
    """Curves, AUCs, AUC-D and their bootstrap intervals from per-image correctness (N x S, bool or
    fractional): the `V` record of results/evaluate/B/M.json. With `per_image`, also `per_image_auc_d` (each
    image's AUC-D, in image order; their mean is `auc_d`), which the report pairs across methods."""
    from .bootstrap import bootstrap_ci

    pos_i, neg_i = per_image_auc(pos, fractions), per_image_auc(neg, fractions)
    ci = bootstrap_ci(np.stack([pos_i, neg_i, neg_i - pos_i], 1), n_resamples, seed)
    pos_auc, neg_auc = float(auc(curve(pos), fractions)), float(auc(curve(neg), fractions))
    out = {"pos_curve": curve(pos).tolist(), "neg_curve": curve(neg).tolist(),
           "pos_auc": pos_auc, "neg_auc": neg_auc, "auc_d": neg_auc - pos_auc,
           "pos_auc_ci": ci[0].tolist(), "neg_auc_ci": ci[1].tolist(), "auc_d_ci": ci[2].tolist()}
    if per_image:   # rounded: 0/100 curves give multiples of 100 * step / 2 up to float error (4.999999999999999)
        out["per_image_auc_d"] = np.round(neg_i - pos_i, PER_IMAGE_DECIMALS).tolist()
    return out


def random_map_calibration(forward: Forward, images01: torch.Tensor, labels: torch.Tensor,
                           fractions: Sequence[float], n_maps: int, seed: int,
                           max_chunk_bytes: int = 256 * 2**20, rows: range | None = None,
                           n_total: int | None = None) -> PerturbationResult:
    """Perturbation test with `n_maps` uniform random full-resolution maps per image (seeded);
    correctness is averaged over the maps, so each image's entries are fractions in [0, 1].
    A sound test gives Pos AUC ~= Neg AUC here (the paper's ten-random-maps check). The maps are drawn on the
    CPU (the seeded generator's) and moved to the images' device: the same maps on every device. A shard of a
    data-parallel run (`rows` of `n_total` images) draws every image's maps and keeps its rows': the same maps
    as the single run."""
    if n_maps < 1:
        raise ScanbenchError(f"evaluate.calibration_maps must be >= 1 (got {n_maps})")
    gen = torch.Generator().manual_seed(seed)
    n, _, h, w = images01.shape
    pos = np.zeros((n, len(fractions)))
    neg = np.zeros((n, len(fractions)))
    for _ in range(n_maps):
        drawn = torch.rand(n if rows is None else n_total, h, w, generator=gen)
        if rows is not None:
            drawn = drawn[rows.start:rows.stop]
        res = perturbation_correct(forward, images01, drawn.to(images01.device), labels, fractions, max_chunk_bytes)
        pos += res.pos
        neg += res.neg
    return PerturbationResult(np.asarray(fractions, dtype=np.float64), pos / n_maps, neg / n_maps)
