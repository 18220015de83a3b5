"""A centred Gaussian as concentrated as a method's maps: the fair prior for energy inside the boxes.

Energy inside the boxes rewards compact maps: a map that puts most of its mass on a few central pixels scores well
on photos whose object sits near the centre, whatever it explains. The centre prior of the explain stage has one
fixed width, so it controls for that only for methods as compact as it is. Here each method gets its own control:
the centre prior's map (`explainers.centre.centre_map`'s centred isotropic Gaussian, min-max normalised to [0, 1]
and stored as float16, as the explain stage stores every map: `centre_prior_map`) at the sigma whose concentration
matches the method's maps. The centre prior row is therefore its own matched prior.

- **Concentration**: per image, the share of the map's non-negative mass in its top `TOP_SHARE` of pixels (the
  uniform map: `TOP_SHARE`; all mass on a few pixels: 1). A map with no positive mass is scored as the uniform map,
  as energy does. A method's concentration is the mean over the images.
- **Matching**: the prior's concentration falls strictly as its sigma (a fraction of the shorter side) grows (its
  top pixels are the same set, those nearest the centre, for every sigma), so the sigma that matches a target is
  found by bisection on log sigma between `SIGMA_RANGE` (on the float64 map), a fixed number of steps
  (deterministic). A target beyond what the range reaches is clamped to the nearer end (`clamped`: "min" when the
  maps are more concentrated than the narrowest prior, "max" when flatter than the widest: min-max normalised, a
  very wide Gaussian tends to a cap (1 - r^2 / r_max^2), whose concentration is ~0.20 at 14%, not the uniform
  map's 0.14; flatter maps are compared with that cap, a more concentrated prior than they are).

numpy only: the evaluate stage reads it without the explainers package.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ScanbenchError

TOP_SHARE = 0.14            # concentration: the share of positive mass in a map's top 14% of pixels
SIGMA_RANGE = (0.01, 10.0)  # the matched Gaussian's sigma, fraction of the side (10: the centre prior's maximum)
BISECTION_STEPS = 50        # on log sigma over the range: a relative step of ~1e-14, far below any effect


def check_top_share(top: float) -> float:
    if isinstance(top, bool) or not isinstance(top, (int, float)) or not math.isfinite(top) or not 0 < top < 1:
        raise ScanbenchError(f"concentration: the top share of pixels must lie in (0, 1) (got {top!r}), e.g. "
                             f"{TOP_SHARE}")
    return float(top)


def _flat_maps(maps: np.ndarray) -> np.ndarray:
    m = np.asarray(maps)
    if m.ndim != 3 or m.shape[0] == 0 or m.shape[1] == 0 or m.shape[2] == 0:
        raise ScanbenchError(f"concentration needs N x H x W maps with N, H, W >= 1 (got shape {m.shape})")
    m = np.clip(np.nan_to_num(m.astype(np.float64, copy=False), nan=0.0, posinf=0.0, neginf=0.0), 0.0, None)
    return m.reshape(m.shape[0], -1)


def top_pixels(n_pixels: int, top: float = TOP_SHARE) -> int:
    """How many pixels the top share of an n_pixels map holds: round(top * n), at least 1."""
    return max(1, int(round(check_top_share(top) * n_pixels)))


def concentration(maps: np.ndarray, top: float = TOP_SHARE) -> np.ndarray:
    """Per image, the share of the map's non-negative mass in its `top` share of pixels (N values in (0, 1]); a
    map with no positive mass scores the uniform map's share. NaN counts as 0, as in the localisation scores."""
    flat = _flat_maps(maps)
    k = top_pixels(flat.shape[1], top)
    top_mass = np.partition(flat, flat.shape[1] - k, axis=1)[:, flat.shape[1] - k:].sum(1)
    total = flat.sum(1)
    share = np.minimum(top_mass / np.where(total > 0, total, 1.0), 1.0)   # float sums may pass 1 by an ulp
    return np.where(total > 0, share, k / flat.shape[1])


def centred_gaussian(h: int, w: int, sigma: float) -> np.ndarray:
    """h x w float64 Gaussian exp(-r^2 / (2 s^2)) around the image centre, s = sigma * min(h, w) pixels, r from
    pixel centres: `explainers.centre.centre_map`'s map (there float32, on torch), here in numpy."""
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ScanbenchError(f"centred Gaussian: sigma must be a positive fraction of the image side (got {sigma!r})")
    s = float(sigma) * min(h, w)
    y = np.arange(h, dtype=np.float64) + 0.5 - h / 2
    x = np.arange(w, dtype=np.float64) + 0.5 - w / 2
    return np.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * s * s))


def centre_prior_map(h: int, w: int, sigma: float, stored: bool = False) -> np.ndarray:
    """The explain stage's centre prior map of this sigma: `centred_gaussian` min-max normalised to [0, 1]
    (`explainers.base.normalize_maps`); `stored`: rounded to float16 as the maps files hold it (float64 values)."""
    g = centred_gaussian(h, w, sigma)
    lo, hi = g.min(), g.max()
    m = (g - lo) / (hi - lo) if hi - lo > 1e-12 else np.zeros_like(g)
    return m.astype(np.float16).astype(np.float64) if stored else m


def gaussian_concentration(sigma: float, h: int, w: int, top: float = TOP_SHARE) -> float:
    """The concentration of the centre prior map of this sigma on an h x w map (float64, before storage)."""
    return float(concentration(centre_prior_map(h, w, sigma)[None], top)[0])


def match_sigma(target: float, h: int, w: int, top: float = TOP_SHARE,
                sigma_range: tuple[float, float] = SIGMA_RANGE,
                steps: int = BISECTION_STEPS) -> tuple[float, str | None]:
    """The sigma (fraction of the side) of the centre prior map (h x w) whose concentration is `target`,
    and None; or, beyond the range's reach, its nearer end and "min" / "max" (see the module's docstring)."""
    if isinstance(target, bool) or not isinstance(target, (int, float, np.floating)) or not math.isfinite(target) \
            or not 0 < target <= 1:
        raise ScanbenchError(f"matched prior: the concentration to match must lie in (0, 1] (got {target!r}): "
                             f"give the mean of `concentration` over the maps")
    lo, hi = sigma_range
    if not 0 < lo < hi:
        raise ScanbenchError(f"matched prior: sigma range must be 0 < min < max (got {sigma_range!r})")
    if gaussian_concentration(lo, h, w, top) <= target:
        return float(lo), "min"
    if gaussian_concentration(hi, h, w, top) >= target:
        return float(hi), "max"
    a, b = math.log(lo), math.log(hi)        # conc(exp(a)) > target > conc(exp(b))
    for _ in range(steps):
        mid = (a + b) / 2
        if gaussian_concentration(math.exp(mid), h, w, top) > target:
            a = mid
        else:
            b = mid
    return math.exp((a + b) / 2), None
