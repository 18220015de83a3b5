"""How alike two explanation maps of the same image are: the measures of the sanity-check literature
(Adebayo et al. 2018; Quantus' MPRT and random-logit tests), computed in-house on small maps.

Both maps are brought to `size` x `size` (area averaging: 224 -> 56 px for EfficientNet, 64 -> 56 for the ViT)
and min-max normalised to [0, 1] first, so every method is compared at one resolution and scale.

- spearman: Spearman rank correlation of the pixels (ties get their average rank). -1..1.
- ssim: structural similarity (scikit-image, 7-px window, data range 1). About -1..1.
- hog: Pearson correlation of the two maps' histograms of oriented gradients (scikit-image, 8-px cells, 2x2
  blocks, 9 unsigned orientations). Unsigned orientations: a map and its inverse have the same HOG (1), which
  is why it is read beside Spearman and SSIM.

A constant map (normalize_maps makes it all zeros: the method found nothing) has no ranks and no gradients:
its Spearman and HOG correlation with any map are set to 0 (it shares no ordering or edge with it) and the
pair is counted in `n_constant`, so a table can say how many there were. Maps are non-negative after min-max,
so Adebayo's absolute-value variant equals the plain one here and is not computed.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from .config import MIN_SIMILARITY_SIZE
from .errors import ScanbenchError
from .metrics.bootstrap import bootstrap_ci

MEASURES = ("spearman", "ssim", "hog")
MIN_SIZE = MIN_SIMILARITY_SIZE   # HOG needs 2 x 2 cells of 8 px; SSIM a 7-px window
HOG_CELL = 8


def resize_maps(maps: torch.Tensor, size: int) -> np.ndarray:
    """B x H x W maps -> B x size x size float64 in [0, 1] (area averaging, then per-map min-max; a constant map
    becomes zeros)."""
    if maps.ndim != 3:
        raise ScanbenchError(f"maps must be B x H x W (got {tuple(maps.shape)})")
    small = F.adaptive_avg_pool2d(maps.detach().float()[:, None], size)[:, 0].double().cpu().numpy()
    flat = small.reshape(len(small), -1)
    lo, hi = flat.min(1, keepdims=True), flat.max(1, keepdims=True)
    span = hi - lo
    out = np.where(span > 1e-12, (flat - lo) / np.where(span > 1e-12, span, 1.0), 0.0)
    return out.reshape(small.shape)


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise Pearson correlation; rows where either side is constant get 0 and are flagged."""
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    na, nb = np.sqrt((a * a).sum(1)), np.sqrt((b * b).sum(1))
    constant = (na < 1e-12) | (nb < 1e-12)
    r = (a * b).sum(1) / np.where(constant, 1.0, na * nb)
    return np.where(constant, 0.0, np.clip(r, -1.0, 1.0)), constant


def _hog(m: np.ndarray) -> np.ndarray:
    from skimage.feature import hog

    return hog(m, orientations=9, pixels_per_cell=(HOG_CELL, HOG_CELL), cells_per_block=(2, 2),
               feature_vector=True)


def map_similarity(a: torch.Tensor, b: torch.Tensor, size: int = 56) -> dict[str, np.ndarray]:
    """Per image: {spearman, ssim, hog} (N arrays) of maps a[i] and b[i], and `constant` (N bools: either map
    constant)."""
    from scipy.stats import rankdata
    from skimage.metrics import structural_similarity

    if not isinstance(size, int) or isinstance(size, bool) or size < MIN_SIZE:
        raise ScanbenchError(f"sanity.similarity_size must be an integer >= {MIN_SIZE} px (HOG's 2 x 2 cells of "
                             f"8 px; got {size!r})")
    if a.shape != b.shape:
        raise ScanbenchError(f"map similarity needs maps of the same images and size (got {tuple(a.shape)} and "
                             f"{tuple(b.shape)})")
    x, y = resize_maps(a, size), resize_maps(b, size)
    n = len(x)
    flat_x, flat_y = x.reshape(n, -1), y.reshape(n, -1)
    spearman, constant = _pearson_rows(rankdata(flat_x, axis=1), rankdata(flat_y, axis=1))
    ssim = np.array([structural_similarity(x[i], y[i], data_range=1.0) for i in range(n)], dtype=np.float64)
    hog_x = np.stack([_hog(m) for m in x]) if n else np.zeros((0, 1))
    hog_y = np.stack([_hog(m) for m in y]) if n else np.zeros((0, 1))
    hog, hog_constant = _pearson_rows(hog_x, hog_y)
    return {"spearman": spearman, "ssim": ssim, "hog": hog, "constant": constant | hog_constant}


def summarise_similarity(per_image: Mapping[str, np.ndarray], n_resamples: int, seed: int) -> dict:
    """{measure: mean, measure_ci: [lo, hi] (95% bootstrap over images, the images drawn once for the three
    measures), n_constant, n_images, per_image: {measure: [...]}}."""
    values = np.stack([np.asarray(per_image[m], dtype=np.float64) for m in MEASURES], axis=1)   # N x 3
    out: dict = {}
    if len(values):
        ci = bootstrap_ci(values, n_resamples=n_resamples, seed=seed)
        for j, m in enumerate(MEASURES):
            out[m] = float(values[:, j].mean())
            out[f"{m}_ci"] = [float(ci[j, 0]), float(ci[j, 1])]
    out["n_constant"] = int(np.sum(per_image["constant"]))
    out["n_images"] = int(len(values))
    out["per_image"] = {m: [float(v) for v in values[:, j]] for j, m in enumerate(MEASURES)}
    return out


__all__ = ["MEASURES", "map_similarity", "resize_maps", "summarise_similarity"]
