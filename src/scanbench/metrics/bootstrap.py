"""Percentile bootstrap over images for means of per-image values (AUCs, AUC-D), and the paired bootstrap of
the difference between two methods scored on the same images."""
from __future__ import annotations

import numpy as np

from ..errors import ScanbenchError


def _resampled_means(v: np.ndarray, n_resamples: int, seed: int, block: int) -> np.ndarray:
    """n_resamples x K means of the N x K values over image draws with replacement (one draw of N image
    indices per resample, shared by the K columns). The stream of draws depends only on (seed, N,
    n_resamples), not on K or the block size, so intervals of the same images under the same seed use the same
    resamples (a method's own interval and its paired differences agree)."""
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
    return means


def _percentile_interval(samples: np.ndarray, level: float) -> np.ndarray:
    if not 0 < level < 1:
        raise ScanbenchError(f"bootstrap level must lie in (0, 1) (got {level!r})")
    tail = (1.0 - level) / 2.0 * 100.0
    return np.percentile(samples, [tail, 100.0 - tail], axis=0).T


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
    ci = _percentile_interval(_resampled_means(v, n_resamples, seed, block), level)   # K x 2
    return ci[0] if single else ci


def paired_bootstrap_ci(a: np.ndarray, b: np.ndarray, n_resamples: int = 1000, seed: int = 0,
                        level: float = 0.95, block: int = 256) -> np.ndarray:
    """Percentile interval [lo, hi] of mean(a) - mean(b) for two methods' per-image values on the same images
    (a[i] and b[i] belong to image i): each resample draws the image indices once and applies them to both,
    so what the images share (an easy image is easy for every method) cancels and only the methods'
    difference varies. With the same seed and images its resamples are those of `bootstrap_ci(a)`."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ScanbenchError(f"a paired bootstrap needs one value per image for both methods, on the same images "
                             f"(got shapes {a.shape} and {b.shape})")
    means = _resampled_means(np.stack([a, b], 1), n_resamples, seed, block)
    return _percentile_interval(means[:, 0] - means[:, 1], level)
