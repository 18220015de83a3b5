"""Evaluation metrics (SPEC §5): perturbation AUCs, Drop/Inc/Win, bootstrap intervals, calibration; localisation
against object boxes where the data has them (issue 16).

`evaluate_maps` computes everything results/evaluate/B/M.json holds for one method's maps.
"""
from __future__ import annotations

import time
from typing import Sequence

import torch

from .bootstrap import bootstrap_ci
from .confidence import drop_inc, win_rates
from .localisation import area_share, energy_in_boxes, localisation_scores, pointing_game
from .perturbation import (PerturbationResult, auc, curve, fair_resolution, per_image_auc, perturbation_correct,
                           random_map_calibration, removal_rank, summarize)

__all__ = ["PerturbationResult", "area_share", "auc", "bootstrap_ci", "curve", "drop_inc", "energy_in_boxes",
           "evaluate_maps", "fair_resolution", "forward_throughput", "localisation_scores", "per_image_auc",
           "pointing_game", "perturbation_correct", "random_map_calibration",
           "removal_rank", "summarize", "win_rates"]

MAX_CHUNK_BYTES = 256 * 2**20


def forward_throughput(forward, images01: torch.Tensor) -> float:
    """Plain batched forward throughput (images / s) on these images, after one warm-up pass."""
    forward(images01[: min(len(images01), 8)])
    start = time.perf_counter()
    forward(images01)
    return len(images01) / max(time.perf_counter() - start, 1e-9)


def evaluate_maps(forward, images01: torch.Tensor, maps: torch.Tensor, labels: torch.Tensor,
                  classes: torch.Tensor, grid: int, fractions: Sequence[float], n_resamples: int, seed: int,
                  calibration_maps: int | None = None, max_chunk_bytes: int = MAX_CHUNK_BYTES) -> dict:
    """Both perturbation variants ("fair": maps pooled to the backbone grid; "full"; each with its
    `per_image_auc_d`, in image order, for paired comparisons), Drop/Inc on the maps as given, and optional
    random-map calibration; `throughput` (a run fact: keep it out of outputs) counts an image-step
    as one point of one curve (N x S x 2 orders per variant).

    Labels score the perturbation test; `classes` (the explained class, i.e. the prediction) is the c
    of Drop/Inc.
    """
    fractions = [float(f) for f in fractions]
    maps = torch.as_tensor(maps).float().to(images01.device)
    variants, seconds = {}, 0.0
    for name, m in (("fair", fair_resolution(maps, grid)), ("full", maps)):
        start = time.perf_counter()
        res = perturbation_correct(forward, images01, m, labels, fractions, max_chunk_bytes)
        seconds += time.perf_counter() - start
        variants[name] = summarize(fractions, res.pos, res.neg, n_resamples, seed, per_image=True)
    drop, inc = drop_inc(forward, images01, maps, classes)
    calibration = None
    if calibration_maps:
        # seed + 1: a stream distinct from the random explainer's (seeded with `seed`), whose maps are
        # already scored as the "random" method itself
        res = random_map_calibration(forward, images01, labels, fractions, calibration_maps, seed + 1,
                                     max_chunk_bytes)
        calibration = summarize(fractions, res.pos, res.neg, n_resamples, seed)
    n = int(images01.shape[0])
    img_steps = 2 * 2 * n * len(fractions)
    return {
        "n_images": n, "fractions": fractions, "variants": variants,
        "drop": float(drop.mean()), "inc": float(inc.mean()),
        "per_image": {"drop": drop.tolist(), "inc": inc.tolist()},
        "calibration": calibration,
        "throughput": {"perturbation_img_steps_per_s": img_steps / max(seconds, 1e-9),
                       "forward_img_per_s": forward_throughput(forward, images01)},
    }
