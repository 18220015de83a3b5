"""Evaluation metrics (docs/METHODS.md §2): perturbation AUCs, Drop/Inc, bootstrap intervals, calibration; localisation
against object boxes where the data has them.

`evaluate_maps` computes everything results/evaluate/B/M.json holds for one method's maps.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch

from ..per_image_metrics import PER_IMAGE_NAMES
from .bootstrap import bootstrap_ci
from .confidence import drop_inc, per_image_metrics
from .localisation import area_share, energy_in_boxes, localisation_scores, pointing_game
from .perturbation import (
    PerturbationResult,
    auc,
    curve,
    fair_resolution,
    per_image_auc,
    perturbation_correct,
    random_map_calibration,
    removal_rank,
    summarize,
)

__all__ = ["PerturbationResult", "area_share", "auc", "bootstrap_ci", "curve", "drop_inc", "energy_in_boxes",
           "concat_scores", "evaluate_maps", "fair_resolution", "forward_throughput", "localisation_scores",
           "per_image_auc",
           "per_image_metrics", "per_image_scores", "pointing_game", "perturbation_correct", "random_map_calibration",
           "removal_rank", "summarize", "summarize_scores", "throughput"]

MAX_CHUNK_BYTES = 256 * 2**20


def forward_throughput(forward, images01: torch.Tensor) -> float:
    """Plain batched forward throughput (images / s) on these images, after one warm-up pass."""
    forward(images01[: min(len(images01), 8)])
    start = time.perf_counter()
    forward(images01)
    return len(images01) / max(time.perf_counter() - start, 1e-9)


def per_image_scores(forward, images01: torch.Tensor, maps: torch.Tensor, labels: torch.Tensor,
                     classes: torch.Tensor, grid: int, fractions: Sequence[float], seed: int,
                     calibration_maps: int | None = None, max_chunk_bytes: int = MAX_CHUNK_BYTES,
                     rows: range | None = None, n_total: int | None = None) -> dict:
    """The per-image part of `evaluate_maps`: perturbation correctness of both variants, the per-image metrics
    (Drop/Inc: scanbench.per_image_metrics) and the optional random-map calibration, each a per-image array (image
    order), plus `seconds` (the perturbation
    test's time, a run fact). A shard of a data-parallel run passes its `rows` of the `n_total` images, so that
    the calibration's seeded random maps are those the single run gives these images."""
    fractions = [float(f) for f in fractions]
    maps = torch.as_tensor(maps).float().to(images01.device)
    out: dict = {"seconds": 0.0}
    for name, m in (("fair", fair_resolution(maps, grid)), ("full", maps)):
        start = time.perf_counter()
        res = perturbation_correct(forward, images01, m, labels, fractions, max_chunk_bytes)
        out["seconds"] += time.perf_counter() - start
        out[name] = (res.pos, res.neg)
    out.update(per_image_metrics(forward, images01, maps, classes))
    out["calibration"] = None
    if calibration_maps:
        # seed + 1: a stream distinct from the random explainer's (seeded with `seed`), whose maps are
        # already scored as the "random" method itself
        res = random_map_calibration(forward, images01, labels, fractions, calibration_maps, seed + 1,
                                     max_chunk_bytes, rows=rows, n_total=n_total)
        out["calibration"] = (res.pos, res.neg)
    return out


def concat_scores(parts: Sequence[dict]) -> dict:
    """Per-image scores of consecutive shards (in image order) as those of all their images."""
    if len(parts) == 1:
        return parts[0]
    cat = np.concatenate
    out = {"seconds": sum(p["seconds"] for p in parts), **{k: cat([p[k] for p in parts]) for k in PER_IMAGE_NAMES}}
    for key in ("fair", "full", "calibration"):
        out[key] = (None if parts[0][key] is None else
                    (cat([p[key][0] for p in parts]), cat([p[key][1] for p in parts])))
    return out


def summarize_scores(scores: dict, fractions: Sequence[float], n_resamples: int, seed: int) -> dict:
    """The results/evaluate/B/M.json record (less `throughput`) from per-image scores: curves, AUCs, bootstrap
    intervals over all the images."""
    fractions = [float(f) for f in fractions]
    variants = {name: summarize(fractions, *scores[name], n_resamples, seed, per_image=True)
                for name in ("fair", "full")}
    calibration = (summarize(fractions, *scores["calibration"], n_resamples, seed)
                   if scores["calibration"] is not None else None)
    per_image = {k: scores[k] for k in PER_IMAGE_NAMES}
    return {
        "n_images": int(len(scores["fair"][0])), "fractions": fractions, "variants": variants,
        **{k: float(v.mean()) for k, v in per_image.items()},
        "per_image": {k: v.tolist() for k, v in per_image.items()},
        "calibration": calibration,
    }


def evaluate_maps(forward, images01: torch.Tensor, maps: torch.Tensor, labels: torch.Tensor,
                  classes: torch.Tensor, grid: int, fractions: Sequence[float], n_resamples: int, seed: int,
                  calibration_maps: int | None = None, max_chunk_bytes: int = MAX_CHUNK_BYTES) -> dict:
    """Both perturbation variants ("fair": maps pooled to the backbone grid; "full"; each with its
    `per_image_auc_d`, in image order, for paired comparisons), Drop/Inc on the maps as given, and optional
    random-map calibration; `throughput` (a run fact: keep it out of outputs) counts an image-step
    as one point of one curve (N x S x 2 orders per variant).

    Labels score the perturbation test; `classes` (the explained class, i.e. the prediction) is the c
    of Drop/Inc. It is per_image_scores then summarize_scores; a data-parallel run gathers the per-image
    scores of its shards between the two.
    """
    scores = per_image_scores(forward, images01, maps, labels, classes, grid, fractions, seed, calibration_maps,
                              max_chunk_bytes)
    result = summarize_scores(scores, fractions, n_resamples, seed)
    result["throughput"] = throughput(forward, images01, len(fractions), scores["seconds"])
    return result


def throughput(forward, images01: torch.Tensor, n_fractions: int, seconds: float) -> dict:
    """Run facts: perturbation image-steps per second (N x S x 2 orders x 2 variants in `seconds`) and the plain
    forward rate on these images."""
    img_steps = 2 * 2 * int(images01.shape[0]) * n_fractions
    return {"perturbation_img_steps_per_s": img_steps / max(seconds, 1e-9),
            "forward_img_per_s": forward_throughput(forward, images01)}
