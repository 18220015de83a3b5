"""Localisation against object boxes: energy inside the boxes and the pointing game, per image, with
bootstrap intervals over images.

- **Energy**: the share of the map's non-negative mass inside the union of the image's boxes,
  sum(max(m, 0) * mask) / sum(max(m, 0)). A map with no positive mass says nothing about where the object is and
  scores what the uniform map scores: the box's area share.
- **Pointing game**: 1 when the map's maximum lies inside a box, else 0. Ties at the maximum count as the share of
  the tied pixels inside the boxes (the expected hit of a random tie-break), so the uniform map scores the area
  share here too, and a plateau is not scored by the position of its first pixel.
- **Chance level**: the uniform map's energy, the mean area share of the boxes.
- **Matched prior** (`matched_prior_scores`): the centre prior's map (a centred Gaussian, as the explain stage stores
  it) as concentrated as the method's maps on the same images (`metrics.matched_prior`), scored the same way, and
  the paired bootstrap of method minus prior: energy rewards compact maps, so a method beats where objects usually
  are only if it beats the prior it resembles.

Masks come from `scanbench.boxes.box_masks` at the maps' resolution. numpy only.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ScanbenchError
from .bootstrap import bootstrap_ci, paired_bootstrap_ci
from .matched_prior import TOP_SHARE, centre_prior_map, concentration, match_sigma


def _check(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    maps = np.nan_to_num(np.asarray(maps, dtype=np.float64), nan=0.0)
    masks = np.asarray(masks, dtype=bool)
    if maps.ndim != 3 or maps.shape != masks.shape:
        raise ScanbenchError(f"localisation needs N x H x W maps and box masks of the same shape (got "
                             f"{maps.shape} and {masks.shape})")
    if not masks.any(axis=(1, 2)).all():
        raise ScanbenchError("localisation: a box mask covers no pixel (scanbench.boxes.box_mask gives every box "
                             "at least one)")
    return np.clip(maps, 0.0, None), masks


def area_share(masks: np.ndarray) -> np.ndarray:
    """Per image, the share of the pixels inside the boxes: the uniform map's energy and pointing score."""
    return np.asarray(masks, dtype=bool).mean(axis=(1, 2))


def energy_in_boxes(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image, the share of the map's non-negative mass inside the boxes (N values in [0, 1])."""
    m, masks = _check(maps, masks)
    total = m.sum(axis=(1, 2))
    inside = (m * masks).sum(axis=(1, 2))
    return np.where(total > 0, inside / np.where(total > 0, total, 1.0), area_share(masks))


def pointing_game(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image, 1 when the map's maximum lies inside a box, else 0 (ties: the share of tied pixels inside)."""
    m, masks = _check(maps, masks)
    top = m == m.max(axis=(1, 2), keepdims=True)
    return (top & masks).sum(axis=(1, 2)) / top.sum(axis=(1, 2))


def _pair(ci: np.ndarray) -> list[float]:
    return [float(ci[0]), float(ci[1])]


def matched_prior_scores(maps: np.ndarray, masks: np.ndarray, n_resamples: int, seed: int,
                         top: float = TOP_SHARE) -> dict:
    """The `localisation.matched_prior` object for N maps and their images' box masks (both N x H x W, every image
    boxed): the centre prior map fitted to the maps' mean concentration (`sigma`, a fraction of the side;
    `clamped`), both concentrations, the prior's energy and pointing on the same images with their 95% bootstrap
    intervals, and method minus prior (`energy_diff`, `pointing_diff`) with paired 95% bootstrap intervals (the
    same image draws for both; `seed`); `per_image` the prior's energy and pointing, in the maps' order."""
    m, masks = _check(maps, masks)
    n, h, w = m.shape
    target = float(concentration(m, top).mean())
    sigma, clamped = match_sigma(target, h, w, top)
    prior_map = centre_prior_map(h, w, sigma, stored=True)
    prior = np.broadcast_to(prior_map, m.shape)
    energy_m, pointing_m = energy_in_boxes(m, masks), pointing_game(m, masks)
    energy_p, pointing_p = energy_in_boxes(prior, masks), pointing_game(prior, masks)
    ci = bootstrap_ci(np.stack([energy_p, pointing_p], 1), n_resamples, seed)
    return {"top_share": float(top), "sigma": float(sigma), "clamped": clamped,
            "concentration_method": target, "concentration_prior": float(concentration(prior_map[None], top)[0]),
            "energy": float(energy_p.mean()), "energy_ci": _pair(ci[0]),
            "pointing": float(pointing_p.mean()), "pointing_ci": _pair(ci[1]),
            "energy_diff": float(energy_m.mean() - energy_p.mean()),
            "energy_diff_ci": _pair(paired_bootstrap_ci(energy_m, energy_p, n_resamples, seed)),
            "pointing_diff": float(pointing_m.mean() - pointing_p.mean()),
            "pointing_diff_ci": _pair(paired_bootstrap_ci(pointing_m, pointing_p, n_resamples, seed)),
            "per_image": {"energy": energy_p.tolist(), "pointing": pointing_p.tolist()}}


def localisation_scores(maps: np.ndarray, masks: Sequence[np.ndarray | None], indices: Sequence[int],
                        n_resamples: int, seed: int) -> dict:
    """The evaluate JSON's `localisation` object for N maps (N x H x W) and their images' masks (None: no box).

    Images without boxes are skipped (`n_skipped`); `energy` / `pointing` are means over the others, with their
    95% bootstrap intervals (`*_ci`, images resampled together for both, `seed`); `chance_energy` the uniform
    map's (mean area share); `per_image` each scored image's manifest row, energy and pointing. With no image
    boxed the values are None."""
    if len(masks) != len(maps) or len(indices) != len(maps):
        raise ScanbenchError(f"localisation: {len(maps)} maps, {len(masks)} masks and {len(indices)} indices")
    keep = [i for i, mk in enumerate(masks) if mk is not None]
    out = {"n_images": len(keep), "n_skipped": len(maps) - len(keep)}
    if not keep:
        return {**out, "energy": None, "energy_ci": None, "pointing": None, "pointing_ci": None,
                "chance_energy": None, "matched_prior": None,
                "per_image": {"index": [], "energy": [], "pointing": []}}
    sel_maps = np.asarray(maps)[keep]
    sel_masks = np.stack([masks[i] for i in keep])
    energy, pointing = energy_in_boxes(sel_maps, sel_masks), pointing_game(sel_maps, sel_masks)
    ci = bootstrap_ci(np.stack([energy, pointing], 1), n_resamples, seed)
    return {**out, "energy": float(energy.mean()), "energy_ci": [float(ci[0, 0]), float(ci[0, 1])],
            "pointing": float(pointing.mean()), "pointing_ci": [float(ci[1, 0]), float(ci[1, 1])],
            "chance_energy": float(area_share(sel_masks).mean()),
            "matched_prior": matched_prior_scores(sel_maps, sel_masks, n_resamples, seed),
            "per_image": {"index": [int(indices[i]) for i in keep], "energy": energy.tolist(),
                          "pointing": pointing.tolist()}}
