"""Sanity checks (SPEC §6, paper Table IV, after Adebayo et al. 2018).

- original: the trained target, explaining its prediction.
- random_weights: a copy of the target with every weight re-initialised (seeded); the method re-explains
  the randomised model's prediction and the perturbation test runs against the randomised model. AUC-D
  must collapse towards 0 for a method that depends on what the model learned.
- random_label: explain a uniformly random class other than the predicted one; scored as usual.
All three are scored on the fair-resolution variant, against the true labels.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from .compute import module_device
from .engine import ForwardEngine
from .errors import ScanbenchError
from .metrics.perturbation import Forward, auc, curve, fair_resolution, perturbation_correct

# (model, forward engine of that model) -> an Explainer
ExplainerMaker = Callable[[nn.Module, Forward], object]
SETTINGS = ("original", "random_weights", "random_label")


def randomize_weights(model: nn.Module, seed: int, std: float = 0.02) -> nn.Module:
    """A copy of `model` with all weights re-initialised from a seeded RNG.

    Modules with `reset_parameters` (convs, linears, norms - BN running statistics included) use their
    own PyTorch default init; parameters held by modules without it (a ViT's pos_embed and cls_token,
    layer-scale gammas) are drawn from N(0, std^2), timm's init scale for them. Buffers that are
    preprocessing (mean, std, class indices) stay. Drawn on the CPU (the same weights whatever the device), then
    moved to the model's device.
    """
    device = module_device(model)
    rand = copy.deepcopy(model).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.no_grad():
            for m in rand.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
                elif hasattr(m, "reset_running_stats"):
                    m.reset_running_stats()
                else:
                    for p in m.parameters(recurse=False):
                        p.normal_(0.0, std)
    return rand.to(device).eval()


def random_other_classes(pred: torch.Tensor, n_classes: int, seed: int, rows: range | None = None,
                         n_total: int | None = None) -> torch.Tensor:
    """For each prediction, a class drawn uniformly from the other n_classes - 1 classes. A shard of a
    data-parallel run passes its `rows` of the `n_total` images: every image's draw is made, its rows' kept."""
    if n_classes < 2:
        raise ScanbenchError(f"the random-label check needs at least 2 classes (got {n_classes})")
    pred = torch.as_tensor(pred, dtype=torch.long).view(-1).cpu()   # drawn on the CPU: the same on every device
    shape = pred.shape if rows is None else (n_total,)
    r = torch.randint(0, n_classes - 1, shape, generator=torch.Generator().manual_seed(seed))
    if rows is not None:
        r = r[rows.start:rows.stop]
    return r + (r >= pred).long()   # skip the predicted class


def fair_correctness(forward: Forward, images01: torch.Tensor, maps: torch.Tensor, labels: torch.Tensor, grid: int,
                     fractions: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-image (pos, neg) correctness (N x S) of the perturbation test on fair-resolution maps."""
    res = perturbation_correct(forward, images01, fair_resolution(maps, grid), labels, fractions)
    return res.pos, res.neg


def fair_aucs_of(pos: np.ndarray, neg: np.ndarray, fractions: Sequence[float]) -> dict[str, float]:
    """{"auc_d", "neg_auc", "pos_auc"} (percent) from per-image correctness."""
    pos_auc, neg_auc = float(auc(curve(pos), fractions)), float(auc(curve(neg), fractions))
    return {"auc_d": neg_auc - pos_auc, "neg_auc": neg_auc, "pos_auc": pos_auc}


def fair_aucs(forward: Forward, images01: torch.Tensor, maps: torch.Tensor, labels: torch.Tensor, grid: int,
              fractions: Sequence[float]) -> dict[str, float]:
    """{"auc_d", "neg_auc", "pos_auc"} (percent) of the perturbation test on fair-resolution maps."""
    return fair_aucs_of(*fair_correctness(forward, images01, maps, labels, grid, fractions), fractions)


def _skip(explainer, n_images: int, h: int, w: int) -> None:
    """Explainer.skip where there is something to skip (a single run never calls it)."""
    if n_images:
        explainer.skip(n_images, h, w)


def sanity_scores(make: ExplainerMaker, model: nn.Module, forward: Forward, images01: torch.Tensor,
                  labels: torch.Tensor, grid: int, fractions: Sequence[float], seed: int, batch_size: int = 64,
                  rows: range | None = None, n_total: int | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per setting, per-image (pos, neg) correctness of the three settings of Table IV (`sanity_check`'s
    per-image part). A shard of a data-parallel run passes its `rows` of `n_total` images: its seeded draws
    (random classes, a random method's maps) are those the single run makes for these images."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    n, h, w = images01.shape[0], images01.shape[-2], images01.shape[-1]
    start, total = (0, n) if rows is None else (rows.start, n_total)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    logits = forward(images01)
    pred = logits.argmax(1)
    explainer = make(model, forward)
    _skip(explainer, start, h, w)
    out["original"] = fair_correctness(forward, images01, explainer.explain(images01, pred), labels, grid, fractions)

    rand_model = randomize_weights(model, seed)
    rand_forward = ForwardEngine(rand_model, "torch", batch_size=batch_size)
    rand_pred = rand_forward(images01).argmax(1)
    rand_explainer = make(rand_model, rand_forward)
    _skip(rand_explainer, start, h, w)
    out["random_weights"] = fair_correctness(rand_forward, images01, rand_explainer.explain(images01, rand_pred),
                                             labels, grid, fractions)

    other = random_other_classes(pred, logits.shape[1], seed, rows, n_total)
    _skip(explainer, total - n, h, w)   # the single run explains every image before the random labels
    out["random_label"] = fair_correctness(forward, images01, explainer.explain(images01, other), labels, grid,
                                           fractions)
    return out


def concat_sanity_scores(parts: Sequence[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-image scores of consecutive shards (in image order) as those of all their images."""
    return {s: (np.concatenate([p[s][0] for p in parts]), np.concatenate([p[s][1] for p in parts]))
            for s in parts[0]}


def sanity_summary(scores: dict[str, tuple[np.ndarray, np.ndarray]], fractions: Sequence[float]
                   ) -> dict[str, dict[str, float]]:
    return {s: fair_aucs_of(pos, neg, fractions) for s, (pos, neg) in scores.items()}


def sanity_check(make: ExplainerMaker, model: nn.Module, forward: Forward, images01: torch.Tensor,
                 labels: torch.Tensor, grid: int, fractions: Sequence[float], seed: int,
                 batch_size: int = 64) -> dict[str, dict[str, float]]:
    """The three settings of Table IV for one method. `forward` is the trained target's engine; the
    randomised model is run through a torch ForwardEngine (it has no exported graph)."""
    return sanity_summary(sanity_scores(make, model, forward, images01, labels, grid, fractions, seed, batch_size),
                          fractions)


def summary_line(method: str, result: dict[str, dict[str, float]]) -> str:
    return f"{method}: " + ", ".join(f"{s} AUC-D {result[s]['auc_d']:.2f}" for s in SETTINGS if s in result)


__all__ = ["SETTINGS", "concat_sanity_scores", "fair_aucs", "random_other_classes", "randomize_weights", "sanity_check",
           "sanity_scores", "sanity_summary", "summary_line"]
