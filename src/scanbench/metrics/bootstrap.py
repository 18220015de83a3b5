"""Percentile bootstrap over images for means of per-image values (AUCs, AUC-D)."""
from __future__ import annotations

import numpy as np

from ..errors import ScanbenchError


def bootstrap_ci(values: np.ndarray, n_resamples: int = 1000, seed: int = 0, level: float = 0.95,
                 block: int = 256) -> np.ndarray:
    """95 % (by default) percentile interval of the mean, resampling images with replacement.

    `values` is N (one value per image) or N x K (K quantities resampled together with the same image
    draws, so e.g. pos/neg AUC and AUC-D stay consistent). Returns [lo, hi] (shape 2) or K x 2.
    Resamples are drawn in blocks so N x n_resamples indices never sit in memory at once.
    """
    v = np.asarray(values, dtype=np.float64)
    single = v.ndim == 1
    if single:
        v = v[:, None]
    n = v.shape[0]
    if n == 0:
        raise ScanbenchError("bootstrap needs at least one image")
    if n_resamples < 1:
        raise ScanbenchError(f"evaluate.bootstrap must be >= 1 (got {n_resamples})")
    rng = np.random.default_rng(seed)
    means = np.empty((n_resamples, v.shape[1]))
    for s in range(0, n_resamples, block):
        r = min(block, n_resamples - s)
        idx = rng.integers(0, n, size=(r, n))
        means[s:s + r] = v[idx].mean(1)
    tail = (1.0 - level) / 2.0 * 100.0
    ci = np.percentile(means, [tail, 100.0 - tail], axis=0).T   # K x 2
    return ci[0] if single else ci
